#include "smtp/sasl.h"

#include <cstdint>

namespace mb::smtp {

namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The 6-bit value of a base64 character, or -1.
int sextet(char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+') return 62;
  if (ch == '/') return 63;
  return -1;
}

}  // namespace

std::string encodeBase64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t n =
        (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16) |
        (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8) |
        static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  const std::size_t left = in.size() - i;
  if (left > 0) {
    std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (left == 2) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += left == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool decodeBase64(std::string_view in, std::string& out) {
  wipe(out);
  if (in.size() % 4 != 0) return false;
  // Reserved once, so no reallocation leaves a partial copy behind.
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool final_group = i + 4 == in.size();
    const int a = sextet(in[i]);
    const int b = sextet(in[i + 1]);
    const int c = sextet(in[i + 2]);
    const int d = sextet(in[i + 3]);
    bool ok = a >= 0 && b >= 0;
    int produce = 3;
    if (ok && c < 0) {
      // "xx==": one octet, and the low four bits of the second sextet unused.
      ok = final_group && in[i + 2] == '=' && in[i + 3] == '=' && (b & 0x0f) == 0;
      produce = 1;
    } else if (ok && d < 0) {
      // "xxx=": two octets, the low two bits of the third sextet unused.
      ok = final_group && in[i + 3] == '=' && (c & 0x03) == 0;
      produce = 2;
    }
    if (!ok) {
      wipe(out);
      return false;
    }
    const std::uint32_t n = (static_cast<std::uint32_t>(a) << 18) |
                            (static_cast<std::uint32_t>(b) << 12) |
                            (static_cast<std::uint32_t>(c < 0 ? 0 : c) << 6) |
                            static_cast<std::uint32_t>(d < 0 ? 0 : d);
    out += static_cast<char>((n >> 16) & 0xff);
    if (produce >= 2) out += static_cast<char>((n >> 8) & 0xff);
    if (produce == 3) out += static_cast<char>(n & 0xff);
  }
  return true;
}

bool splitPlainMessage(std::string_view message, AuthRequest& out) {
  const std::size_t first = message.find('\0');
  if (first == std::string_view::npos) return false;
  const std::size_t second = message.find('\0', first + 1);
  if (second == std::string_view::npos) return false;
  if (message.find('\0', second + 1) != std::string_view::npos) return false;
  out.authzid.assign(message.substr(0, first));
  out.user.assign(message.substr(first + 1, second - first - 1));
  // Straight into place: a temporary would leave a copy behind.
  wipe(out.password);
  out.password.assign(message.substr(second + 1));
  return true;
}

void wipe(std::string& s) {
  // Through a volatile pointer: plain stores to memory that is about to be
  // released are dead stores the optimiser may remove.
  volatile char* p = s.data();
  for (std::size_t i = 0; i < s.size(); ++i) p[i] = '\0';
  s.clear();
}

}  // namespace mb::smtp
