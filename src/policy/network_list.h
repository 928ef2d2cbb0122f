#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace mb::policy {

/// NetworkList: a set of IPv4 and IPv6 networks in CIDR notation
/// ("192.0.2.0/24", "2001:db8::/32", a bare address meaning /32 or /128),
/// matched against a client address given as text. An IPv4-mapped IPv6
/// address (::ffff:192.0.2.1) matches the IPv4 networks. Immutable after
/// construction, so safe to share between threads.
class NetworkList {
 public:
  NetworkList() = default;

  /// Parses every entry; the error names the first bad one.
  static Result<NetworkList> parse(const std::vector<std::string>& cidrs);

  /// Checks one entry (for the configuration validator).
  static Status validate(std::string_view cidr);

  bool contains(std::string_view address) const;
  bool empty() const { return nets_.empty(); }

 private:
  struct Net {
    std::array<std::uint8_t, 16> bytes{};  // IPv4 stored as IPv4-mapped IPv6
    int prefix = 0;                        // in bits over the 128-bit form
  };
  std::vector<Net> nets_;
};

}  // namespace mb::policy
