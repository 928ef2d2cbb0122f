#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "http/http_client.h"
#include "queue/delivery_agent.h"

namespace mb::delivery::graph {

/// A Microsoft Graph error response, as documented:
/// `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.
/// Bodies that are not that shape (a proxy's HTML page, nothing) leave the
/// fields empty; `status` is always the HTTP status.
struct GraphError {
  long status = 0;
  std::string code;
  std::string message;
  std::string request_id;
  std::string client_request_id;
};

GraphError parseGraphError(long status, std::string_view body);

/// The result to report for every recipient of a failed Graph request.
/// Permanent for what retrying cannot fix (unknown or disabled sender
/// mailbox, access or send-as denied, too big, bad recipients, content
/// refused) with the matching 5xx and enhanced code (RFC 3463) and a few
/// fixed words for the SMTP client (`summary`); temporary for throttling
/// (429, with `retry_after`), server errors, a full mailbox and anything not
/// classified. `detail` (for the log) holds the code, Graph's message, the
/// request-id and what an administrator can do about it.
queue::RecipientResult classify(const GraphError& error, std::optional<std::chrono::seconds> retry_after);

/// The failure to report for a Graph error response (classify(),
/// Retry-After included), logged with the request-id; `action` says what
/// was being done ("sending as x@y"); `hint`, if any, goes in front of the
/// explanation.
queue::RecipientResult failureOf(const http::Response& response, const std::string& queue_id,
                                 const std::string& action, std::string_view hint = {});

/// Graph answers after which a token must not be used again (403
/// ErrorAccessDenied), for BearerCaller.
bool dropsToken(const http::Response& response);


}  // namespace mb::delivery::graph
