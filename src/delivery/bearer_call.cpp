#include "delivery/bearer_call.h"

#include "base/log.h"
#include "oauth/client_assertion.h"
#include "oauth/token_source.h"

namespace mb::delivery {

using queue::RecipientResult;


BearerCaller::BearerCaller(http::HttpClient& http, oauth::TokenSource& tokens, std::string queue_id,
                           std::chrono::seconds timeout, std::string service, TokenVerdict drop_token_on)
    : http_(http),
      tokens_(tokens),
      id_(std::move(queue_id)),
      timeout_(timeout),
      service_(std::move(service)),
      drop_token_on_(std::move(drop_token_on)) {}

RecipientResult transportFailure(const http::TransportError& err, const std::string& id, const std::string& service,
                                 const char* what) {
  // A POST that timed out may have been carried out: a send may have gone
  // out, and a retry may duplicate it.
  spdlog::warn("{}: {} {} {}: {}{}", id, service, what, err.timeout ? "timed out" : "failed", err.message,
               err.timeout ? "; it may have been carried out, and a retry may duplicate it" : "");
  return temporaryFailure(service + " unreachable (" + what + "): " + err.message, err.timeout ? "4.4.2" : "4.4.1");
}

std::string addBearerHeaders(http::Request& request, const std::string& token, const std::string& queue_id) {
  const auto guid = oauth::randomGuid();
  std::string client_request_id = guid ? *guid : queue_id;
  request.headers.emplace_back("Authorization", "Bearer " + token);
  request.headers.emplace_back("client-request-id", client_request_id);
  return client_request_id;
}

CallOutcome BearerCaller::call(http::Request request, const char* what) {
  request.timeout = timeout_;
  const auto headers = request.headers;
  bool resent = connection_lost_;
  for (int round = token_refused_ ? 1 : 0; round < 2; ++round) {
    auto token = tokens_.token();
    if (!token) {
      const oauth::TokenFailure& f = token.failure();
      spdlog::error("{}: no access token for {}: {}", id_, service_, f.explanation);
      if (token_failures_permanent_ && !f.retryable) {
        return permanentFailure(550, "5.7.1", "sender cannot be signed in at the mail service",
                                "no access token: " + f.explanation);
      }
      // Broken credentials are the administrator's to fix: mail waits.
      RecipientResult r = temporaryFailure("no access token: " + f.explanation, "4.7.0");
      r.retry_after = f.retry_after;
      return r;
    }
    request.headers = headers;
    const std::string client_request_id = addBearerHeaders(request, token->value, id_);
    spdlog::debug("{}: {} {} (client-request-id {})", id_, service_, what, client_request_id);
    http::Outcome out = http_.perform(request);
    if (const auto* err = std::get_if<http::TransportError>(&out); err != nullptr && err->connection_lost && !resent) {
      // HTTP/2 servers close connections when they like (GOAWAY), and
      // libcurl then fails the requests in flight on them. Sent once more
      // at once, on a new connection: the queue's retry would send it again
      // anyway (with the same small risk of a duplicate), only a minute later.
      spdlog::info("{}: {} {}: the connection broke ({}); sending once more", id_, service_, what, err->message);
      resent = true;
      --round;
      continue;
    }
    if (const auto* err = std::get_if<http::TransportError>(&out)) return transportFailure(*err, id_, service_, what);
    auto& resp = std::get<http::Response>(out);
    if (resp.status == 401 && round == 0) {
      spdlog::info("{}: {} refused the access token (401); fetching a new one for {}", id_, service_, what);
      tokens_.invalidate(token->value);
      continue;
    }
    if (drop_token_on_ && drop_token_on_(resp)) tokens_.invalidate(token->value);
    return std::move(resp);
  }
  return temporaryFailure(service_ + " refused the access token twice");
}

CallOutcome BearerCaller::upload(http::Request request) {
  request.timeout = timeout_;
  http::Outcome out = http_.perform(request);
  if (const auto* err = std::get_if<http::TransportError>(&out)) return transportFailure(*err, id_, service_, "upload");
  return std::get<http::Response>(std::move(out));
}

}  // namespace mb::delivery
