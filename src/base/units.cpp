#include "base/units.h"

#include <array>
#include <limits>

#include "base/text.h"

namespace mb {
namespace {

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kGiB = 1024 * kMiB;

// Nine digits keep fraction * multiplier below 2^60, so the arithmetic stays
// exact in 64 bits without a wider type.
constexpr std::size_t kMaxFractionDigits = 9;

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isSpace(char c) {
  return c == ' ' || c == '\t';
}
bool isAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && isSpace(s.back())) s.remove_suffix(1);
  return s;
}

Error fail(std::string message) {
  return Error{std::move(message), 0};
}

// Reads a run of digits at s[i...]; false on overflow. `digits` counts them
// so callers can tell "no number" from "0".
bool readUnsigned(std::string_view s, std::size_t& i, std::uint64_t& value, std::size_t& digits) {
  value = 0;
  digits = 0;
  while (i < s.size() && isDigit(s[i])) {
    const auto d = static_cast<std::uint64_t>(s[i] - '0');
    if (__builtin_mul_overflow(value, std::uint64_t{10}, &value) ||
        __builtin_add_overflow(value, d, &value)) {
      return false;
    }
    ++i;
    ++digits;
  }
  return true;
}

std::uint64_t sizeMultiplier(std::string_view unit, bool& known) {
  const std::string u = asciiLower(unit);
  known = true;
  if (u.empty() || u == "b") return 1;
  if (u == "k" || u == "kb" || u == "kib") return kKiB;
  if (u == "m" || u == "mb" || u == "mib") return kMiB;
  if (u == "g" || u == "gb" || u == "gib") return kGiB;
  known = false;
  return 0;
}

struct DurationUnit {
  std::string_view name;
  std::int64_t millis;
};

// Largest first: formatDuration() walks this table in order.
constexpr std::array<DurationUnit, 6> kDurationUnits{{
    {"w", 7 * 24 * 3600 * 1000LL},
    {"d", 24 * 3600 * 1000LL},
    {"h", 3600 * 1000LL},
    {"m", 60 * 1000LL},
    {"s", 1000LL},
    {"ms", 1LL},
}};

const DurationUnit* findDurationUnit(std::string_view name) {
  for (const auto& u : kDurationUnits) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

}  // namespace

Result<std::uint64_t> parseSize(std::string_view text) {
  const std::string_view s = trim(text);
  if (s.empty()) return fail("empty; expected a number with an optional unit");
  if (s.front() == '-') return fail("a size cannot be negative");

  std::size_t i = 0;
  std::uint64_t whole = 0;
  std::size_t whole_digits = 0;
  if (!readUnsigned(s, i, whole, whole_digits)) return fail("number too large");
  if (whole_digits == 0) return fail("does not start with a number");

  std::uint64_t fraction = 0;
  std::size_t fraction_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!readUnsigned(s, i, fraction, fraction_digits)) return fail("too many decimal places");
    if (fraction_digits == 0) return fail("expected digits after the decimal point");
    if (fraction_digits > kMaxFractionDigits) {
      return fail("too many decimal places (at most " + std::to_string(kMaxFractionDigits) + ")");
    }
  }
  while (i < s.size() && isSpace(s[i])) ++i;

  const std::string_view unit = s.substr(i);
  bool known = false;
  const std::uint64_t multiplier = sizeMultiplier(unit, known);
  if (!known) {
    return fail("unknown unit '" + printable(unit, 16) + "'; use B, KB, MB or GB");
  }
  if (fraction_digits > 0 && multiplier == 1) {
    return fail("a number of bytes must be whole; use a unit for fractions, e.g. 1.5MB");
  }

  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(whole, multiplier, &bytes)) return fail("too large");
  if (fraction_digits > 0) {
    std::uint64_t scale = 1;
    for (std::size_t k = 0; k < fraction_digits; ++k) scale *= 10;
    if (__builtin_add_overflow(bytes, fraction * multiplier / scale, &bytes)) {
      return fail("too large");
    }
  }
  return bytes;
}

