#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mb::smtp {

/// LineMeter: measures the lines of normalised content (every line ending in
/// CR LF) against the text line limit of RFC 5321 §4.5.3.1.6, which counts
/// the octets of a line with its CR LF. Fed the content in any split; the
/// verdict does not depend on the split. DataReader and ChunkReader own one.
///
/// Talks to: nobody. Threading: a value type.
class LineMeter {
 public:
  /// Lines longer than `octets` (with their CR LF) count as long; 0: none do.
  void setLimit(std::size_t octets) { limit_ = octets; }
  std::size_t limit() const { return limit_; }

  /// Content just emitted, continuing the previous call's last line.
  void count(std::string_view content);

  /// A line longer than the limit has ended.
  bool sawLongLine() const { return long_line_; }

 private:
  std::size_t limit_ = 0;
  std::uint64_t current_ = 0;  // octets of the line not yet ended
  bool long_line_ = false;
};

/// DataReader: the DATA content reader (RFC 5321 §4.1.1.4, §4.5.2), a byte
/// state machine fed the client's bytes in any split. It finds the end of
/// data and emits the content dot-unstuffed, every line ending in CRLF.
///
/// The rules are those that defeat SMTP smuggling (CVE-2023-51764/5/6):
///  - the end of data is only CR LF "." CR LF, where the first CR LF may be
///    the end of the DATA command line (a "." CR LF at the very start ends an
///    empty message);
///  - a bare LF ends a line and is emitted as CR LF, and sawBareLf() becomes
///    true (the session refuses the message with 550 5.5.2 in reject mode);
///    the line after it is "soft": "." CR LF there is not the end but the
///    literal line "." CR LF, and neither is CR LF "." LF;
///  - a bare CR is emitted as a space and does not start a line;
///  - a leading dot followed by anything but the line end is removed.
/// Output does not depend on how the input was split. With a line limit set,
/// sawLongLine() tells whether an emitted line (after unstuffing, with its
/// CR LF) was longer; the content is emitted unchanged either way.
///
/// Talks to: nobody; ServerSession feeds it and hands the output on.
/// Threading: a value type, one session's.
class DataReader {
 public:
  /// Reads from `in` up to and including the end of data, appending content
  /// to `out`. Returns how many bytes of `in` it consumed: all of them, or
  /// fewer when the end of data came first (the rest is the next command).
  /// After done(), consumes nothing.
  std::size_t feed(std::string_view in, std::string& out);

  /// The final "." CR LF has been read.
  bool done() const { return state_ == State::Done; }

  /// A bare LF was seen (and emitted as CR LF).
  bool sawBareLf() const { return bare_lf_; }

  /// A bare CR was seen (and emitted as a space).
  bool sawBareCr() const { return bare_cr_; }

  /// Content bytes emitted so far (after unstuffing and normalising).
  std::uint64_t emitted() const { return emitted_; }

  /// Lines longer than `octets` with their CR LF make sawLongLine() true;
  /// 0 (the default) measures nothing. Kept by reset().
  void setMaxLineLength(std::size_t octets) { meter_.setLimit(octets); }

  /// An emitted line was longer than the limit.
  bool sawLongLine() const { return meter_.sawLongLine(); }

  /// Ready for the next message, with the same line limit.
  void reset() {
    const std::size_t limit = meter_.limit();
    *this = DataReader();
    meter_.setLimit(limit);
  }

 private:
  enum class State {
    LineStart,      // after CR LF (or at the start): "." CR LF here ends data
    SoftLineStart,  // after a bare LF: "." CR LF here is content
    Middle,         // inside a line
    Cr,             // a CR, not yet known to be part of CR LF
    Dot,            // a leading "." on a line that began after CR LF
    DotCr,          // "." CR on such a line: LF now ends the data
    SoftDot,        // a leading "." on a soft line
    SoftDotCr,      // "." CR on a soft line
    Done,
  };

  State state_ = State::LineStart;
  bool bare_lf_ = false;
  bool bare_cr_ = false;

  // A CR that turned out not to start CR LF: it leaves the relay as a
  // space, and the line goes on.
  void emitBareCr(std::string& out) {
    out += ' ';
    bare_cr_ = true;
    state_ = State::Middle;
  }
  std::uint64_t emitted_ = 0;
  LineMeter meter_;
};

}  // namespace mb::smtp
