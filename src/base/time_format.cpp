#include "base/time_format.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <string_view>

namespace mb {
namespace {

std::string pad(long long value, int width) {
  std::string s = std::to_string(value);
  while (static_cast<int>(s.size()) < width) s.insert(s.begin(), '0');
  return s;
}

}  // namespace

std::string rfc5322Date(std::int64_t unix_seconds) {
  static constexpr std::array<std::string_view, 7> kDays{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<std::string_view, 12> kMonths{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  // A four-digit year is all the format can show: 0001-01-01 .. 9999-12-31.
  unix_seconds = std::clamp<std::int64_t>(unix_seconds, -62135596800, 253402300799);
  using namespace std::chrono;
  const sys_seconds tp{seconds{unix_seconds}};
  const sys_days day = floor<days>(tp);
  const year_month_day ymd{day};
  const hh_mm_ss hms{tp - day};
  std::string out;
  out += kDays[weekday{day}.c_encoding()];
  out += ", ";
  out += pad(static_cast<unsigned>(ymd.day()), 2);
  out += ' ';
  out += kMonths[static_cast<unsigned>(ymd.month()) - 1];
  out += ' ';
  out += pad(static_cast<int>(ymd.year()), 4);
  out += ' ';
  out += pad(hms.hours().count(), 2) + ':' + pad(hms.minutes().count(), 2) + ':' +
         pad(hms.seconds().count(), 2);
  out += " +0000";
  return out;
}

}  // namespace mb