Result<std::chrono::milliseconds> parseDuration(std::string_view text) {
  const std::string_view s = trim(text);
  if (s.empty()) return fail("empty; expected a number with a unit such as 90s or 5m");
  if (s.front() == '-') return fail("a duration cannot be negative");

  constexpr auto kMaxMillis = std::numeric_limits<std::chrono::milliseconds::rep>::max();
  std::int64_t total = 0;
  std::size_t i = 0;
  bool first = true;
  while (i < s.size()) {
    while (i < s.size() && isSpace(s[i])) ++i;
    std::uint64_t number = 0;
    std::size_t digits = 0;
    if (!readUnsigned(s, i, number, digits) || number > static_cast<std::uint64_t>(kMaxMillis)) {
      return fail("too large");
    }
    if (digits == 0) {
      return fail(first ? "does not start with a number" : "expected a number before each unit");
    }
    // A lone whole number is seconds; inside a compound every number needs
    // its unit, so "1h30" is not silently read as 1h30s.
    if (first && i == s.size()) {
      std::int64_t ms = 0;
      if (__builtin_mul_overflow(static_cast<std::int64_t>(number), std::int64_t{1000}, &ms)) {
        return fail("too large");
      }
      return std::chrono::milliseconds(ms);
    }
    first = false;
    while (i < s.size() && isSpace(s[i])) ++i;
    const std::size_t unit_start = i;
    while (i < s.size() && isAlpha(s[i])) ++i;
    const std::string_view unit = s.substr(unit_start, i - unit_start);
    if (unit.empty()) {
      if (i < s.size() && (s[i] == '.' || s[i] == ',')) {
        return fail("fractions are not supported; combine units instead, e.g. 1h30m");
      }
      if (i == s.size()) return fail("missing unit after the last number; use ms, s, m, h, d or w");
      return fail("unexpected character '" + printable(s.substr(i, 1)) + "'");
    }
    const DurationUnit* u = findDurationUnit(unit);
    if (u == nullptr) {
      if (findDurationUnit(asciiLower(unit)) != nullptr) {
        return fail("units are lower case: write '" + asciiLower(unit) + "'");
      }
      return fail("unknown unit '" + printable(unit, 16) + "'; use ms, s, m, h, d or w");
    }
    std::int64_t part = 0;
    if (__builtin_mul_overflow(static_cast<std::int64_t>(number), u->millis, &part) ||
        __builtin_add_overflow(total, part, &total)) {
      return fail("too large");
    }
  }
  return std::chrono::milliseconds(total);
}

std::string formatSize(std::uint64_t bytes) {
  struct SizeUnit {
    const char* name;
    std::uint64_t bytes;
  };
  static constexpr std::array<SizeUnit, 3> kUnits{{{"GB", kGiB}, {"MB", kMiB}, {"KB", kKiB}}};
  for (const auto& u : kUnits) {
    if (bytes < u.bytes) continue;
    std::string out = std::to_string(bytes / u.bytes);
    const std::uint64_t rest = bytes % u.bytes;
    if (rest != 0) {
      // rest < 2^30, so rest * 100 cannot overflow.
      const std::uint64_t hundredths = rest * 100 / u.bytes;
      out += '.';
      out += static_cast<char>('0' + hundredths / 10);
      if (hundredths % 10 != 0) out += static_cast<char>('0' + hundredths % 10);
    }
    return out + u.name;
  }
  return std::to_string(bytes) + "B";
}

std::string formatDuration(std::chrono::milliseconds duration) {
  const std::int64_t count = duration.count();
  if (count == 0) return "0s";
  std::string out;
  // Work on the magnitude as unsigned so that the most negative value has one.
  std::uint64_t left = static_cast<std::uint64_t>(count);
  if (count < 0) {
    out = "-";
    left = ~left + 1;
  }
  for (const auto& u : kDurationUnits) {
    const auto unit = static_cast<std::uint64_t>(u.millis);
    if (left >= unit) {
      out += std::to_string(left / unit);
      out += u.name;
      left %= unit;
    }
  }
  return out;
}

}  // namespace mb
