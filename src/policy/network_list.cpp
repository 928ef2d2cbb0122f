#include "policy/network_list.h"

#include <arpa/inet.h>

#include <algorithm>
#include <optional>

#include "base/text.h"

namespace mb::policy {
namespace {

using Bytes = std::array<std::uint8_t, 16>;

// Both families live in one 128-bit space: an IPv4 address becomes
// ::ffff:a.b.c.d, so that a client reached over a dual-stack socket (which
// reports IPv4 peers in that form) matches the IPv4 networks unchanged.
constexpr int kMappedPrefix = 96;

struct Parsed {
  Bytes bytes{};
  bool v4 = false;
};

std::optional<Parsed> parseAddress(std::string_view text) {
  // inet_pton needs a terminated string; entries are short, so copy.
  const std::string s(text);
  Parsed p;
  if (s.find(':') != std::string::npos) {
    if (::inet_pton(AF_INET6, s.c_str(), p.bytes.data()) != 1) return std::nullopt;
    return p;
  }
  std::uint8_t v4[4];
  if (::inet_pton(AF_INET, s.c_str(), v4) != 1) return std::nullopt;
  p.bytes[10] = 0xff;
  p.bytes[11] = 0xff;
  std::copy(std::begin(v4), std::end(v4), p.bytes.begin() + 12);
  p.v4 = true;
  return p;
}

void maskHostBits(Bytes& bytes, int prefix) {
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(prefix - 8 * i, 0, 8);
    const auto mask = static_cast<std::uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
    bytes[static_cast<std::size_t>(i)] &= mask;
  }
}

Error bad(std::string_view entry, std::string_view why) {
  return Error{"invalid network '" + printable(entry, 64) + "': " + std::string(why), 0};
}

// Shared by parse() and validate() so the two can never disagree.
Result<std::pair<Bytes, int>> parseNet(std::string_view cidr) {
  if (cidr.empty()) return bad(cidr, "empty; expected an address or ADDRESS/PREFIX");
  const std::size_t slash = cidr.find('/');
  const std::string_view addr_text = cidr.substr(0, slash);
  const auto addr = parseAddress(addr_text);
  if (!addr) {
    return bad(cidr, "'" + printable(addr_text, 64) + "' is not an IPv4 or IPv6 address");
  }
  const int max_prefix = addr->v4 ? 32 : 128;
  int prefix = max_prefix;
  if (slash != std::string_view::npos) {
    const std::string_view p = cidr.substr(slash + 1);
    const bool digits_only =
        !p.empty() && p.size() <= 3 &&
        std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits_only) {
      return bad(cidr, "the prefix length after '/' must be a number from 0 to " +
                           std::to_string(max_prefix));
    }
    prefix = 0;
    for (char c : p) prefix = prefix * 10 + (c - '0');
    if (prefix > max_prefix) {
      return bad(cidr, std::string("prefix length ") + std::to_string(prefix) + " is larger than " +
                           std::to_string(max_prefix) + " for an " + (addr->v4 ? "IPv4" : "IPv6") +
                           " network");
    }
  }
  const int prefix128 = addr->v4 ? prefix + kMappedPrefix : prefix;
  Bytes bytes = addr->bytes;
  // Host bits after the prefix are ignored rather than rejected, as Postfix
  // does for mynetworks: "192.0.2.1/24" means 192.0.2.0/24.
  maskHostBits(bytes, prefix128);
  return std::make_pair(bytes, prefix128);
}

}  // namespace

Result<NetworkList> NetworkList::parse(const std::vector<std::string>& cidrs) {
  NetworkList list;
  list.nets_.reserve(cidrs.size());
  for (const auto& c : cidrs) {
    auto net = parseNet(c);
    if (!net) return net.error();
    list.nets_.push_back(Net{net->first, net->second});
  }
  return list;
}

Status NetworkList::validate(std::string_view cidr) {
  auto net = parseNet(cidr);
  if (!net) return net.error();
  return {};
}

bool NetworkList::contains(std::string_view address) const {
  // Link-local peers may come with a zone ("fe80::1%eth0"); the zone says
  // which interface, not which address, so it plays no part in matching.
  if (const auto pct = address.find('%'); pct != std::string_view::npos) {
    address = address.substr(0, pct);
  }
  const auto addr = parseAddress(address);
  if (!addr) return false;
  return std::any_of(nets_.begin(), nets_.end(), [&](const Net& net) {
    Bytes masked = addr->bytes;
    maskHostBits(masked, net.prefix);
    return masked == net.bytes;
  });
}

}  // namespace mb::policy
