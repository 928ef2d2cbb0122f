#pragma once

#include <chrono>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string_view>

#include "oauth/token_source.h"

namespace mb::oauth {

/// What every OAuth2 token endpoint sends on success (RFC 6749 §5.1), read
/// the same way for the Microsoft identity platform (entra_*.h) and Google
/// (google_service_account.h). Pure functions; thread-safe.

/// Reads a token endpoint's success body: access_token, token_type (Bearer,
/// or absent), expires_in (a number, or a numeric string as older endpoints
/// sent). `requested_at` is when the request went out, so expires_at errs
/// early. A body that is not such JSON gives a retryable failure (a proxy's
/// page answered 200) unless the token type is wrong.
TokenResult parseTokenResponse(std::string_view body,
                               std::chrono::system_clock::time_point requested_at);

/// A number of seconds as token endpoints send it (expires_in, interval):
/// a JSON integer, a float (clamped), or a numeric string as older
/// endpoints sent; nullopt for anything else.
std::optional<long long> jsonSeconds(const nlohmann::json& value);

}  // namespace mb::oauth
