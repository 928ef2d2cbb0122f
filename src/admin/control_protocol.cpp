#include "admin/control_protocol.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <limits>
#include <utility>

#include "admin/json_support.h"
#include "base/text.h"
#include "queue/envelope.h"

namespace mb::admin {
namespace {

// ---- QueueItem <-> JSON -----------------------------------------------------

const char* stateName(queue::RecipientState state) {
  switch (state) {
    case queue::RecipientState::Pending:
      return "pending";
    case queue::RecipientState::Delivered:
      return "delivered";
    case queue::RecipientState::Failed:
      return "failed";
  }
  return "pending";
}

Json toJson(const queue::QueueItem& item) {
  Json recipients = Json::array();
  for (const auto& r : item.recipients) {
    recipients.push_back(Json{{"address", r.address},
                              {"state", stateName(r.state)},
                              {"smtp_code", r.smtp_code},
                              {"enhanced", r.enhanced},
                              {"last_error", r.last_error}});
  }
  return Json{{"id", item.id},
              {"sender", item.sender},
              {"recipients", std::move(recipients)},
              {"arrival", item.arrival},
              {"size", item.size},
              {"attempts", item.attempts},
              {"next_attempt", item.next_attempt},
              {"last_error", item.last_error},
              {"route", item.route},
              {"held", item.held},
              {"in_flight", item.in_flight}};
}

// Reads typed fields out of one JSON object of a reply; `where` names the
// object in errors ("messages[2]").
class FieldReader {
 public:
  FieldReader(const Json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  Status string(const char* key, std::string& out) const {
    const Json* v = find(key);
    if (v == nullptr) return missing(key);
    if (!v->is_string()) return wrongType(key, "a string");
    out = v->get<std::string>();
    return {};
  }

  Status boolean(const char* key, bool& out) const {
    const Json* v = find(key);
    if (v == nullptr) return missing(key);
    if (!v->is_boolean()) return wrongType(key, "true or false");
    out = v->get<bool>();
    return {};
  }

  // Any integer type that fits `T` (size_t, int64_t, int).
  template <typename T>
  Status integer(const char* key, T& out) const {
    const Json* v = find(key);
    if (v == nullptr) return missing(key);
    if (v->is_number_unsigned()) {
      const auto n = v->get<std::uint64_t>();
      if (n > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
        return wrongType(key, "a smaller number");
      }
      out = static_cast<T>(n);
      return {};
    }
    if (v->is_number_integer()) {
      const auto n = v->get<std::int64_t>();
      if constexpr (std::numeric_limits<T>::is_signed) {
        if (n < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
            n > static_cast<std::int64_t>(std::numeric_limits<T>::max())) {
          return wrongType(key, "a number in range");
        }
      } else {
        if (n < 0) return wrongType(key, "a number not below 0");
      }
      out = static_cast<T>(n);
      return {};
    }
    return wrongType(key, "a whole number");
  }

  const Json* find(const char* key) const {
    const auto it = obj_.find(key);
    return it == obj_.end() ? nullptr : &*it;
  }

  Error missing(const char* key) const { return Error{"reply: " + path(key) + " is missing"}; }
  Error wrongType(const char* key, const char* what) const {
    return Error{"reply: " + path(key) + " is not " + what};
  }

 private:
  std::string path(const char* key) const { return where_.empty() ? key : where_ + "." + key; }

  const Json& obj_;
  std::string where_;
};

Status recipientFromJson(const Json& j, const std::string& where, queue::RecipientEntry& out) {
  if (!j.is_object()) return Error{"reply: " + where + " is not an object"};
  const FieldReader r(j, where);
  std::string state;
  Status st = r.string("address", out.address);
  if (st) st = r.string("state", state);
  if (st) st = r.integer("smtp_code", out.smtp_code);
  if (st) st = r.string("enhanced", out.enhanced);
  if (st) st = r.string("last_error", out.last_error);
  if (!st) return st;
  if (state == "pending") {
    out.state = queue::RecipientState::Pending;
  } else if (state == "delivered") {
    out.state = queue::RecipientState::Delivered;
  } else if (state == "failed") {
    out.state = queue::RecipientState::Failed;
  } else {
    return Error{"reply: " + where + ".state is not pending, delivered or failed"};
  }
  return {};
}

Status itemFromJson(const Json& j, const std::string& where, queue::QueueItem& out) {
  if (!j.is_object()) return Error{"reply: " + where + " is not an object"};
  const FieldReader r(j, where);
  Status st = r.string("id", out.id);
  if (st) st = r.string("sender", out.sender);
  if (st) st = r.integer("arrival", out.arrival);
  if (st) st = r.integer("size", out.size);
  if (st) st = r.integer("attempts", out.attempts);
  if (st) st = r.integer("next_attempt", out.next_attempt);
  if (st) st = r.string("last_error", out.last_error);
  if (st) st = r.string("route", out.route);
  if (st) st = r.boolean("held", out.held);
  if (st) st = r.boolean("in_flight", out.in_flight);
  if (!st) return st;
  const Json* recipients = r.find("recipients");
  if (recipients == nullptr) return r.missing("recipients");
  if (!recipients->is_array()) return r.wrongType("recipients", "an array");
  out.recipients.clear();
  out.recipients.reserve(recipients->size());
  for (std::size_t i = 0; i < recipients->size(); ++i) {
    queue::RecipientEntry entry;
    const std::string rwhere = where + ".recipients[" + std::to_string(i) + "]";
    if (Status rst = recipientFromJson((*recipients)[i], rwhere, entry); !rst) return rst;
    out.recipients.push_back(std::move(entry));
  }
  return {};
}

// ---- requests ---------------------------------------------------------------

constexpr std::array<std::string_view, 7> kCommandNames = {"list", "show",    "retry", "flush",
                                                           "hold", "release", "delete"};
constexpr std::string_view kCommands = "list, show, retry, flush, hold, release, delete";

// Fields a command accepts besides "command"; anything else is refused, so a
// typo ("ids") is an error rather than a different request.
bool fieldAllowed(std::string_view command, std::string_view key) {
  if (key == "command") return true;
  if (command == "list" || command == "flush") return false;
  if (command == "retry") return key == "id" || key == "all";
  return key == "id";
}

// The request's "id": present, a string, a valid queue id.
Result<std::string> requestId(const Json& request, std::string_view command) {
  const auto it = request.find("id");
  if (it == request.end()) {
    return Error{"command '" + std::string(command) + "' needs the field 'id'" +
                 (command == "retry" ? " (or \"all\": true)" : "")};
  }
  if (!it->is_string()) return Error{"field 'id' must be a string"};
  std::string id = it->get<std::string>();
  if (!queue::isValidQueueId(id)) {
    return Error{inQuotes(id) + " is not a queue id (20 letters and digits)"};
  }
  return id;
}

std::string statusReply(const Status& st, const std::string& id) {
  if (!st) return errorReply(st.error().message);
  return okReply(Json{{"id", id}});
}

std::string handleUnchecked(std::string_view line, queue::QueueControl& queue) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.size() > kMaxRequestBytes) {
    return errorReply("request too long: " + std::to_string(line.size()) + " bytes, at most " +
                      std::to_string(kMaxRequestBytes));
  }
  if (line.find_first_not_of(" \t") == std::string_view::npos) return errorReply("empty request");
  const Json request = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) return errorReply("request is not valid JSON");
  if (!request.is_object()) return errorReply("request is not a JSON object");

