#include "oauth/token_error.h"

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <string>

#include "base/text.h"

namespace mb::oauth {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxDescription = 300;
constexpr std::size_t kMaxSnippet = 120;
constexpr std::size_t kMaxIdLength = 80;  // trace and correlation ids are GUIDs

// Made printable here, except the description, whose line structure the
// explanation needs; it is only cut, and made printable there.
std::string stringField(const json& obj, const char* name, std::size_t max_len,
                        bool keep_raw = false) {
  const auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) return {};
  const auto& s = it->get_ref<const std::string&>();
  if (keep_raw) return s.substr(0, max_len);
  return printable(s, max_len);
}

// "AADSTS7000215: Invalid client secret ..." → 7000215, for bodies that carry
// the code only in the text (older endpoints, some proxies re-wrapping).
std::vector<long> codesFromText(std::string_view text) {
  std::vector<long> out;
  constexpr std::string_view kPrefix = "AADSTS";
  for (std::size_t pos = text.find(kPrefix); pos != std::string_view::npos;
       pos = text.find(kPrefix, pos + 1)) {
    const char* first = text.data() + pos + kPrefix.size();
    const char* last = text.data() + text.size();
    long code = 0;
    const auto [end, ec] = std::from_chars(first, last, code);
    if (ec == std::errc() && end != first && code > 0 &&
        std::find(out.begin(), out.end(), code) == out.end()) {
      out.push_back(code);
    }
  }
  return out;
}

// The description without Microsoft's trailing "\r\nTrace ID: ..." lines,
// which the explanation states once, in order.
std::string firstLine(std::string_view text) {
  const std::size_t end = text.find_first_of("\r\n");
  return std::string(text.substr(0, end));
}

std::string trimmed(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

// Plain-words cause and remedy for the codes an administrator meets when
// setting Mailbridge up; empty for others.
std::string adviceFor(const TokenErrorBody& body) {
  for (const long code : body.error_codes) {
    switch (code) {
      case 7000215:
        return "the client secret is wrong: Entra ID does not accept it. Perhaps the secret's ID "
               "was pasted instead of its value; copy the secret's Value (shown only once, when "
               "it is created) or create a new client secret";
      case 7000222:
        return "the client secret has expired: create a new client secret for the application "
               "(App registrations > Certificates & secrets) and put its value in the "
               "configuration";
      case 700016:
        return "the application was not found in the tenant: check client_id (the Application "
               "(client) ID) and the tenant; the app must be registered in or consented to that "
               "tenant";
      case 90002:
        return "the tenant was not found: check the tenant id or domain, and the cloud (global, "
               "US Government, China): the login endpoint must be that tenant's cloud";
      case 7000229:
        return "the application has no service principal in the tenant: an administrator must "
               "grant admin consent for the application in that tenant";
      case 7000218:
        return "no client secret or client assertion was sent: configure a client secret or a "
               "certificate for this application";
      case 700027:
        return "the certificate assertion's signature is invalid: upload this certificate to the "
               "application (App registrations > Certificates & secrets), or check that the "
               "private key belongs to the certificate";
      case 700024:  // a client assertion outside its nbf/exp
      case 500133:
        return "the assertion's time is out of range: check this machine's clock (clock skew; "
               "keep it synchronised with NTP)";
      case 50126:
        return "wrong user name or password";
      case 50076:
      case 50079:
        return "multi-factor authentication (MFA) is required for this account: the password "
               "grant cannot work for it; use the device code flow or application credentials";
      case 70008:
      case 700082:
        return "the refresh token has expired: sign in again (authorise the account anew)";
      case 50173:
        return "the refresh token was revoked (password changed or sessions revoked): sign in "
               "again (authorise the account anew)";
      case 50034:
        return "the user account does not exist in the tenant: check the user name (the user "
               "principal name, such as relay@contoso.com) and the tenant";
      case 50053:
        return "the user account is locked (too many failed sign-ins, or sign-ins from a "
               "blocked IP address): wait for the lockout to end or have an administrator "
               "unlock it, and check the password that is configured";
      case 50057:
        return "the user account is disabled: an administrator must enable it (Users > the user "
               "> Account status), or use another account";
      case 50055:
        return "the user's password has expired: the user must set a new password (sign in "
               "interactively once); then update the password, or sign in again";
      case 65001:
        return "consent is missing: neither the user nor an administrator has consented to the "
               "application's delegated permissions (such as Mail.Send, offline_access): grant "
               "admin consent (App registrations > API permissions), or have the user sign in "
               "once interactively";
      case 9002313:
        return "the refresh token or grant is malformed or invalid (was it copied in full?): "
               "sign in again (authorise the account anew)";
      case 70000:
        return "the grant is invalid (a refresh token issued to another application or tenant, "
               "or a device code already used): sign in again (authorise the account anew)";
      case 70016:
        return "the user has not completed the device code sign-in yet (authorization pending)";
      case 70019:
        return "the sign-in was declined at the verification page (or its code expired): start "
               "the login again and approve it";
      case 70020:
        return "the device code expired before the sign-in was completed: start the login "
               "again and enter the new code within its lifetime (15 minutes by default)";
      case 50033:
      case 90024:
        return "a temporary problem at the Microsoft identity platform; the request will be "
               "retried";
      default:
        break;
    }
  }
  if (body.error == "temporarily_unavailable") {
    return "the Microsoft identity platform is temporarily unavailable; the request will be "
           "retried";
  }
  return {};
}

}  // namespace

