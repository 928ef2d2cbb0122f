#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "queue/delivery_agent.h"

namespace mb::delivery::gmail {

/// A Gmail API error response, as documented (Gmail API, "Resolve errors"):
///   {"error":{"code":429,"message":"User-rate limit exceeded. Retry after ...",
///             "errors":[{"message":"...","domain":"usageLimits","reason":"rateLimitExceeded"}],
///             "status":"RESOURCE_EXHAUSTED"}}
/// `reason` is the first errors[].reason, `message` the top-level message
/// (errors[0].message when that is missing), `status_text` the google.rpc
/// status name. Bodies that are not that shape (a proxy's HTML page,
/// nothing) leave the fields empty; `status` is always the HTTP status.
struct GmailError {
  long status = 0;
  int code = 0;
  std::string message;
  std::string reason;
  std::string status_text;
};

/// Never fails: whatever `body` holds gives a GmailError.
GmailError parseGmailError(long status, std::string_view body);

/// The result to report for every recipient of a failed messages.send.
/// Permanent: 400 failedPrecondition / invalidArgument ("Invalid To header",
/// "Recipient address required" -> 550 5.1.3), 403 insufficientPermissions and domainPolicy (550 5.7.1, say which scope or policy),
/// 413/uploadTooLarge or message too large (552 5.3.4); temporary: 429 and 403 rateLimitExceeded /
/// userRateLimitExceeded / dailyLimitExceeded (451 4.7.0 with retry_after taken from a Retry-After header,
/// else from "Retry after <ISO time>" in the message relative to `now`), 500 backendError, 502/503/504, and
/// anything unknown (451 4.3.0). `summary` a few fixed words for SMTP clients, `detail` with reason, message and
/// what an administrator can do.
///
/// More precisely, among the permanent ones: other invalidArgument answers
/// (no raw message, bad base64) are 554 5.6.0, "Too many recipients" 550
/// 5.5.3, "Invalid From header" 550 5.1.7, and failedPrecondition (the user
/// is not in the domain, suspended, without Gmail, or no user was
/// impersonated) 550 5.7.1. 401 (the token refused, also after a fresh one)
/// is 451 4.7.0. A retry time in the message that has passed gives no
/// retry_after (the queue's own back-off applies); one further than a day is
/// cut to a day. Temporary server errors keep a Retry-After header too.
/// Pure function; thread-safe.
queue::RecipientResult classify(const GmailError& error, std::optional<std::chrono::seconds> retry_after,
                                std::chrono::system_clock::time_point now);

}  // namespace mb::delivery::gmail
