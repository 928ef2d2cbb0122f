#pragma once

#include <filesystem>
#include <memory>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"
#include "delivery/smtp/smtp_provider.h"

namespace mb::http {
class HttpClient;
}
namespace mb::oauth {
class TokenCache;
}

namespace mb::delivery::smtp {

/// Where a `type: smtp` provider with `auth: xoauth2` gets its tokens, built
/// from its configuration: one place for the daemon (app/) and the
/// administrator commands (check-provider, test-send). oauth entra: one
/// token source (client credentials, or the refresh token of auth_mode
/// refresh_token) for every user; oauth google: the service account acting
/// as each user, a token per user. An empty selector for other auth
/// settings. `http`, `clock` and `cache` must outlive the selector.
Result<SmtpProvider::TokenSelector> makeSmtpTokenSelector(const config::ProviderConfig& provider,
                                                          http::HttpClient& http,
                                                          std::shared_ptr<oauth::TokenCache> cache,
                                                          const Clock& clock,
                                                          const std::filesystem::path& state_dir);

}  // namespace mb::delivery::smtp