bool TokenErrorBody::hasCode(long code) const {
  return std::find(error_codes.begin(), error_codes.end(), code) != error_codes.end();
}

TokenErrorBody parseTokenErrorBody(std::string_view body) {
  TokenErrorBody out;
  const json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    out.snippet = printable(trimmed(body), kMaxSnippet);
    out.error_codes = codesFromText(body);
    return out;
  }
  out.json = true;
  out.error = stringField(doc, "error", 64);
  out.error_description = stringField(doc, "error_description", 4096, /*keep_raw=*/true);
  out.trace_id = stringField(doc, "trace_id", kMaxIdLength);
  out.correlation_id = stringField(doc, "correlation_id", kMaxIdLength);
  out.timestamp = stringField(doc, "timestamp", kMaxIdLength);
  if (const auto it = doc.find("error_codes"); it != doc.end() && it->is_array()) {
    for (const auto& code : *it) {
      if (code.is_number_integer()) out.error_codes.push_back(code.get<long>());
    }
  }
  if (out.error_codes.empty()) out.error_codes = codesFromText(out.error_description);
  return out;
}

bool isRetryableTokenError(long http_status, const TokenErrorBody& body) {
  if (http_status >= 500 || http_status == 429 || http_status == 408) return true;
  if (body.error == "temporarily_unavailable") return true;
  return body.hasCode(50033) || body.hasCode(90024);
}

std::string explainTokenError(long http_status, const TokenErrorBody& body) {
  std::string out;
  if (const std::string advice = adviceFor(body); !advice.empty()) {
    out = advice;
  } else if (!body.json) {
    out = "the token endpoint answered HTTP " + std::to_string(http_status) +
          " with a body that is not the identity platform's JSON (a proxy or firewall in "
          "between?)";
    if (!body.snippet.empty()) out += ": \"" + body.snippet + "\"";
  } else {
    if (http_status >= 500) {
      out = "the Microsoft identity platform failed; the request will be retried";
    } else if (http_status == 429) {
      out =
          "the Microsoft identity platform is throttling token requests; the request will be "
          "retried";
    } else {
      out = "the token request was refused";
    }
    const std::string description = firstLine(body.error_description);
    if (!body.error.empty()) out += ": " + body.error;
    if (!description.empty()) out += ": " + printable(description, kMaxDescription);
  }

  std::string details = "HTTP " + std::to_string(http_status);
  if (!body.error_codes.empty())
    details = "AADSTS" + std::to_string(body.error_codes.front()) + ", " + details;
  if (!body.trace_id.empty()) details += ", trace ID " + body.trace_id;
  if (!body.correlation_id.empty()) details += ", correlation ID " + body.correlation_id;
  if (!body.timestamp.empty()) details += ", at " + body.timestamp;
  return out + " (" + details + ")";
}

TokenFailure classifyTokenResponse(const http::Response& response) {
  return classifyTokenError(response, parseTokenErrorBody(response.body));
}

TokenFailure classifyTokenError(const http::Response& response, const TokenErrorBody& body) {
  TokenFailure out;
  out.http_status = response.status;
  out.retryable = isRetryableTokenError(response.status, body);
  out.explanation = explainTokenError(response.status, body);
  out.error = body.error;
  out.error_code = body.error_codes.empty() ? 0 : body.error_codes.front();
  out.retry_after = response.retryAfter();
  return out;
}

TokenFailure classifyTransportError(const http::TransportError& error, std::string_view endpoint) {
  TokenFailure out;
  out.retryable = true;
  out.explanation = std::string(error.timeout ? "timed out waiting for " : "could not reach ") +
                    "the token endpoint " + printable(endpoint) +
                    " (check DNS, firewall and proxy settings): " + printable(error.message);
  return out;
}

}  // namespace mb::oauth
