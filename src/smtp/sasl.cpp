#include "smtp/sasl.h"

#include <sodium.h>

#include <cstdint>

namespace mb::smtp {

std::string encodeBase64(std::string_view in) {
  const std::size_t len = sodium_base64_encoded_len(in.size(), sodium_base64_VARIANT_ORIGINAL);
  std::string out(len, '\0');
  sodium_bin2base64(out.data(), len, reinterpret_cast<const unsigned char*>(in.data()), in.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(len - 1);  // the terminating NUL
  return out;
}

bool decodeBase64(std::string_view in, std::string& out) {
  wipe(out);
  if (in.size() % 4 != 0) return false;
  // libsodium 1.0.18 takes some octets >= 0x80 for base64 digits (the
  // fuzzer found "\xdaH\xf4F" decoding to three bytes), so the alphabet is
  // checked here first.
  for (char ch : in) {
    const bool digit = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                       (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' || ch == '=';
    if (!digit) return false;
  }
  // Sized once, so no reallocation leaves a partial copy of a password behind.
  out.resize(in.size() / 4 * 3);
  std::size_t len = 0;
  const char* end = nullptr;
  // libsodium's decoder is strict: padding required, no stray characters
  // (`end` must reach the end), and unused bits must be zero.
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), in.data(),
                        in.size(), nullptr, &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != in.data() + in.size()) {
    wipe(out);
    return false;
  }
  out.resize(len);
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
