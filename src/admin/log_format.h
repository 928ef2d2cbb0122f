#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace mb::admin {

/// The client side of the status and mail-log commands (api.h) for
/// `mailbridge status` and `mailbridge log`: the request lines, and the
/// replies turned into text for people. Pure functions; text that came from
/// outside (addresses, subjects, errors) has its control characters escaped.

/// What `mailbridge log search` asks for; empty fields are left out.
struct LogSearch {
  std::optional<std::int64_t> since, until;  // unix s
  std::string sender, recipient, subject, status, text;
  std::optional<std::size_t> limit, offset;
};

std::string makeStatusRequest();
std::string makeLogSearchRequest(const LogSearch& search);
std::string makeLogShowRequest(std::string_view id);
std::string makeLogRejectedRequest(std::optional<std::size_t> limit);

/// The reply's error when it says {"ok":false}; nullopt when it is ok; an
/// Error when it is not a reply at all.
Result<std::optional<std::string>> replyError(std::string_view reply_line);

/// Text for people. Each fails when the reply lacks what it needs.
/// formatLogSearch: one line per message (arrival, id, status, sender →
/// recipients, subject; the error below it when there is one), then
/// "N of M messages".
Result<std::string> formatLogSearch(std::string_view reply_line);
/// formatLogShow: the message, each recipient, and every attempt in order.
Result<std::string> formatLogShow(std::string_view reply_line);
/// formatLogRejected: one line per refused attempt, newest first.
Result<std::string> formatLogRejected(std::string_view reply_line);
/// formatStatus: uptime, readiness, totals per period and provider, delivery
/// times, the queue, and the mail log's health.
Result<std::string> formatStatus(std::string_view reply_line);

/// "2h" → now - 7200; "2026-05-01T09:00:00Z", "2026-05-01 09:00" (UTC) or
/// "2026-05-01" → that time; a plain number is unix seconds.
Result<std::int64_t> parseWhen(std::string_view text, std::int64_t now);

}  // namespace mb::admin
