#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "smtp/data_reader.h"

namespace mb::smtp {

/// ChunkReader: the BDAT content normaliser (RFC 3030). Chunks carry the
/// message as it is, without dot-stuffing or an end marker, so there is no
/// end of data to find; what remains is DataReader's rule for line ends, so
/// that what leaves the relay has only CR LF whichever command brought it:
///  - a bare LF is emitted as CR LF and sawBareLf() becomes true (the
///    session refuses the message with 550 5.5.2 at LAST in reject mode);
///  - a bare CR is emitted as a space (sawBareCr());
///  - a CR at the end of one chunk and an LF at the start of the next are
///    one CR LF: the reader is fed the octets of all of a message's chunks,
///    in any split, and its output does not depend on the split;
///  - finish(), after the LAST chunk, turns a CR left at the very end into a
///    space and ends an unterminated last line with CR LF.
/// With a line limit set, sawLongLine() tells whether an emitted line (with
/// its CR LF, lines counted across chunks) was longer.
///
/// Talks to: nobody; ServerSession feeds it the chunk octets it reads.
/// Threading: a value type, one session's.
class ChunkReader {
 public:
  /// Consumes all of `in`, appending content to `out`.
  void feed(std::string_view in, std::string& out);

  /// The message is complete: appends what the end of input settles.
  void finish(std::string& out);

  bool sawBareLf() const { return bare_lf_; }
  bool sawBareCr() const { return bare_cr_; }
  bool sawLongLine() const { return meter_.sawLongLine(); }

  /// Content bytes emitted so far.
  std::uint64_t emitted() const { return emitted_; }

  /// As DataReader::setMaxLineLength(); kept by reset().
  void setMaxLineLength(std::size_t octets) { meter_.setLimit(octets); }

  /// Ready for the next message, with the same line limit.
  void reset() {
    const std::size_t limit = meter_.limit();
    *this = ChunkReader();
    meter_.setLimit(limit);
  }

 private:
  void account(const std::string& out, std::size_t from);

  bool pending_cr_ = false;  // the last octet fed was a CR; its meaning depends on the next
  bool line_open_ = false;   // content emitted since the last CR LF
  bool bare_lf_ = false;
  bool bare_cr_ = false;
  std::uint64_t emitted_ = 0;
  LineMeter meter_;
};

}  // namespace mb::smtp
