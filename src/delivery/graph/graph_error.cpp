#include "delivery/graph/graph_error.h"

#include "base/log.h"

#include <nlohmann/json.hpp>


#include "base/text.h"

namespace mb::delivery::graph {
namespace {

using queue::Outcome;
using queue::RecipientResult;

std::string stringAt(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

RecipientResult make(Outcome outcome, int code, const char* enhanced, std::string summary) {
  RecipientResult r;
  r.outcome = outcome;
  r.smtp_code = code;
  r.enhanced = enhanced;
  r.summary = std::move(summary);
  return r;
}

// The permanent ones, by code. What to tell the client, and what to tell the
// administrator.
struct Known {
  const char* code;
  int smtp;
  const char* enhanced;
  const char* summary;
  const char* advice;
};

constexpr Known kPermanent[] = {
    {"ErrorInvalidUser", 550, "5.1.8", "sender mailbox not found in Microsoft 365",
     "the sender address is not a user or shared mailbox in this tenant; check the address or "
     "the provider's sender rules"},
    {"MailboxNotEnabledForRESTAPI", 550, "5.1.8", "sender has no Exchange Online mailbox",
     "the user exists but has no Exchange Online mailbox (no licence, mailbox on premises, or "
     "soft-deleted); give it a licence or send as another mailbox"},
    {"ResourceNotFound", 550, "5.1.8", "sender mailbox not found in Microsoft 365",
     "Graph found no such user; check the sender address"},
    {"ErrorSendAsDenied", 550, "5.7.60", "sender not allowed to send as this mailbox",
     "the mailbox does not allow sending as the From address; grant Send As or use the "
     "mailbox's own address"},
    {"ErrorAccessDenied", 550, "5.7.1", "relay not allowed to send as this mailbox",
     "Graph denied access: the app needs the application permission Mail.Send with admin "
     "consent, and an application access policy (RAOP) may exclude this mailbox"},
    {"ErrorMessageSizeExceeded", 552, "5.3.4", "message too big for the mailbox",
     "the message exceeds the mailbox's maximum send size (35 MB by default); an "
     "administrator can raise it up to 150 MB"},
    {"ErrorInvalidRecipients", 550, "5.1.3", "recipient address refused by Microsoft 365",
     "Graph refused the recipients as invalid"},
    {"ErrorMimeContentInvalidBase64String", 554, "5.6.0", "message content refused",
     "Graph could not decode the message; please report this with the request-id"},
    {"ErrorMimeContentInvalid", 554, "5.6.0", "message content refused",
     "Graph could not parse the message's MIME structure"},
    {"ErrorInvalidInternetMessageHeader", 554, "5.6.0", "message content refused",
     "Graph refused a header of the message"},
};

}  // namespace

GraphError parseGraphError(long status, std::string_view body) {
  GraphError e;
  e.status = status;
  const auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return e;
  const auto err = j.find("error");
  if (err == j.end() || !err->is_object()) return e;
  e.code = stringAt(*err, "code");
  e.message = stringAt(*err, "message");
  for (const char* inner_key : {"innerError", "innererror"}) {
    const auto inner = err->find(inner_key);
    if (inner != err->end() && inner->is_object()) {
      e.request_id = stringAt(*inner, "request-id");
      e.client_request_id = stringAt(*inner, "client-request-id");
      break;
    }
  }
  return e;
}

queue::RecipientResult classify(const GraphError& error, std::optional<std::chrono::seconds> retry_after) {
  RecipientResult r;
  std::string advice;
  bool known = false;
  for (const Known& k : kPermanent) {
    if (error.code == k.code) {
      r = make(Outcome::PermanentFailure, k.smtp, k.enhanced, k.summary);
      advice = k.advice;
      known = true;
      break;
    }
  }
  if (!known) {
    const bool too_large = error.status == 413 ||
                           (error.status == 400 && error.message.find("maximum request length") != std::string::npos);
    if (too_large) {
      r = make(Outcome::PermanentFailure, 552, "5.3.4", "message too big for the mail service");
      advice = "the request was over Graph's 4 MB limit";
    } else if (error.status == 429) {
      r = make(Outcome::TemporaryFailure, 451, "4.7.0", "");
      r.throttled = true;
      advice = "throttled by Microsoft Graph; the queue waits and paces this mailbox";
    } else if (error.code == "ErrorQuotaExceeded") {
      r = make(Outcome::TemporaryFailure, 452, "4.2.2", "");
      advice = "the sender's mailbox is full";
    } else if (error.status >= 500) {
      r = make(Outcome::TemporaryFailure, 451, "4.3.0", "");
      advice = "Microsoft Graph had a server error; retrying";
    } else if (error.status == 401) {
      r = make(Outcome::TemporaryFailure, 451, "4.7.0", "");
      advice = "Graph did not accept the access token, also after a fresh one";
    } else {
      r = make(Outcome::TemporaryFailure, 451, "4.3.0", "");
      advice = "an unexpected answer from Graph; retrying";
    }
  }
  // 503 and the like may say when to come back as well as 429.
  if (r.outcome == Outcome::TemporaryFailure) r.retry_after = retry_after;
  r.detail = "Graph " + std::to_string(error.status) + (error.code.empty() ? "" : " " + printable(error.code, 64)) +
             (error.message.empty() ? "" : ": " + printable(error.message, 400)) +
             (error.request_id.empty() ? "" : " (request-id " + printable(error.request_id, 64) + ")") +
             " — " + advice;
  return r;
}

queue::RecipientResult failureOf(const http::Response& response, const std::string& queue_id, const std::string& action,
                          std::string_view hint) {
  const GraphError error = parseGraphError(response.status, response.body);
  queue::RecipientResult r = classify(error, response.retryAfter());
  if (!hint.empty()) r.detail = std::string(hint) + "; " + r.detail;
  spdlog::log(r.outcome == queue::Outcome::PermanentFailure ? spdlog::level::err : spdlog::level::warn,
              "{}: Graph refused {}: {}", queue_id, action, r.detail);
  return r;
}

bool dropsToken(const http::Response& response) {
  return response.status == 403 && parseGraphError(response.status, response.body).code == "ErrorAccessDenied";
}

}  // namespace mb::delivery::graph
