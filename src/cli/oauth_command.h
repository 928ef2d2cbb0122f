#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace mb::cli {

/// OAuthCommand: signs the user of a delegated provider (`type: graph`,
/// `auth_mode: refresh_token`) in once, so that the relay can refresh its
/// tokens from then on.
///
///   mailbridge oauth login --provider NAME --config FILE [--password]
///     device code flow (RFC 8628): prints Microsoft's instructions (open
///     https://microsoft.com/devicelogin, enter the code), waits for the
///     sign-in, and stores the refresh token for the provider's `user`,
///     encrypted, in `<state_dir>/oauth`. With --password, the password
///     grant instead (asked without echo, or one line of standard input):
///     for accounts without MFA where no browser is at hand.
///   mailbridge oauth logout --provider NAME --config FILE
///     forgets the stored refresh token.
///
/// Run it as the user the relay runs as, so that the relay can read the
/// store. Never prints a token, a code meant for the device or a password.
/// Exit codes: 0 done, 1 the sign-in failed, 2 usage or configuration error.
class OAuthCommand {
 public:
  static constexpr int kOk = 0;
  static constexpr int kFailed = 1;
  static constexpr int kUsage = 2;

  explicit OAuthCommand(CLI::App& parent);
  OAuthCommand(const OAuthCommand&) = delete;
  OAuthCommand& operator=(const OAuthCommand&) = delete;

  bool parsed() const { return oauth_->parsed(); }
  int run();

 private:
  int login();
  int logout();

  CLI::App* oauth_ = nullptr;
  CLI::App* login_ = nullptr;
  CLI::App* logout_ = nullptr;
  std::string provider_;
  std::string config_path_;
  bool password_ = false;
};

}  // namespace mb::cli
