#include "oauth/token_response.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "base/text.h"

namespace mb::oauth {
namespace {

using json = nlohmann::json;

// Neither Entra nor Google issues tokens for longer than a day; a larger
// number is a broken answer, kept from pushing the refresh out of sight.
constexpr long long kMaxLifetimeSeconds = 24LL * 3600;

TokenFailure badResponse(std::string what) {
  TokenFailure out;
  out.retryable = true;
  out.http_status = 200;
  out.explanation = "the token endpoint answered HTTP 200 but " + std::move(what) +
                    " (a proxy or firewall in between?)";
  return out;
}

}  // namespace

TokenResult parseTokenResponse(std::string_view body,
                               std::chrono::system_clock::time_point requested_at) {
  const json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return badResponse("not with JSON");

  const auto token = doc.find("access_token");
  if (token == doc.end() || !token->is_string() || token->get_ref<const std::string&>().empty()) {
    return badResponse("without an access_token");
  }
  if (const auto type = doc.find("token_type"); type != doc.end()) {
    if (!type->is_string() || !iequals(type->get_ref<const std::string&>(), "Bearer")) {
      TokenFailure out;
      out.retryable = false;
      out.http_status = 200;
      out.explanation = "the token endpoint issued a token that is not a Bearer token (type " +
                        (type->is_string() ? printable(type->get_ref<const std::string&>(), 40)
                                           : std::string("not a string")) +
                        ")";
      return out;
    }
  }
  const auto expires_in = doc.find("expires_in");
  const std::optional<long long> seconds =
      expires_in == doc.end() ? std::nullopt : jsonSeconds(*expires_in);
  if (!seconds) return badResponse("without a usable expires_in");
  if (*seconds <= 0) return badResponse("with a token that has already expired");

  AccessToken out;
  out.value = token->get<std::string>();
  out.expires_at = requested_at + std::chrono::seconds(std::min(*seconds, kMaxLifetimeSeconds));
  return out;
}

std::optional<long long> jsonSeconds(const json& v) {
  if (v.is_number_integer()) return v.get<long long>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d)) return std::nullopt;
    return static_cast<long long>(std::clamp(d, -1.0, 1e12));
  }
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    long long n = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec == std::errc() && end == s.data() + s.size()) return n;
  }
  return std::nullopt;
}

}  // namespace mb::oauth
