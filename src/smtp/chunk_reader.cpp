#include "smtp/chunk_reader.h"

#include "smtp/line_end_finder.h"

namespace mb::smtp {

void ChunkReader::feed(std::string_view in, std::string& out) {
  const std::size_t before = out.size();
  std::size_t i = 0;
  if (pending_cr_ && !in.empty()) {
    pending_cr_ = false;
    if (in[0] == '\n') {
      out += "\r\n";
      line_open_ = false;
      i = 1;
    } else {
      out += ' ';
      bare_cr_ = true;
      line_open_ = true;
    }
  }
  LineEndFinder line_end(in);
  while (i < in.size()) {
    const std::size_t end = line_end.next(i);
    if (end > i) {
      out.append(in.substr(i, end - i));
      line_open_ = true;
    }
    i = end;
    if (i == in.size()) break;
    if (in[i] == '\n') {
      // As in DATA: a line end for the message, recorded for reject mode.
      out += "\r\n";
      bare_lf_ = true;
      line_open_ = false;
      ++i;
    } else if (i + 1 == in.size()) {
      // The chunk (or this piece of it) ends in CR: the next octet decides.
      pending_cr_ = true;
      ++i;
    } else if (in[i + 1] == '\n') {
      out += "\r\n";
      line_open_ = false;
      i += 2;
    } else {
      out += ' ';
      bare_cr_ = true;
      line_open_ = true;
      ++i;
    }
  }
  account(out, before);
}

void ChunkReader::finish(std::string& out) {
  const std::size_t before = out.size();
  if (pending_cr_) {
    pending_cr_ = false;
    out += ' ';
    bare_cr_ = true;
    line_open_ = true;
  }
  // Whoever reads the message next (a spool reader, an SMTP client that has
  // to dot-stuff it) may rely on every line ending in CR LF.
  if (line_open_) {
    out += "\r\n";
    line_open_ = false;
  }
  account(out, before);
}

void ChunkReader::account(const std::string& out, std::size_t from) {
  emitted_ += out.size() - from;
  meter_.count(std::string_view(out).substr(from));
}

}  // namespace mb::smtp
