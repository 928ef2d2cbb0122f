#include "delivery/graph/graph_call.h"

#include "base/log.h"
#include "delivery/graph/graph_error.h"
#include "oauth/client_assertion.h"
#include "oauth/token_source.h"

namespace mb::delivery::graph {

using queue::Outcome;
using queue::RecipientResult;

RecipientResult temporaryFailure(std::string detail, const char* enhanced) {
  RecipientResult r;
  r.outcome = Outcome::TemporaryFailure;
  r.smtp_code = 451;
  r.enhanced = enhanced;
  r.detail = std::move(detail);
  return r;
}

GraphCaller::GraphCaller(http::HttpClient& http, oauth::TokenSource& tokens, std::string queue_id,
                         std::chrono::seconds timeout)
    : http_(http), tokens_(tokens), id_(std::move(queue_id)), timeout_(timeout) {}

namespace {

RecipientResult transportFailure(const http::TransportError& err, const std::string& id, const char* what) {
  // A POST that timed out may have been carried out: sendMail and send may
  // have gone out, and a retry may duplicate them.
  spdlog::warn("{}: Graph {} {}: {}{}", id, what, err.timeout ? "timed out" : "failed", err.message,
               err.timeout ? "; it may have been carried out, and a retry may duplicate it" : "");
  return temporaryFailure(std::string("Graph unreachable (") + what + "): " + err.message,
                          err.timeout ? "4.4.2" : "4.4.1");
}

}  // namespace

CallOutcome GraphCaller::call(http::Request request, const char* what) {
  request.timeout = timeout_;
  const auto headers = request.headers;
  for (int round = 0; round < 2; ++round) {
    auto token = tokens_.token();
    if (!token) {
      const oauth::TokenFailure& f = token.failure();
      spdlog::error("{}: no access token for Graph: {}", id_, f.explanation);
      // Broken credentials are the administrator's to fix: mail waits.
      RecipientResult r = temporaryFailure("no access token: " + f.explanation, "4.7.0");
      r.retry_after = f.retry_after;
      return r;
    }
    const auto guid = oauth::randomGuid();
    const std::string client_request_id = guid ? *guid : id_;
    request.headers = headers;
    request.headers.emplace_back("Authorization", "Bearer " + token->value);
    request.headers.emplace_back("client-request-id", client_request_id);
    spdlog::debug("{}: Graph {} (client-request-id {})", id_, what, client_request_id);
    http::Outcome out = http_.perform(request);
    if (const auto* err = std::get_if<http::TransportError>(&out)) return transportFailure(*err, id_, what);
    auto& resp = std::get<http::Response>(out);
    if (resp.status == 401 && round == 0) {
      spdlog::info("{}: Graph refused the access token (401); fetching a new one for {}", id_, what);
      tokens_.invalidate(token->value);
      continue;
    }
    if (resp.status == 403 && parseGraphError(resp.status, resp.body).code == "ErrorAccessDenied") {
      tokens_.invalidate(token->value);
    }
    return std::move(resp);
  }
  return temporaryFailure("Graph refused the access token twice");
}

CallOutcome GraphCaller::upload(http::Request request) {
  request.timeout = timeout_;
  http::Outcome out = http_.perform(request);
  if (const auto* err = std::get_if<http::TransportError>(&out)) return transportFailure(*err, id_, "upload");
  return std::get<http::Response>(std::move(out));
}

RecipientResult failureOf(const http::Response& response, const std::string& queue_id, const std::string& action,
                          std::string_view hint) {
  const GraphError error = parseGraphError(response.status, response.body);
  RecipientResult r = classify(error, response.retryAfter());
  if (!hint.empty()) r.detail = std::string(hint) + "; " + r.detail;
  spdlog::log(r.outcome == Outcome::PermanentFailure ? spdlog::level::err : spdlog::level::warn,
              "{}: Graph refused {}: {}", queue_id, action, r.detail);
  return r;
}

}  // namespace mb::delivery::graph
