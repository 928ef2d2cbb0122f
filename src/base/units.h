#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace mb {

// Sizes and durations as people write them in configuration files. Pure
// functions: no state, safe from any thread. Errors say what was wrong with
// the text, without repeating the key it came from (the caller knows that).

/// Parses a size in bytes. Units are binary, as Exchange counts them:
/// KB = KiB = K = 1024 bytes, MB = MiB = M = 1024 KB, GB = GiB = G = 1024 MB.
/// Accepted: "1234" (bytes), "512B", "64KB", "64K", "64KiB", "25MB", "1GB",
/// units in any case, an optional space before the unit, and a decimal
/// fraction with a unit ("1.5MB"; rounded down to a whole byte, at most nine
/// decimal places). Rejected: negative numbers, fractions of bytes, unknown
/// units, anything else after the number, and values above 2^64-1.
Result<std::uint64_t> parseSize(std::string_view text);

/// Parses a duration. Units: ms, s, m (minutes), h, d, w (7 days), in lower
/// case, optionally combined ("1h30m", "1h 30m"); a bare whole number means
/// seconds ("90"). Rejected: negative or fractional numbers, unknown units,
/// and totals that do not fit in std::chrono::milliseconds.
Result<std::chrono::milliseconds> parseDuration(std::string_view text);

/// "25MB", "1KB", "1.5MB", "100B": the largest binary unit the size reaches,
/// exact when it is a whole number of that unit, otherwise with up to two
/// decimals (then approximate). For messages, not for storage.
std::string formatSize(std::uint64_t bytes);

/// "1h30m", "250ms", "1w2d", "0s": the largest units first, in the syntax
/// parseDuration() reads back. Negative durations get a leading "-".
std::string formatDuration(std::chrono::milliseconds duration);

}  // namespace mb
