#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mb {

/// RFC 5322 §3.3 date-time for `unix_seconds`, always in UTC and with the
/// English day and month names whatever the process locale says:
/// "Mon, 23 Nov 2026 16:19:00 +0000". Times outside 0001..9999 are clamped,
/// since the format has four digits for the year. Thread-safe.
std::string rfc5322Date(std::int64_t unix_seconds);

/// Whole seconds since the epoch of a system-clock time (towards zero).
inline std::int64_t unixSeconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace mb
