#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "queue/queue_control.h"

namespace mb::admin {

/// The control protocol: what travels over the control socket (see
/// control_server.h), without any I/O, so that both ends are unit-tested
/// line by line.
///
/// One request per connection: a JSON object on one line.
///   {"command":"list"}
///   {"command":"show","id":"ID"}
///   {"command":"retry","id":"ID"}     {"command":"retry","all":true}
///   {"command":"flush"}               (the same as retry with all)
///   {"command":"hold","id":"ID"}
///   {"command":"release","id":"ID"}
///   {"command":"delete","id":"ID"}
/// One reply, also a JSON object on one line:
///   {"ok":true,"messages":[ITEM...]}   list
///   {"ok":true,"message":ITEM}         show
///   {"ok":true,"count":N}              retry all, flush
///   {"ok":true,"id":"ID"}              retry, hold, release, delete
///   {"ok":false,"error":"words for the operator"}
/// ITEM is {"id", "sender", "recipients":[{"address", "state" (pending,
/// delivered or failed), "smtp_code", "enhanced", "last_error"}], "arrival",
/// "size", "attempts", "next_attempt", "last_error", "route", "held",
/// "in_flight"}, times in unix seconds (next_attempt 0 = now).
///
/// Server side: handleRequest(). Client side (the CLI): makeRequest(),
/// parseReply() and the format…() functions for human output.
/// Everything here is a pure function of its arguments: thread-safe.

/// The longest request line accepted, without its newline.
inline constexpr std::size_t kMaxRequestBytes = 64 * 1024;

/// Answers one request line (with or without its line end) by calling
/// `queue`. Returns the reply line without the newline. Never throws: a bad
/// request, or a queue that fails, gives {"ok":false,"error":...}.
std::string handleRequest(std::string_view line, queue::QueueControl& queue);

/// {"ok":false,"error":message}, for refusals decided before a request is
/// read (a peer that may not ask, a request too long to read).
std::string errorReply(std::string_view message);

// ---- client side ----------------------------------------------------------

enum class Command { List, Show, Retry, RetryAll, Flush, Hold, Release, Delete };

/// The request line for `command` (no newline); `id` for Show, Retry, Hold,
/// Release and Delete, ignored otherwise.
std::string makeRequest(Command command, std::string_view id = {});

/// A reply, decoded. Which fields are set depends on the command.
struct Reply {
  bool ok = false;
  std::string error;                        // when !ok
  std::string id;                           // retry, hold, release, delete
  std::vector<queue::QueueItem> messages;   // list
  std::optional<queue::QueueItem> message;  // show
  std::size_t count = 0;                    // retry all, flush
};

/// Decodes a reply line; an Error when it is not a reply the server sends
/// (not JSON, a field missing or of the wrong type).
Result<Reply> parseReply(std::string_view line);

/// The reply exactly as the daemon sent it, pretty-printed (for --json).
Result<std::string> prettyJson(std::string_view line);

/// Human output in the spirit of `postqueue -p`, each line ending in "\n".
/// `now` (unix seconds) decides between "due now" and "next attempt at".
/// Text that came from outside (addresses, errors) has its control
/// characters escaped, so that it cannot drive the terminal.
///
/// formatList: one block per message (id, size, arrival, sender; state and
/// attempts; last error; the pending recipients), blocks separated by an
/// empty line, then "N messages, M held".
std::string formatList(const std::vector<queue::QueueItem>& items, std::int64_t now);
/// formatShow: every field of one message, and every recipient with its state.
std::string formatShow(const queue::QueueItem& item, std::int64_t now);
/// formatDone: the one line for retry, retry --all, flush, hold, release and
/// delete ("held ID", "2 messages due now").
std::string formatDone(Command command, const Reply& reply);

/// "2026-05-01T10:00:00Z": RFC 3339, UTC, whole seconds.
std::string rfc3339(std::int64_t unix_seconds);

}  // namespace mb::admin