  const auto cmd = request.find("command");
  if (cmd == request.end()) return errorReply("missing field 'command'");
  if (!cmd->is_string()) return errorReply("field 'command' must be a string");
  const std::string command = cmd->get<std::string>();
  if (std::find(kCommandNames.begin(), kCommandNames.end(), command) == kCommandNames.end()) {
    return errorReply("unknown command " + inQuotes(command) +
                      "; expected one of: " + std::string(kCommands));
  }
  for (const auto& [key, value] : request.items()) {
    if (!fieldAllowed(command, key)) {
      return errorReply("unknown field " + inQuotes(key) + " for command '" + command + "'");
    }
  }

  if (command == "list") {
    auto items = queue.list();
    if (!items) return errorReply(items.error().message);
    Json messages = Json::array();
    for (const auto& item : *items) messages.push_back(toJson(item));
    return okReply(Json{{"messages", std::move(messages)}});
  }

  bool all = command == "flush";
  if (command == "retry") {
    if (const auto a = request.find("all"); a != request.end()) {
      if (!a->is_boolean()) return errorReply("field 'all' must be true or false");
      all = a->get<bool>();
      if (all && request.contains("id")) {
        return errorReply("command 'retry' takes either 'id' or \"all\": true, not both");
      }
    }
  }
  if (all) {
    auto count = queue.retryAll();
    if (!count) return errorReply(count.error().message);
    return okReply(Json{{"count", *count}});
  }

