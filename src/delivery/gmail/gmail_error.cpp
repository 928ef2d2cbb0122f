#include "delivery/gmail/gmail_error.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/text.h"

namespace mb::delivery::gmail {
namespace {

using queue::Outcome;
using queue::RecipientResult;
using json = nlohmann::json;

constexpr std::chrono::seconds kMaxRetryAfter{86400};

std::string stringAt(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool containsNoCase(std::string_view text, std::string_view part) {
  return asciiLower(text).find(asciiLower(part)) != std::string::npos;
}

RecipientResult make(Outcome outcome, int code, const char* enhanced, const char* summary) {
  RecipientResult r;
  r.outcome = outcome;
  r.smtp_code = code;
  r.enhanced = enhanced;
  r.summary = summary;
  return r;
}

// Reads exactly `n` digits at `pos`.
std::optional<int> digits(std::string_view s, std::size_t& pos, std::size_t n) {
  if (pos + n > s.size()) return std::nullopt;
  int value = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;  // from_chars would take a '-'
    value = value * 10 + (s[i] - '0');
  }
  pos += n;
  return value;
}

bool expect(std::string_view s, std::size_t& pos, std::string_view chars) {
  if (pos >= s.size() || chars.find(s[pos]) == std::string_view::npos) return false;
  ++pos;
  return true;
}

// RFC 3339 date-time as Google writes it ("2026-03-07T18:18:23.688Z"; an
// offset instead of Z is read too), as a time point with millisecond
// precision.
std::optional<std::chrono::system_clock::time_point> parseRfc3339(std::string_view s) {
  using namespace std::chrono;
  std::size_t pos = 0;
  const auto y = digits(s, pos, 4);
  if (!y || !expect(s, pos, "-")) return std::nullopt;
  const auto mo = digits(s, pos, 2);
  if (!mo || !expect(s, pos, "-")) return std::nullopt;
  const auto d = digits(s, pos, 2);
  if (!d || !expect(s, pos, "Tt")) return std::nullopt;
  const auto h = digits(s, pos, 2);
  if (!h || !expect(s, pos, ":")) return std::nullopt;
  const auto mi = digits(s, pos, 2);
  if (!mi || !expect(s, pos, ":")) return std::nullopt;
  const auto sec = digits(s, pos, 2);
  if (!sec) return std::nullopt;
  long long millis = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int scale = 100;
    const std::size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      millis += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  seconds offset{0};
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    const int sign = s[pos] == '-' ? -1 : 1;
    ++pos;
    const auto oh = digits(s, pos, 2);
    if (!oh || !expect(s, pos, ":")) return std::nullopt;
    const auto om = digits(s, pos, 2);
    if (!om || *oh > 23 || *om > 59) return std::nullopt;
    offset = seconds(sign * (*oh * 3600 + *om * 60));
  } else {
    return std::nullopt;  // a time without a zone names no instant
  }
  const year_month_day date{year(*y), month(static_cast<unsigned>(*mo)),
                            day(static_cast<unsigned>(*d))};
  if (!date.ok() || *h > 23 || *mi > 59 || *sec > 60) return std::nullopt;
  return system_clock::time_point(sys_days(date)) + hours(*h) + minutes(*mi) + seconds(*sec) +
         milliseconds(millis) - offset;
}

// "... Retry after 2026-03-07T18:18:23.688Z (Mail sending)": how long from
// `now`, rounded up to whole seconds; nothing when there is no such time or
// it has passed.
std::optional<std::chrono::seconds> retryAfterFromMessage(
    std::string_view message, std::chrono::system_clock::time_point now) {
  constexpr std::string_view kMarker = "retry after ";
  const std::string lower = asciiLower(message);
  const std::size_t at = lower.find(kMarker);
  if (at == std::string::npos) return std::nullopt;
  std::string_view rest = message.substr(at + kMarker.size());
  rest = rest.substr(0, rest.find_first_of(" \t\r\n()"));
  const auto when = parseRfc3339(rest);
  if (!when) return std::nullopt;
  if (*when <= now) return std::nullopt;
  const auto wait = std::chrono::ceil<std::chrono::seconds>(*when - now);
  return std::min(wait, kMaxRetryAfter);
}

bool isThrottling(const GmailError& e) {
  if (e.status == 429) return true;
  return e.status == 403 &&
         (e.reason == "rateLimitExceeded" || e.reason == "userRateLimitExceeded" ||
          e.reason == "dailyLimitExceeded" || e.reason == "quotaExceeded");
}

bool isTooLarge(const GmailError& e) {
  if (e.status == 413 || e.reason == "uploadTooLarge") return true;
  return (e.status == 400) &&
         (containsNoCase(e.message, "too large") ||
          containsNoCase(e.message, "payload size exceeds"));
}

bool isRecipientProblem(const std::string& message) {
  return containsNoCase(message, "Invalid To header") ||
         containsNoCase(message, "Invalid Cc header") ||
         containsNoCase(message, "Invalid Bcc header") ||
         containsNoCase(message, "Recipient address required");
}

}  // namespace

GmailError parseGmailError(long status, std::string_view body) {
  GmailError e;
  e.status = status;
  const json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return e;
  const auto err = j.find("error");
  if (err == j.end() || !err->is_object()) return e;
  if (const auto code = err->find("code"); code != err->end() && code->is_number_integer()) {
    const auto value = code->get<long long>();
    if (value >= 0 && value <= std::numeric_limits<int>::max()) e.code = static_cast<int>(value);
  }
  e.message = stringAt(*err, "message");
  e.status_text = stringAt(*err, "status");
  if (const auto errors = err->find("errors"); errors != err->end() && errors->is_array()) {
    for (const auto& item : *errors) {
      if (!item.is_object()) continue;
      if (e.message.empty()) e.message = stringAt(item, "message");
      if (e.reason.empty()) e.reason = stringAt(item, "reason");
    }
  }
  return e;
}

