#include "mime/header_block.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace mb::mime {
namespace {

constexpr std::size_t kReadChunk = 64 * 1024;

bool isWsp(char c) { return c == ' ' || c == '\t'; }

// RFC 5322 §3.6.8 field-name, then the obsolete WSP before the colon
// (§4.5.3); anything else is not a field line.
bool isFieldLine(std::string_view line) {
  std::size_t i = 0;
  while (i < line.size()) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (c < 33 || c > 126 || c == ':') break;
    ++i;
  }
  if (i == 0) return false;
  while (i < line.size() && isWsp(line[i])) ++i;
  return i < line.size() && line[i] == ':';
}

std::string_view fieldName(std::string_view raw) {
  std::string_view name = raw.substr(0, raw.find(':'));
  while (!name.empty() && isWsp(name.back())) name.remove_suffix(1);
  return name;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Error shortFile(const ContentFile& content, std::int64_t have) {
  return Error{content.path.string() + " holds " + std::to_string(have) + " bytes, less than the message's " +
                   std::to_string(content.size),
               0};
}

Error tooLarge(std::size_t max_bytes) {
  return Error{"header section larger than " + std::to_string(max_bytes) + " bytes", 0};
}

}  // namespace

bool HeaderScanner::finish(std::size_t fields_size, std::size_t body_offset, HeaderEnd end) {
  fields_size_ = fields_size;
  body_offset_ = body_offset;
  end_ = end;
  return true;
}

bool HeaderScanner::scan(std::string_view seen, bool at_end) {
  while (true) {
    const std::size_t nl = seen.find('\n', pos_);
    std::size_t next = 0;
    std::string_view line;
    if (nl == std::string_view::npos) {
      // A last line without its line end only counts once nothing more can come.
      if (!at_end) return false;
      if (pos_ >= seen.size()) return finish(seen.size(), seen.size(), HeaderEnd::EndOfInput);
      line = seen.substr(pos_);
      next = seen.size();
    } else {
      line = seen.substr(pos_, nl - pos_);
      next = nl + 1;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    if (line.empty()) return finish(pos_, next, HeaderEnd::BlankLine);
    const bool continuation = isWsp(line.front());
    if (continuation ? !seen_field_ : !isFieldLine(line)) return finish(pos_, pos_, HeaderEnd::BodyLine);
    seen_field_ = true;
    pos_ = next;
    if (nl == std::string_view::npos) return finish(pos_, pos_, HeaderEnd::EndOfInput);
  }
}

std::vector<HeaderField> HeaderBlock::fields() const {
  std::vector<HeaderField> out;
  const std::string_view all = std::string_view(bytes).substr(0, fields_size);
  std::size_t start = 0;
  while (start < all.size()) {
    // The scanner let only field lines and continuations through, so a
    // field ends where the next line starts without white space.
    std::size_t stop = start;
    while (true) {
      const std::size_t nl = all.find('\n', stop);
      stop = nl == std::string_view::npos ? all.size() : nl + 1;
      if (stop >= all.size() || !isWsp(all[stop])) break;
    }
    const std::string_view raw = all.substr(start, stop - start);
    const std::size_t colon = raw.find(':');
    out.push_back(HeaderField{fieldName(raw), raw.substr(colon + 1), raw});
    start = stop;
  }
  return out;
}

Result<HeaderBlock> readHeaderBlock(const ContentFile& content, std::size_t max_bytes) {
  const std::filesystem::path& path = content.path;
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Error::fromErrno("open " + path.string(), errno);
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return Error::fromErrno("stat " + path.string(), errno);
  if (S_ISREG(info.st_mode) && static_cast<std::uint64_t>(info.st_size) < content.size) {
    return shortFile(content, info.st_size);
  }

  // Reads stop at content.size: what follows it in the file is not the message.
  std::string seen;
  HeaderScanner scanner;
  while (true) {
    const std::size_t old_size = seen.size();
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kReadChunk, content.size - old_size));
    ssize_t n = 0;
    if (want > 0) {
      seen.resize(old_size + want);
      n = ::read(fd.get(), seen.data() + old_size, want);
      if (n < 0) {
        const int err = errno;
        seen.resize(old_size);
        if (err == EINTR) continue;
        return Error::fromErrno("read " + path.string(), err);
      }
      seen.resize(old_size + static_cast<std::size_t>(n));
      if (n == 0) return shortFile(content, static_cast<std::int64_t>(old_size));  // shrank, or not a file
    }
    const bool at_end = seen.size() == content.size;
    if (scanner.scan(seen, at_end)) break;
    if (seen.size() > max_bytes) return tooLarge(max_bytes);
  }
  if (scanner.bodyOffset() > max_bytes) return tooLarge(max_bytes);

  HeaderBlock block;
  seen.resize(scanner.bodyOffset());
  seen.shrink_to_fit();
  block.bytes = std::move(seen);
  block.body_offset = scanner.bodyOffset();
  block.fields_size = scanner.fieldsSize();
  block.end = scanner.end();
  return block;
}

Result<HeaderBlock> headerBlockOf(std::string_view message, std::size_t max_bytes) {
  HeaderScanner scanner;
  (void)scanner.scan(message, true);
  if (scanner.bodyOffset() > max_bytes) return tooLarge(max_bytes);
  HeaderBlock block;
  block.bytes.assign(message.substr(0, scanner.bodyOffset()));
  block.body_offset = scanner.bodyOffset();
  block.fields_size = scanner.fieldsSize();
  block.end = scanner.end();
  return block;
}

}  // namespace mb::mime
