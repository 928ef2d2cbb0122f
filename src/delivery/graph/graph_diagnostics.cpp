#include "delivery/graph/graph_diagnostics.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>
#include <cstdio>
#include <ctime>
#include <random>

#include "base/text.h"
#include "delivery/graph/graph_error.h"
#include "oauth/encoding.h"

namespace mb::delivery::graph {
namespace {

using Level = CheckLine::Level;
using json = nlohmann::json;

constexpr auto kExpiryWarning = std::chrono::hours(24 * 30);

CheckLine ok(std::string text) { return {Level::Ok, std::move(text)}; }
CheckLine warn(std::string text) { return {Level::Warn, std::move(text)}; }
CheckLine fail(std::string text, std::string_view fix = {}) {
  if (!fix.empty()) text += " — fix: " + std::string(fix);
  return {Level::Fail, std::move(text)};
}

// classify()'s detail ends with " — <advice>"; as a FAIL line it reads
// "… — fix: <advice>".
CheckLine failGraph(const std::string& what, const GraphError& error) {
  std::string detail = classify(error, std::nullopt).detail;
  const auto dash = detail.rfind(" — ");
  if (dash == std::string::npos) return fail(what + ": " + detail);
  return fail(what + ": " + detail.substr(0, dash), detail.substr(dash + 5));
}

std::string describeGraph(const GraphError& error) {
  return "Graph " + std::to_string(error.status) + (error.code.empty() ? "" : " " + printable(error.code, 64)) +
         (error.message.empty() ? "" : ": " + printable(error.message, 300));
}

std::string day(Clock::WallTime t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

// Graph's endDateTime: "2026-07-01T12:00:00Z", maybe with fractions.
std::optional<Clock::WallTime> parseIsoTime(const std::string& text) {
  std::tm tm{};
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &s) != 6) return std::nullopt;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string stringAt(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// "expires 2026-07-01 (in 12 days)" / "expired on 2026-07-01".
std::string expiryText(Clock::WallTime end, Clock::WallTime now) {
  if (end <= now) return "expired on " + day(end);
  const auto days = std::chrono::duration_cast<std::chrono::hours>(end - now).count() / 24;
  return "expires " + day(end) + " (in " + std::to_string(days) + (days == 1 ? " day)" : " days)");
}

struct Fetched {
  std::optional<http::Response> response;
  std::string transport_error;
};

Fetched get(http::HttpClient& http, const config::ProviderConfig& config, const std::string& token,
            const std::string& url) {
  http::Request req;
  req.method = "GET";
  req.url = url;
  req.headers = {{"Authorization", "Bearer " + token}, {"Accept", "application/json"}};
  req.timeout = config.timeout;
  const http::Outcome out = http.perform(req);
  if (const auto* err = std::get_if<http::TransportError>(&out)) return {std::nullopt, err->message};
  return {std::get<http::Response>(out), {}};
}

void checkRoles(const std::string& token, const config::ProviderConfig& config, std::vector<CheckLine>& out) {
  const bool delegated = config.auth_mode == config::GraphAuthMode::RefreshToken;
  const char* kind = delegated ? "delegated permission" : "application permission";
  const auto roles = tokenRoles(token);
  if (!roles) {
    out.push_back(warn("the access token is not a readable JWT; its permissions (roles) cannot be checked here"));
    return;
  }
  if (roles->empty()) {
    out.push_back(fail(delegated ? "the token carries no delegated permissions (no scp claim): consent is missing"
                                 : "the token carries no application permissions (no roles claim): admin consent is "
                                   "missing",
                       "in Entra ID, App registrations > " + config.client_id +
                           " > API permissions, add Microsoft Graph Mail.Send (" + kind +
                           ") and grant admin consent for it"));
    return;
  }
  std::string list;
  for (const auto& r : *roles) list += (list.empty() ? "" : ", ") + printable(r, 80);
  const auto has = [&](std::string_view role) {
    return std::find(roles->begin(), roles->end(), role) != roles->end();
  };
  const std::string what = delegated ? "scopes" : "roles";
  if (has("Mail.Send")) {
    out.push_back(ok("the token has Mail.Send (" + what + ": " + list + ")"));
  } else {
    out.push_back(fail("the token's " + what + " (" + list + ") do not include Mail.Send",
                       std::string("add Microsoft Graph Mail.Send (") + kind +
                           ") to the app and grant admin consent for it"));
  }
  if (has("Mail.ReadWrite")) {
    out.push_back(ok("Mail.ReadWrite granted (for messages over about 3 MB and save_to_sent: false)"));
  } else if (!config.save_to_sent) {
    out.push_back(fail("Mail.ReadWrite not granted: with save_to_sent: false every message needs it",
                       std::string("add Microsoft Graph Mail.ReadWrite (") + kind + ") and grant admin consent"));
  } else {
    out.push_back(warn("Mail.ReadWrite not granted: messages over about 3 MB will fail (550 5.7.1)"));
  }
}

void checkSender(const std::string& token, const config::ProviderConfig& config, http::HttpClient& http,
                 const std::string& sender, std::vector<CheckLine>& out) {
  const std::string base = config.graph_endpoint + "/v1.0/users/" + oauth::percentEncode(sender);
  const std::string who = "sender " + printable(sender, 200);
  auto user = get(http, config, token, base + "?$select=id,userPrincipalName,mail");
  if (!user.response) {
    out.push_back(fail(who + ": Graph unreachable: " + user.transport_error,
                       "check the network path and proxy to " + config.graph_endpoint));
    return;
  }
  const http::Response& ur = *user.response;
  std::string mail;
  bool looked_up = false;
  if (ur.status == 200) {
    const json j = json::parse(ur.body, nullptr, false);
    const std::string upn = j.is_object() ? stringAt(j, "userPrincipalName") : std::string();
    mail = j.is_object() ? stringAt(j, "mail") : std::string();
    if (mail.empty()) {
      out.push_back(fail(who + " is a user (" + printable(upn, 200) + ") without a mailbox (no mail address)",
                         "give the user an Exchange Online licence, or send as another mailbox"));
      return;
    }
    out.push_back(ok(who + " is the user " + printable(upn, 200) + " (mail " + printable(mail, 200) + ")"));
    looked_up = true;
  } else {
    const GraphError e = parseGraphError(ur.status, ur.body);
    if (ur.status == 403 && e.code == "Authorization_RequestDenied") {
      out.push_back(warn("cannot look up " + who + "; grant User.Read.All (application) to check it here"));
    } else if (ur.status == 404 || e.code == "ErrorAccessDenied") {
      out.push_back(failGraph(who, e));
      return;
    } else {
      out.push_back(warn("could not look up " + who + ": " + describeGraph(e)));
    }
  }

  auto settings = get(http, config, token, base + "/mailboxSettings");
  if (!settings.response) {
    out.push_back(warn("mailbox of " + who + " not checked: " + settings.transport_error));
    return;
  }
  const http::Response& sr = *settings.response;
  if (sr.status == 200) {
    out.push_back(ok("the mailbox of " + who + " is present"));
    return;
  }
  const GraphError e = parseGraphError(sr.status, sr.body);
  if (e.code == "MailboxNotEnabledForRESTAPI" || e.code == "ErrorInvalidUser" ||
      (!looked_up && sr.status == 404)) {
    out.push_back(failGraph(who, e));
  } else if (!looked_up) {
    out.push_back(warn("the mailbox of " + who + " could not be checked (" + describeGraph(e) +
                       "); it is checked by the first delivery"));
  }
  // Looked up with a mail address and the settings not readable (no
  // MailboxSettings.Read): the mail address is as far as we can see.
}

struct Credential {
  std::string kind;  // "client secret" or "certificate"
  std::string name;
  std::string end_text;
  std::optional<Clock::WallTime> end;
  bool ours = false;
};

CheckLine credentialLine(const Credential& c, Clock::WallTime now) {
  const std::string what = (c.ours ? "the " : "") + c.kind + (c.name.empty() ? "" : " '" + printable(c.name, 100) + "'") +
                           (c.ours ? " in use" : "");
  if (!c.end) return warn(what + ": unreadable endDateTime '" + printable(c.end_text, 60) + "'");
  const std::string text = what + " " + expiryText(*c.end, now);
  if (*c.end <= now) {
    if (c.ours) {
      return fail(text, c.kind == "client secret"
                            ? "create a new client secret in the app registration and put it in the configuration"
                            : "upload a new certificate to the app registration and configure it");
    }
    return warn(text + "; remove it from the app registration");
  }
  if (*c.end - now < kExpiryWarning) {
    return warn(text + "; renew it before then (" +
                (c.kind == "client secret" ? std::string("new client secret") : std::string("new certificate")) +
                " in the app registration, then in the configuration)");
  }
  return ok(text);
}

void checkCredentials(const std::string& token, const config::ProviderConfig& config, http::HttpClient& http,
                      const Clock& clock, const oauth::ClientCertificate* certificate,
                      std::vector<CheckLine>& out) {
  const Clock::WallTime now = clock.wallNow();
  const bool uses_certificate = certificate != nullptr || !config.cert_file.empty() || !config.pkcs12_file.empty();
  if (certificate != nullptr) {
    Credential local{"local certificate", "", "", certificate->notAfter(), true};
    CheckLine line = credentialLine(local, now);
    line.text = "the local certificate (thumbprint " + certificate->thumbprint() + ") " +
                expiryText(certificate->notAfter(), now) +
                (line.level == Level::Ok ? "" : line.level == Level::Warn ? "; renew it soon" : "");
    if (line.level == Level::Fail) {
      line.text += " — fix: issue a new certificate, upload it to the app registration and configure it";
    }
    out.push_back(line);
  }

  auto fetched = get(http, config, token,
                     config.graph_endpoint + "/v1.0/applications(appId='" + oauth::percentEncode(config.client_id) +
                         "')?$select=passwordCredentials,keyCredentials");
  if (!fetched.response) {
    out.push_back(warn("cannot read the app's credentials: " + fetched.transport_error));
    return;
  }
  const http::Response& r = *fetched.response;
  if (r.status != 200) {
    const GraphError e = parseGraphError(r.status, r.body);
    if (r.status == 403) {
      out.push_back(warn("cannot read the app's credentials; grant Application.Read.All (application) to "
                         "see secret expiry here"));
    } else {
      out.push_back(warn("cannot read the app's credentials: " + describeGraph(e)));
    }
    return;
  }
  const json j = json::parse(r.body, nullptr, false);
  if (!j.is_object()) {
    out.push_back(warn("cannot read the app's credentials: the answer is not JSON"));
    return;
  }
  std::vector<Credential> creds;
  const char* list = uses_certificate ? "keyCredentials" : "passwordCredentials";
  if (auto it = j.find(list); it != j.end() && it->is_array()) {
    for (const auto& c : *it) {
      if (!c.is_object()) continue;
      Credential cred;
      cred.kind = uses_certificate ? "certificate" : "client secret";
      cred.name = stringAt(c, "displayName");
      cred.end_text = stringAt(c, "endDateTime");
      cred.end = parseIsoTime(cred.end_text);
      if (uses_certificate) {
        cred.ours = certificate != nullptr && iequals(stringAt(c, "customKeyIdentifier"), certificate->thumbprint());
      } else {
        // Graph shows the first characters of each secret as its hint:
        // compared, never printed.
        const std::string hint = stringAt(c, "hint");
        const std::string& secret = config.client_secret.reveal();
        cred.ours = !hint.empty() && secret.size() >= hint.size() && secret.compare(0, hint.size(), hint) == 0;
      }
      creds.push_back(std::move(cred));
    }
  }
  if (creds.empty()) {
    out.push_back(warn(std::string("the app registration lists no ") +
                       (uses_certificate ? "certificates" : "client secrets")));
    return;
  }
  const bool identified = std::count_if(creds.begin(), creds.end(), [](const Credential& c) { return c.ours; }) == 1;
  if (!identified) {
    for (auto& c : creds) c.ours = false;
  }
  for (const auto& c : creds) out.push_back(credentialLine(c, now));
}

}  // namespace

std::string formatCheckLine(const CheckLine& line) {
  switch (line.level) {
    case Level::Ok:
      return "ok: " + line.text;
    case Level::Warn:
      return "warn: " + line.text;
    case Level::Fail:
      return "FAIL: " + line.text;
  }
  return line.text;
}

bool anyFailed(const std::vector<CheckLine>& lines) {
  return std::any_of(lines.begin(), lines.end(), [](const CheckLine& l) { return l.level == Level::Fail; });
}

std::optional<std::vector<std::string>> tokenRoles(std::string_view token) {
  const auto first = token.find('.');
  if (first == std::string_view::npos) return std::nullopt;
  const auto second = token.find('.', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  std::string_view part = token.substr(first + 1, second - first - 1);
  while (!part.empty() && part.back() == '=') part.remove_suffix(1);
  const auto payload = oauth::base64UrlDecode(part);
  if (!payload) return std::nullopt;
  const json j = json::parse(*payload, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  std::vector<std::string> roles;
  if (auto it = j.find("roles"); it != j.end() && it->is_array()) {
    for (const auto& r : *it) {
      if (r.is_string()) roles.push_back(r.get<std::string>());
    }
  }
  // A delegated token lists its permissions in "scp", space separated.
  if (auto it = j.find("scp"); roles.empty() && it != j.end() && it->is_string()) {
    std::istringstream words(it->get<std::string>());
    for (std::string word; words >> word;) roles.push_back(word);
  }
  return roles;
}

std::vector<CheckLine> diagnoseGraphProvider(const config::ProviderConfig& config, http::HttpClient& http,
                                             oauth::TokenSource& tokens, const std::string& sender,
                                             const Clock& clock, const oauth::ClientCertificate* certificate) {
  std::vector<CheckLine> out;
  auto token = tokens.token();
  if (!token) {
    out.push_back(fail("no access token: " + token.failure().explanation));
    return out;
  }
  out.push_back(ok("access token acquired for client " + printable(config.client_id, 100) + " in tenant " +
                   printable(config.tenant_id, 200) + " (" +
                   (certificate != nullptr ? "certificate" : "client secret") + ")"));
  const std::string& value = token->value;
  checkRoles(value, config, out);
  if (!sender.empty()) checkSender(value, config, http, sender, out);
  checkCredentials(value, config, http, clock, certificate, out);
  return out;
}

std::string buildTestMessage(const std::string& from, const std::string& to, const std::string& subject,
                             const std::string& provider, const std::string& hostname,
                             Clock::WallTime now) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char date[64];
  std::snprintf(date, sizeof date, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  std::random_device rd;
  char unique[40];
  std::snprintf(unique, sizeof unique, "%lld.%08x%08x", static_cast<long long>(secs), rd(), rd());
  std::string m;
  m += "Date: " + std::string(date) + "\r\n";
  m += "Message-ID: <mailbridge-test." + std::string(unique) + "@" + hostname + ">\r\n";
  m += "From: <" + from + ">\r\n";
  m += "To: <" + to + ">\r\n";
  m += "Subject: " + subject + "\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: text/plain; charset=utf-8\r\n";
  m += "\r\n";
  m += "This is a test message from Mailbridge (mailbridge test-send).\r\n";
  m += "It was sent through the provider '" + provider + "' from the host " + hostname + ".\r\n";
  return m;
}

}  // namespace mb::delivery::graph
