#include "cli/oauth_command.h"

#include <iostream>
#include <optional>
#include <thread>

#include "base/log.h"
#include "base/text.h"
#include "cli/terminal.h"
#include "config/loader.h"
#include "delivery/graph/graph_setup.h"
#include "delivery/http_options.h"
#include "http/curl_client.h"
#include "oauth/entra_delegated.h"
#include "oauth/refresh_token_store.h"

namespace mb::cli {
namespace {

constexpr const char* kFooter = R"(
For a `type: graph` provider with `auth_mode: refresh_token`: the account in
its `user:` signs in once; the relay then keeps a refresh token, encrypted in
<state_dir>/oauth, and renews it on every use. Sign in again when the log
says the refresh token expired or was revoked (a password change, 90 days
unused, an administrator's revocation).

Run it as the user the relay runs as (sudo -u mailbridge mailbridge oauth
login ...), so that the relay can read what it stores.

Exit codes: 0 done, 1 the sign-in failed, 2 usage or configuration error.
)";

std::optional<config::ProviderConfig> delegatedProvider(const std::string& command, const std::string& path,
                                                        const std::string& name, std::filesystem::path& state_dir) {
  config::Config config;
  try {
    config = config::loadConfigFile(path);
  } catch (const config::ConfigError& e) {
    for (const auto& issue : e.issues()) std::cerr << issue.format() << '\n';
    std::cerr << command << ": the configuration has errors\n";
    return std::nullopt;
  }
  for (const auto& p : config.providers) {
    if (p.name != name) continue;
    const bool delegated =
        p.auth_mode == config::GraphAuthMode::RefreshToken &&
        (p.type == config::ProviderType::Graph ||
         (p.type == config::ProviderType::Smtp && p.auth == config::SmtpAuth::XOAuth2 && p.oauth == config::SmtpOAuth::Entra));
    if (!delegated) {
      std::cerr << command << ": provider '" << name
                << "' does not sign in as a user (it needs auth_mode: refresh_token, with type: graph or with "
                   "type: smtp, auth: xoauth2 and oauth: entra)\n";
      return std::nullopt;
    }
    state_dir = config.server.state_dir;
    return p;
  }
  std::cerr << command << ": no provider named '" << name << "' in " << path << '\n';
  return std::nullopt;
}

}  // namespace

OAuthCommand::OAuthCommand(CLI::App& parent) {
  oauth_ = parent.add_subcommand("oauth", "Sign the user of a delegated Microsoft Graph provider in or out.");
  oauth_->require_subcommand(1);
  login_ = oauth_->add_subcommand("login", "Sign in (device code, or --password) and store the refresh token.");
  login_->footer(kFooter);
  logout_ = oauth_->add_subcommand("logout", "Forget the stored refresh token.");
  for (CLI::App* c : {login_, logout_}) {
    c->add_option("--provider", provider_, "Provider name (providers[].name)")->required()->type_name("NAME");
    c->add_option("-c,--config", config_path_, "Configuration file (YAML)")->required()->type_name("FILE");
  }
  login_->add_flag("--password", password_,
                   "Sign in with the account's password (no MFA) instead of a device code");
}

int OAuthCommand::run() {
  log::init("off", log::Format::Text);
  return login_->parsed() ? login() : logout();
}

int OAuthCommand::login() {
  std::filesystem::path state_dir;
  const auto provider = delegatedProvider("oauth login", config_path_, provider_, state_dir);
  if (!provider) return kUsage;
  http::CurlClient http(delivery::httpOptionsFor(*provider));
  const Clock& clock = SystemClock::instance();
  const oauth::EntraOptions entra = delivery::graph::entraOptions(*provider);
  const auto client_secret = delivery::graph::delegatedClientSecret(*provider);

  std::optional<oauth::DelegatedTokens> tokens;
  if (password_) {
    std::optional<std::string> password;
    if (prepareHiddenInput()) {
      std::cerr << "Signing in as " << provider->user << ".\n";
      password = promptHidden("Password: ");
    } else {
      password = readLine();
    }
    if (!password || password->empty()) {
      std::cerr << "oauth login: no password given\n";
      return kUsage;
    }
    oauth::EntraPasswordGrant grant(entra, provider->user,
                                    config::Secret(config::Secret::Source::Inline, "terminal", *password),
                                    client_secret, http, clock);
    wipe(*password);
    auto got = grant.fetchTokens();
    if (!got) {
      std::cerr << "oauth login: sign-in failed: " << got.failure().explanation << '\n';
      return kFailed;
    }
    tokens = std::move(got).value();
  } else {
    oauth::DeviceCodeFlow flow(entra, client_secret, http, clock);
    auto code = flow.start();
    if (!code) {
      std::cerr << "oauth login: cannot start the device sign-in: " << code.failure().explanation << '\n';
      return kFailed;
    }
    std::cout << "Sign in as " << provider->user << ": " << code->message << '\n'
              << "Waiting for the sign-in (the code is valid for " << code->expires_in.count() / 60
              << " minutes)..." << std::endl;
    auto poll = flow.run(
        *code, [](std::chrono::seconds wait) { std::this_thread::sleep_for(wait); }, clock);
    switch (poll.status) {
      case oauth::DevicePollStatus::Success:
        tokens = std::move(*poll.tokens);
        break;
      case oauth::DevicePollStatus::Declined:
        std::cerr << "oauth login: the sign-in was declined\n";
        return kFailed;
      case oauth::DevicePollStatus::Expired:
        std::cerr << "oauth login: the code expired before the sign-in finished; run the command again\n";
        return kFailed;
      default:
        std::cerr << "oauth login: sign-in failed: " << poll.failure.explanation << '\n';
        return kFailed;
    }
  }
  if (tokens->refresh_token.empty()) {
    std::cerr << "oauth login: Microsoft issued no refresh token (the offline_access permission was not "
                 "granted); the relay could not renew the token\n";
    return kFailed;
  }
  oauth::FileRefreshTokenStore store(delivery::graph::refreshTokenDir(state_dir));
  if (Status st = store.save(provider->name, provider->user, tokens->refresh_token); !st) {
    wipe(tokens->refresh_token);
    std::cerr << "oauth login: cannot store the refresh token: " << st.error().message << '\n';
    return kFailed;
  }
  wipe(tokens->refresh_token);
  std::cout << "Signed in. The refresh token for " << provider->user << " is stored in "
            << store.directory().string() << "; provider " << provider->name
            << " uses it from its next delivery on (scopes: " << printable(tokens->scope, 300) << ").\n";
  return kOk;
}

int OAuthCommand::logout() {
  std::filesystem::path state_dir;
  const auto provider = delegatedProvider("oauth logout", config_path_, provider_, state_dir);
  if (!provider) return kUsage;
  oauth::FileRefreshTokenStore store(delivery::graph::refreshTokenDir(state_dir));
  if (Status st = store.remove(provider->name, provider->user); !st) {
    std::cerr << "oauth logout: " << st.error().message << '\n';
    return kFailed;
  }
  std::cout << "The refresh token for " << provider->user << " (provider " << provider->name
            << ") is forgotten. Revoke the sign-in in Entra ID too if the account is compromised.\n";
  return kOk;
}

}  // namespace mb::cli