  auto id = requestId(request, command);
  if (!id) return errorReply(id.error().message);
  if (command == "show") {
    auto item = queue.show(*id);
    if (!item) return errorReply(item.error().message);
    return okReply(Json{{"message", toJson(*item)}});
  }
  if (command == "retry") return statusReply(queue.retry(*id), *id);
  if (command == "hold") return statusReply(queue.hold(*id), *id);
  if (command == "release") return statusReply(queue.release(*id), *id);
  return statusReply(queue.remove(*id), *id);  // "delete"
}

// ---- human output -----------------------------------------------------------

std::string plural(std::size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

std::string senderText(const std::string& sender) {
  return "<" + printable(sender) + ">";
}

std::string stateText(const queue::QueueItem& item, std::int64_t now) {
  if (item.held) return item.in_flight ? "held (an attempt is still running)" : "held";
  if (item.in_flight) return "in flight";
  if (item.next_attempt <= now) return "due now";
  return "next attempt at " + rfc3339(item.next_attempt);
}

std::string codeText(const queue::RecipientEntry& r) {
  std::string out;
  if (r.smtp_code != 0) out = std::to_string(r.smtp_code);
  if (!r.enhanced.empty()) out += (out.empty() ? "" : " ") + printable(r.enhanced, 16);
  return out;
}

}  // namespace

std::string handleRequest(std::string_view line, queue::QueueControl& queue) {
  try {
    return handleUnchecked(line, queue);
  } catch (const std::exception& e) {
    // Nothing above throws by design; a QueueControl or an allocation might.
    return errorReply(std::string("internal error: ") + e.what());
  } catch (...) {
    return errorReply("internal error");
  }
}

std::string errorReply(std::string_view message) {
  return dumpJson(Json{{"ok", false}, {"error", std::string(message)}});
}

std::string makeRequest(Command command, std::string_view id) {
  switch (command) {
    case Command::List:
      return dumpJson(Json{{"command", "list"}});
    case Command::Show:
      return dumpJson(Json{{"command", "show"}, {"id", std::string(id)}});
    case Command::Retry:
      return dumpJson(Json{{"command", "retry"}, {"id", std::string(id)}});
    case Command::RetryAll:
      return dumpJson(Json{{"command", "retry"}, {"all", true}});
    case Command::Flush:
      return dumpJson(Json{{"command", "flush"}});
    case Command::Hold:
      return dumpJson(Json{{"command", "hold"}, {"id", std::string(id)}});
    case Command::Release:
      return dumpJson(Json{{"command", "release"}, {"id", std::string(id)}});
    case Command::Delete:
      return dumpJson(Json{{"command", "delete"}, {"id", std::string(id)}});
  }
  return dumpJson(Json{{"command", "list"}});
}

Result<Reply> parseReply(std::string_view line) {
  const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error{"reply is not valid JSON"};
  if (!j.is_object()) return Error{"reply is not a JSON object"};
  const FieldReader r(j, "");
  Reply reply;
  if (Status st = r.boolean("ok", reply.ok); !st) return st.error();
  if (!reply.ok) {
    if (Status st = r.string("error", reply.error); !st) return st.error();
    return reply;
  }
  if (r.find("id") != nullptr) {
    if (Status st = r.string("id", reply.id); !st) return st.error();
  }
  if (r.find("count") != nullptr) {
    if (Status st = r.integer("count", reply.count); !st) return st.error();
  }
  if (const Json* message = r.find("message")) {
    queue::QueueItem item;
    if (Status st = itemFromJson(*message, "message", item); !st) return st.error();
    reply.message = std::move(item);
  }
  if (const Json* messages = r.find("messages")) {
    if (!messages->is_array()) return r.wrongType("messages", "an array");
    reply.messages.reserve(messages->size());
    for (std::size_t i = 0; i < messages->size(); ++i) {
      queue::QueueItem item;
      const std::string where = "messages[" + std::to_string(i) + "]";
      if (Status st = itemFromJson((*messages)[i], where, item); !st) return st.error();
      reply.messages.push_back(std::move(item));
    }
  }
  return reply;
}