queue::RecipientResult classify(const GmailError& error, std::optional<std::chrono::seconds> retry_after,
                                std::chrono::system_clock::time_point now) {
  RecipientResult r;
  std::string advice;
  const std::string& reason = error.reason;

  if (isTooLarge(error)) {
    r = make(Outcome::PermanentFailure, 552, "5.3.4", "message too big for Gmail");
    advice = "the message is over Gmail's limit of 35 MB (36,700,160 bytes as uploaded); it "
             "cannot be sent through the Gmail API";
  } else if (isThrottling(error)) {
    r = make(Outcome::TemporaryFailure, 451, "4.7.0", "Gmail sending limit reached, try later");
    r.throttled = true;
    if (reason == "dailyLimitExceeded" || reason == "quotaExceeded") {
      advice = "the Cloud project's Gmail API quota is used up; wait, or raise the quota (Cloud "
               "console > APIs & Services > Gmail API > Quotas)";
    } else {
      advice = "throttled by Gmail (the per-user request rate, or the Workspace sending limits "
               "of 2,000 messages and 10,000 recipients a day per user, after which sending is "
               "blocked for up to 24 hours); the queue waits and paces this mailbox";
    }
    if (!retry_after) retry_after = retryAfterFromMessage(error.message, now);
  } else if (error.status == 403 && reason == "insufficientPermissions") {
    r = make(Outcome::PermanentFailure, 550, "5.7.1", "relay not allowed to send through Gmail");
    advice = "the access token has no scope that allows sending: configure the scope "
             "https://www.googleapis.com/auth/gmail.send (or gmail.compose, gmail.modify, "
             "https://mail.google.com/) and grant that same scope to the service account's "
             "client ID in domain-wide delegation (Admin console > Security > Access and data "
             "control > API controls)";
  } else if (error.status == 403 && reason == "domainPolicy") {
    r = make(Outcome::PermanentFailure, 550, "5.7.1", "sending through Gmail disabled by policy");
    advice = "the Workspace domain's policy does not let apps use Gmail for this user: in the "
             "Admin console (Security > Access and data control > API controls > App access "
             "control) trust the service account's client or allow access to Gmail";
  } else if (error.status == 400 && (reason == "invalidArgument" || reason == "failedPrecondition")) {
    if (isRecipientProblem(error.message)) {
      r = make(Outcome::PermanentFailure, 550, "5.1.3", "recipient address refused by Gmail");
      advice = "Gmail found no valid recipients in the To, Cc and Bcc headers (an address is "
               "malformed, or there is none)";
    } else if (containsNoCase(error.message, "Too many recipients")) {
      r = make(Outcome::PermanentFailure, 550, "5.5.3", "too many recipients for Gmail");
      advice = "Gmail takes at most 100 recipients per message";
    } else if (containsNoCase(error.message, "Invalid From header")) {
      r = make(Outcome::PermanentFailure, 550, "5.1.7", "sender address refused by Gmail");
      advice = "Gmail refused the From header of the message";
    } else if (reason == "failedPrecondition") {
      r = make(Outcome::PermanentFailure, 550, "5.7.1", "sender cannot send through Gmail");
      if (containsNoCase(error.message, "Mail service not enabled")) {
        advice = "the Gmail service is off for this user: turn it on in the Admin console "
                 "(Apps > Google Workspace > Gmail > Service status) or give the user a licence "
                 "that includes Gmail";
      } else {
        advice = "Gmail cannot send as this user: the user to impersonate is not in the "
                 "Workspace domain, is suspended or has no Gmail, or no user was impersonated "
                 "(domain-wide delegation needs one)";
      }
    } else {
      r = make(Outcome::PermanentFailure, 554, "5.6.0", "message content refused by Gmail");
      advice = "Gmail refused the message itself (no usable raw message, bad encoding)";
    }
  } else if (error.status == 401) {
    r = make(Outcome::TemporaryFailure, 451, "4.7.0", "Gmail authentication failed, try later");
    advice = "Gmail did not accept the access token, also after a fresh one; check the "
             "service account and its delegation";
  } else if (error.status >= 500) {
    r = make(Outcome::TemporaryFailure, 451, "4.3.0", "Gmail temporarily unavailable");
    advice = "Gmail had a server error; retrying";
  } else {
    r = make(Outcome::TemporaryFailure, 451, "4.3.0", "Gmail temporarily unavailable");
    advice = "an unexpected answer from Gmail; retrying";
  }

  if (r.outcome == Outcome::TemporaryFailure && retry_after) {
    r.retry_after = std::min(*retry_after, kMaxRetryAfter);
  }
  std::string detail = "Gmail " + std::to_string(error.status);
  if (!reason.empty()) detail += " " + printable(reason, 64);
  if (!error.status_text.empty()) detail += " (" + printable(error.status_text, 64) + ")";
  if (!error.message.empty()) detail += ": " + printable(error.message, 400);
  detail += " — " + advice;
  if (r.retry_after) detail += "; retry in " + std::to_string(r.retry_after->count()) + " s";
  r.detail = std::move(detail);
  return r;
}

}  // namespace mb::delivery::gmail
