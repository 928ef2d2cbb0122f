#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "config/config.h"
#include "http/http_client.h"
#include "oauth/client_certificate.h"
#include "oauth/token_source.h"

namespace mb::delivery::graph {

/// One finding of diagnoseGraphProvider(). `text` is for an administrator;
/// for Fail it ends with " — fix: <what to do>" when there is something to do.
struct CheckLine {
  enum class Level { Ok, Warn, Fail };
  Level level = Level::Ok;
  std::string text;
};

/// "ok: …", "warn: …" or "FAIL: …".
std::string formatCheckLine(const CheckLine& line);

/// True when any line is a Fail.
bool anyFailed(const std::vector<CheckLine>& lines);

/// The permissions of a JWT access token, read from its payload (the
/// base64url middle part) without verifying anything: the `roles` claim of
/// an app-only token, else the space-separated `scp` claim of a delegated
/// one; an empty vector when neither is there, nullopt when `token` is not a
/// readable JWT.
std::optional<std::vector<std::string>> tokenRoles(std::string_view token);

/// What `mailbridge check-provider` checks for a `type: graph` provider,
/// without sending anything, in order:
///  1. a token comes from `tokens` (else its explanation, and nothing more);
///  2. the token's roles hold Mail.Send (none at all: admin consent is
///     missing) and, as a warning only, Mail.ReadWrite;
///  3. with a `sender`: the user exists (GET /v1.0/users/{sender}) and has a
///     mailbox (its mail attribute, and /mailboxSettings when readable);
///  4. the app registration's credentials (GET /v1.0/applications(appId=…)):
///     the end dates of the secret or certificate in use, a warning under 30
///     days, a failure when expired; with a `certificate`, its own notAfter.
/// Requests go to config.graph_endpoint through `http`; `clock` says what now
/// is. Never puts a secret or a token into the lines.
std::vector<CheckLine> diagnoseGraphProvider(const config::ProviderConfig& config, http::HttpClient& http,
                                             oauth::TokenSource& tokens, const std::string& sender,
                                             const Clock& clock,
                                             const oauth::ClientCertificate* certificate = nullptr);

/// A short RFC 5322 message for `mailbridge test-send`: Date (from `now`),
/// Message-ID with `hostname`, From, To, Subject and a body naming the
/// provider and the host. CRLF line ends.
std::string buildTestMessage(const std::string& from, const std::string& to, const std::string& subject,
                             const std::string& provider, const std::string& hostname,
                             Clock::WallTime now);

}  // namespace mb::delivery::graph
