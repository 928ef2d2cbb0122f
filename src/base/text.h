#pragma once

#include <string>
#include <string_view>

namespace mb {

/// Escapes control characters (CR, LF, NUL, ESC, DEL ...) as \xNN so that
/// text that came from a client can be put in a log line or a header without
/// forging a line. Bytes >= 0x80 pass unchanged (UTF-8 stays readable).
/// Cuts the result at max_len bytes of input and marks the cut with "...".
std::string printable(std::string_view in, std::size_t max_len = 256);

/// ASCII-only case folding and comparison (SMTP verbs, parameters, domains).
std::string asciiLower(std::string_view in);
bool iequals(std::string_view a, std::string_view b);
bool istartsWith(std::string_view text, std::string_view prefix);

}  // namespace mb
