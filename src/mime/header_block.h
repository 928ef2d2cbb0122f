#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace mb::mime {

/// The most a header section may take (blank line included) before a
/// message is refused: far beyond any real message, small enough to hold.
inline constexpr std::size_t kMaxHeaderBlock = 1024 * 1024;

/// How a message's header section ended.
enum class HeaderEnd {
  BlankLine,   // the empty line of RFC 5322 §2.1; the body starts after it
  EndOfInput,  // the message is all header fields (no body, maybe no final line end)
  BodyLine,    // a line that is neither a field nor a folded continuation: the
               // body starts there, without the blank line RFC 5322 asks for
};

/// One header field as stored, folded lines and line ends included. The
/// views point into the HeaderBlock (or text) it was split from.
struct HeaderField {
  std::string_view name;   // as written, without white space before the colon
  std::string_view value;  // after the colon, up to and including the last line end
  std::string_view raw;    // the whole field, byte for byte
};

/// The header section of a stored message, read without its body.
struct HeaderBlock {
  std::string bytes;               // the message's first body_offset bytes, unchanged
  std::uint64_t body_offset = 0;   // first body byte; the message size when there is no body
  std::size_t fields_size = 0;     // bytes taken by the fields (bytes without the blank line)
  HeaderEnd end = HeaderEnd::EndOfInput;

  /// The fields, in order (RFC 5322 §2.2: a field runs on while lines
  /// start with white space).
  std::vector<HeaderField> fields() const;
};

/// Finds where the header section ends in bytes that arrive in pieces (a
/// parser fed by buffers: no I/O here). Line ends may be CRLF or bare LF.
/// A field line is a name of printable ASCII other than ':' (RFC 5322 §3.6.8
/// ftext), optional white space (the obsolete syntax of §4.5), then ':'.
///
/// Not thread-safe; one scanner per message.
class HeaderScanner {
 public:
  /// `seen` is everything received so far (a growing prefix of the
  /// message); `at_end` says no more will come. Looks at the complete lines
  /// not yet seen and returns true once the end of the section is known.
  bool scan(std::string_view seen, bool at_end);

  std::size_t bodyOffset() const { return body_offset_; }
  std::size_t fieldsSize() const { return fields_size_; }
  HeaderEnd end() const { return end_; }

 private:
  bool finish(std::size_t fields_size, std::size_t body_offset, HeaderEnd end);

  std::size_t pos_ = 0;  // start of the first line not looked at yet
  bool seen_field_ = false;
  std::size_t body_offset_ = 0;
  std::size_t fields_size_ = 0;
  HeaderEnd end_ = HeaderEnd::EndOfInput;
};

/// A stored message: the message is the first `size` bytes of the file at
/// `path` (the envelope's size). The spool may keep more after them (the
/// serialized envelope as a trailer); readers never read a byte past `size`.
/// `size` is authoritative: 0 is an empty message, whatever the file holds.
struct ContentFile {
  std::filesystem::path path;
  std::uint64_t size = 0;
};

/// Reads the header section of the message stored in `content`, stopping
/// once its end is found: a 150 MB message costs one small read, not 150 MB.
/// Fails when the file cannot be read, is shorter than `content.size`, or
/// when more than `max_bytes` are needed to find the end. Blocking file I/O;
/// safe from any thread.
Result<HeaderBlock> readHeaderBlock(const ContentFile& content, std::size_t max_bytes = kMaxHeaderBlock);

/// Same for a message held in memory (tests, fuzzing).
Result<HeaderBlock> headerBlockOf(std::string_view message, std::size_t max_bytes = kMaxHeaderBlock);

}  // namespace mb::mime
