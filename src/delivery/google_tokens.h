#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/clock.h"
#include "base/result.h"
#include "config/config.h"

namespace mb::http {
class HttpClient;
}
namespace mb::oauth {
class TokenCache;
class TokenSource;
}  // namespace mb::oauth

namespace mb::delivery {

/// The token source for one user; what GmailProvider and SmtpProvider ask.
using UserTokenSelector = std::function<std::shared_ptr<oauth::TokenSource>(const std::string& user)>;

/// The tokens of a provider that signs in as a Google service account with
/// domain-wide delegation (`type: gmail`, or `type: smtp` with `oauth:
/// google`): the key from `service_account_file`, one GoogleJwtBearer per
/// user it acts as (the JWT's sub), for `provider.scope`, behind `cache`.
/// A key file that does not load is an error naming the provider. `http`
/// and `clock` must outlive the selector.
Result<UserTokenSelector> googleUserTokens(const config::ProviderConfig& provider, http::HttpClient& http,
                                           std::shared_ptr<oauth::TokenCache> cache, const Clock& clock);

}  // namespace mb::delivery
