#include "smtp/header_capture.h"

#include <utility>

namespace mb::smtp {

void HeaderCapture::feed(std::string_view bytes) {
  if (complete_) return;
  const std::size_t before = header_.size();
  header_.append(bytes.substr(0, limit_ - before));
  // A line end split between chunks: look again from a little before the
  // new bytes.
  const std::size_t from = before >= 2 ? before - 2 : 0;
  // An empty header section: the content starts with its empty line.
  if (header_.starts_with("\n")) {
    header_.resize(1);
    complete_ = true;
    return;
  }
  if (header_.starts_with("\r\n")) {
    header_.resize(2);
    complete_ = true;
    return;
  }
  for (std::size_t lf = header_.find('\n', from); lf != std::string::npos; lf = header_.find('\n', lf + 1)) {
    // The empty line after this line end: LF, or CR LF.
    std::size_t end = std::string::npos;
    if (lf + 1 < header_.size() && header_[lf + 1] == '\n') {
      end = lf + 2;
    } else if (lf + 2 < header_.size() && header_[lf + 1] == '\r' && header_[lf + 2] == '\n') {
      end = lf + 3;
    }
    if (end != std::string::npos) {
      header_.resize(end);
      complete_ = true;
      return;
    }
  }
  complete_ = header_.size() >= limit_;
}

std::string HeaderCapture::take() {
  complete_ = false;
  return std::exchange(header_, std::string());
}

}  // namespace mb::smtp
