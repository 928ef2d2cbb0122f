#include "smtp/data_reader.h"

#include "smtp/line_end_finder.h"

namespace mb::smtp {

void LineMeter::count(std::string_view content) {
  std::size_t pos = 0;
  while (pos < content.size()) {
    const std::size_t lf = content.find('\n', pos);
    if (lf == std::string_view::npos) {
      current_ += content.size() - pos;
      return;
    }
    current_ += lf + 1 - pos;
    if (limit_ != 0 && current_ > limit_) long_line_ = true;
    current_ = 0;
    pos = lf + 1;
  }
}

std::size_t DataReader::feed(std::string_view in, std::string& out) {
  const std::size_t out_before = out.size();
  std::size_t i = 0;
  LineEndFinder line_end(in);
  // Each case either consumes the byte (++i) or changes state and lets the
  // byte be looked at again in the new state; every such change leads to a
  // state that consumes, so the loop always advances.
  while (i < in.size() && state_ != State::Done) {
    const char c = in[i];
    switch (state_) {
      case State::LineStart:
      case State::SoftLineStart:
        if (c == '.') {
          state_ = state_ == State::LineStart ? State::Dot : State::SoftDot;
          ++i;
        } else {
          state_ = State::Middle;
        }
        break;

      case State::Middle: {
        const std::size_t end = line_end.next(i);
        out.append(in.substr(i, end - i));
        i = end;
        if (i == in.size()) break;
        if (in[i] == '\r') {
          state_ = State::Cr;
        } else {
          // A bare LF ends the line for the message (it would anyway, for
          // whoever reads it next), but the line after it cannot end the data:
          // that is what a different reading of the same bytes by another
          // server would exploit.
          out += "\r\n";
          bare_lf_ = true;
          state_ = State::SoftLineStart;
        }
        ++i;
        break;
      }

      case State::Cr:
        if (c == '\n') {
          out += "\r\n";
          state_ = State::LineStart;
          ++i;
        } else {
          // A bare CR must not leave the relay: some servers take it for a
          // line end. It is no line end here, so it does not start a line.
          emitBareCr(out);
        }
        break;

      case State::Dot:
      case State::SoftDot:
        if (c == '\r') {
          state_ = state_ == State::Dot ? State::DotCr : State::SoftDotCr;
          ++i;
        } else if (c == '\n') {
          // "." LF is not the end; keep the dot so the line stays visible.
          out += ".\r\n";
          bare_lf_ = true;
          state_ = State::SoftLineStart;
          ++i;
        } else {
          // Dot-unstuffing (§4.5.2): the leading dot goes, the rest stays.
          state_ = State::Middle;
        }
        break;

      case State::DotCr:
        if (c == '\n') {
          state_ = State::Done;
          ++i;
        } else {
          // "." then a bare CR: a line with content (the CR, as a space), so
          // the dot was a stuffing dot.
          emitBareCr(out);
        }
        break;

      case State::SoftDotCr:
        if (c == '\n') {
          // The lone dot after a bare LF is content, emitted as it came.
          // The CR LF that ends it is real, so the next line may end data.
          out += ".\r\n";
          state_ = State::LineStart;
          ++i;
        } else {
          emitBareCr(out);
        }
        break;

      case State::Done:
        break;
    }
  }
  emitted_ += out.size() - out_before;
  meter_.count(std::string_view(out).substr(out_before));
  return i;
}

}  // namespace mb::smtp
