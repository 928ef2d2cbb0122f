#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <variant>

#include "http/http_client.h"
#include "delivery/results.h"
#include "queue/delivery_agent.h"

namespace mb::oauth {
class TokenSource;
}

namespace mb::delivery {

/// What one Graph API request came to: the response (any status; the caller
/// decides what its status means), or the failure to report for every
/// recipient when no usable response came (no token, transport error, the
/// token refused twice).
using CallOutcome = std::variant<http::Response, queue::RecipientResult>;

/// Adds "Authorization: Bearer <token>" and a fresh client-request-id (a
/// GUID; the queue id if none can be made) to `request`; returns that id.
std::string addBearerHeaders(http::Request& request, const std::string& token, const std::string& queue_id);

/// What a request that got no response comes to for every recipient: a
/// temporary failure (4.4.2 after a timeout, else 4.4.1), logged here with
/// the queue id, `service` ("Graph") and `what` ("sendMail").
queue::RecipientResult transportFailure(const http::TransportError& err, const std::string& queue_id,
                                        const std::string& service, const char* what);

/// BearerCaller: sends the API requests of one delivery attempt (Graph,
/// Gmail) with a bearer token from the provider's TokenSource. Each request
/// gets a fresh client-request-id (a GUID, logged with the queue id so that
/// a support case can be matched); a 401 drops the cached token, fetches a
/// new one and sends the request once more. `drop_token_on` names other
/// answers after which the token must not be used again (Graph's 403
/// ErrorAccessDenied: a token from before the administrator granted a
/// permission has no such role and should not serve out its hour).
///
/// Upload URLs carry their own credential and are sent with upload(): no
/// Authorization header, no retry on 401.
///
/// Threading: one caller per attempt, on the attempt's worker thread.
class BearerCaller {
 public:
  using TokenVerdict = std::function<bool(const http::Response&)>;

  /// `service` names the API in log lines ("Graph", "Gmail").
  BearerCaller(http::HttpClient& http, oauth::TokenSource& tokens, std::string queue_id,
               std::chrono::seconds timeout, std::string service, TokenVerdict drop_token_on = {});

  /// `request` without Authorization (added here) and client-request-id.
  /// `what` names the request in log lines ("sendMail", "create draft").
  CallOutcome call(http::Request request, const char* what);

  /// A request to an upload URL, sent as it is (timeout set here).
  CallOutcome upload(http::Request request);

  /// A token that cannot be had for a reason retrying will not fix fails
  /// the message (550 5.7.1) instead of deferring it: for Gmail, where the
  /// token is per sending user and the identity platform's "no" is about
  /// that user (unknown, not delegated).
  void setTokenFailuresPermanent(bool permanent) { token_failures_permanent_ = permanent; }

  /// For an attempt that goes on from a request sent elsewhere (without
  /// blocking) that was refused with a 401 (`token_refused`) or lost with
  /// its connection (`connection_lost`): that request took the one retry
  /// for it, so the same answer to call() is now final.
  void retriesSpent(bool token_refused, bool connection_lost) {
    token_refused_ = token_refused;
    connection_lost_ = connection_lost;
  }

  const std::string& queueId() const { return id_; }
  std::chrono::seconds timeout() const { return timeout_; }

 private:
  http::HttpClient& http_;
  oauth::TokenSource& tokens_;
  std::string id_;
  std::chrono::seconds timeout_;
  std::string service_;
  TokenVerdict drop_token_on_;
  bool token_failures_permanent_ = false;
  bool token_refused_ = false;
  bool connection_lost_ = false;
};

}  // namespace mb::delivery
