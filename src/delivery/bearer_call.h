#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <variant>

#include "http/http_client.h"
#include "queue/delivery_agent.h"

namespace mb::oauth {
class TokenSource;
}

namespace mb::delivery::graph {

/// What one Graph API request came to: the response (any status; the caller
/// decides what its status means), or the failure to report for every
/// recipient when no usable response came (no token, transport error, the
/// token refused twice).
using CallOutcome = std::variant<http::Response, queue::RecipientResult>;

/// A temporary failure (451 and `enhanced`) with `detail` for the log.
queue::RecipientResult temporaryFailure(std::string detail, const char* enhanced = "4.3.0");

/// GraphCaller: sends the Graph API requests of one delivery attempt with a
/// bearer token from the provider's TokenSource. Each request gets a fresh
/// client-request-id (a GUID, logged with the queue id so that a support
/// case can be matched); a 401 drops the cached token, fetches a new one and
/// sends the request once more. A 403 ErrorAccessDenied drops the token too:
/// one from before the administrator granted a permission has no such role,
/// and should not be used for the rest of its hour.
///
/// Upload URLs (createUploadSession) carry their own credential and are sent
/// with upload(): no Authorization header, no retry on 401.
///
/// Threading: one caller per attempt, on the attempt's worker thread.
class GraphCaller {
 public:
  GraphCaller(http::HttpClient& http, oauth::TokenSource& tokens, std::string queue_id,
              std::chrono::seconds timeout);

  /// `request` without Authorization (added here) and client-request-id.
  /// `what` names the request in log lines ("sendMail", "create draft").
  CallOutcome call(http::Request request, const char* what);

  /// A request to an upload URL, sent as it is (timeout set here).
  CallOutcome upload(http::Request request);

  const std::string& queueId() const { return id_; }
  std::chrono::seconds timeout() const { return timeout_; }

 private:
  http::HttpClient& http_;
  oauth::TokenSource& tokens_;
  std::string id_;
  std::chrono::seconds timeout_;
};

/// The failure to report for a Graph error response (graph_error.h's
/// classify(), Retry-After included), logged with the request-id; `action`
/// says what was being done ("sending as x@y"); `hint`, if any, goes in
/// front of the explanation.
queue::RecipientResult failureOf(const http::Response& response, const std::string& queue_id,
                                 const std::string& action, std::string_view hint = {});

}  // namespace mb::delivery::graph