Result<std::string> prettyJson(std::string_view line) {
  const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error{"reply is not valid JSON"};
  return dumpJson(j, 2);
}

std::string rfc3339(std::int64_t unix_seconds) {
  // 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z: four digits for the year.
  constexpr std::int64_t kMin = -62135596800;
  constexpr std::int64_t kMax = 253402300799;
  const auto t = static_cast<time_t>(std::clamp(unix_seconds, kMin, kMax));
  struct tm tm {};
  if (::gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
  // snprintf rather than strftime: %Y does not pad years before 1000.
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::to_string(unix_seconds);
}

std::string formatList(const std::vector<queue::QueueItem>& items, std::int64_t now) {
  std::string out;
  std::size_t held = 0;
  for (const auto& item : items) {
    if (item.held) ++held;
    out += printable(item.id, 32) + "  " + plural(item.size, "byte", "bytes") + "  " +
           rfc3339(item.arrival) + "  " + senderText(item.sender) + "\n";
    out += "  " + stateText(item, now) + ", " +
           plural(static_cast<std::size_t>(std::max(item.attempts, 0)), "attempt", "attempts");
    if (!item.route.empty()) out += ", route " + printable(item.route, 64);
    out += "\n";
    if (!item.last_error.empty()) out += "  last error: " + printable(item.last_error) + "\n";
    for (const auto& r : item.recipients) {
      if (r.state == queue::RecipientState::Pending) out += "    " + printable(r.address) + "\n";
    }
    out += "\n";
  }
  out += plural(items.size(), "message", "messages") + ", " + std::to_string(held) + " held\n";
  return out;
}

std::string formatShow(const queue::QueueItem& item, std::int64_t now) {
  std::size_t pending = 0;
  std::size_t delivered = 0;
  std::size_t failed = 0;
  for (const auto& r : item.recipients) {
    switch (r.state) {
      case queue::RecipientState::Pending:
        ++pending;
        break;
      case queue::RecipientState::Delivered:
        ++delivered;
        break;
      case queue::RecipientState::Failed:
        ++failed;
        break;
    }
  }
  std::string out;
  out += "id:           " + printable(item.id, 32) + "\n";
  out += "sender:       " + senderText(item.sender) + "\n";
  out += "arrival:      " + rfc3339(item.arrival) + "\n";
  out += "size:         " + plural(item.size, "byte", "bytes") + "\n";
  out += "route:        " +
         (item.route.empty() ? std::string("(not routed yet)") : printable(item.route, 64)) + "\n";
  out += "state:        " + stateText(item, now) + "\n";
  out += "held:         " + std::string(item.held ? "yes" : "no") + "\n";
  out += "in flight:    " + std::string(item.in_flight ? "yes" : "no") + "\n";
  out += "attempts:     " + std::to_string(item.attempts) + "\n";
  out += "next attempt: " +
         (item.next_attempt <= now ? std::string("now") : rfc3339(item.next_attempt)) + "\n";
  out += "last error:   " +
         (item.last_error.empty() ? std::string("(none)") : printable(item.last_error, 4096)) +
         "\n";
  out += "recipients:   " + std::to_string(item.recipients.size()) + " (" +
         std::to_string(pending) + " pending, " + std::to_string(delivered) + " delivered, " +
         std::to_string(failed) + " failed)\n";
  for (const auto& r : item.recipients) {
    out += "  " + printable(r.address) + "  " + stateName(r.state);
    const std::string code = codeText(r);
    if (!code.empty()) out += "  " + code;
    if (!r.last_error.empty()) out += "  " + printable(r.last_error, 4096);
    out += "\n";
  }
  return out;
}

std::string formatDone(Command command, const Reply& reply) {
  const std::string id = printable(reply.id, 32);
  switch (command) {
    case Command::Retry:
      return id + " due now\n";
    case Command::RetryAll:
    case Command::Flush:
      return plural(reply.count, "message", "messages") + " due now\n";
    case Command::Hold:
      return "held " + id + "\n";
    case Command::Release:
      return "released " + id + "\n";
    case Command::Delete:
      return "deleted " + id + "\n";
    case Command::List:
    case Command::Show:
      break;
  }
  return "ok\n";
}

}  // namespace mb::admin
