// libFuzzer target: one token endpoint response body through the error
// parser and classifier (with a spread of HTTP statuses) and through the
// success parser. Checks that nothing throws or crashes, that an explanation
// is always one printable line, and that a success always carries a token
// that expires after the request.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "oauth/entra_client_credentials.h"
#include "oauth/token_error.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

bool oneLine(std::string_view text) {
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return !text.empty();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  (void)mb::oauth::parseTokenErrorBody(body);
  for (const long status : {400L, 401L, 429L, 503L}) {
    mb::http::Response response;
    response.status = status;
    response.body = std::string(body);
    const mb::oauth::TokenFailure failure = mb::oauth::classifyTokenResponse(response);
    check(failure.http_status == status);
    check(oneLine(failure.explanation));
    if (status >= 500 || status == 429) check(failure.retryable);
  }

  const auto requested_at =
      std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
  const mb::oauth::TokenResult token = mb::oauth::parseTokenResponse(body, requested_at);
  if (token) {
    check(!token->value.empty());
    check(token->expires_at > requested_at);
  } else {
    check(oneLine(token.failure().explanation));
  }
  return 0;
}
