#include "oauth/client_assertion.h"

#include <openssl/err.h>
#include <openssl/rand.h>

#include <cstdint>
#include <nlohmann/json.hpp>

#include "oauth/encoding.h"

namespace mb::oauth {

Result<std::string> randomGuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    ERR_clear_error();
    return Error{"random GUID: the OpenSSL random generator failed"};
  }
  // RFC 9562 §5.4: version 4 in the high nibble of octet 6, variant 10xx in
  // octet 8.
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[b[i] >> 4];
    out += kHex[b[i] & 0xf];
  }
  return out;
}

Result<std::string> makeClientAssertion(const ClientCertificate& cert, std::string_view client_id,
                                        std::string_view audience,
                                        std::chrono::system_clock::time_point now,
                                        std::chrono::seconds lifetime) {
  auto jti = randomGuid();
  if (!jti) return jti.error();
  const std::int64_t iat =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();

  const nlohmann::json header = {{"alg", "PS256"}, {"typ", "JWT"}, {"x5t#S256", cert.x5tS256()}};
  const nlohmann::json claims = {{"aud", audience},
                                 {"iss", client_id},
                                 {"sub", client_id},
                                 {"jti", *jti},
                                 {"nbf", iat},
                                 {"iat", iat},
                                 {"exp", iat + lifetime.count()}};
  // dump() throws on invalid UTF-8 by default; the client id comes from the
  // configuration, so bad octets are replaced instead (the request then fails
  // at the endpoint with a message, not here with an exception).
  using nlohmann::json;
  std::string signing_input =
      base64UrlEncode(header.dump(-1, ' ', false, json::error_handler_t::replace)) + '.' +
      base64UrlEncode(claims.dump(-1, ' ', false, json::error_handler_t::replace));
  auto signature = cert.signPs256(signing_input);
  if (!signature) return signature.error();
  signing_input += '.';
  signing_input += base64UrlEncode(*signature);
  return signing_input;
}

}  // namespace mb::oauth
