#include "admin/log_format.h"

#include <time.h>

#include <charconv>
#include <cstdio>

#include "admin/control_protocol.h"
#include "admin/json_support.h"
#include "base/text.h"
#include "base/units.h"

namespace mb::admin {
namespace {

Result<Json> parse(std::string_view line) {
  Json j = Json::parse(line, nullptr, false);
  if (j.is_discarded()) return Error{"reply is not valid JSON"};
  if (!j.is_object()) return Error{"reply is not a JSON object"};
  return j;
}

// Field access that never throws: a missing or mistyped field reads as empty.
std::string str(const Json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? printable(it->get<std::string>()) : std::string();
}
std::int64_t num(const Json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_number_unsigned()) return static_cast<std::int64_t>(it->get<std::uint64_t>());
  if (it->is_number_float()) return static_cast<std::int64_t>(it->get<double>());
  return 0;
}

std::string when(std::int64_t unix_seconds) {
  return unix_seconds > 0 ? rfc3339(unix_seconds) : "-";
}

std::string addressText(const std::string& a) {
  return a.empty() ? "<>" : a;
}

std::string codeText(const Json& j) {
  std::string out;
  if (num(j, "code") != 0) out = std::to_string(num(j, "code"));
  const std::string enhanced = str(j, "enhanced");
  if (!enhanced.empty()) out += (out.empty() ? "" : " ") + enhanced;
  return out;
}

std::string recipientsText(const Json& message) {
  std::string out;
  const auto it = message.find("recipients");
  if (it == message.end() || !it->is_array()) return out;
  std::size_t shown = 0;
  for (const auto& r : *it) {
    if (!r.is_string()) continue;
    if (shown == 3) {
      out += ", +" + std::to_string(it->size() - 3) + " more";
      break;
    }
    out += (shown == 0 ? "" : ", ") + printable(r.get<std::string>());
    ++shown;
  }
  return out;
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.2f s" : "%.0f s", s);
  return buf;
}

std::string duration(std::int64_t s) {
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s";
  if (s < 86400) return std::to_string(s / 3600) + "h" + std::to_string(s % 3600 / 60) + "m";
  return std::to_string(s / 86400) + "d" + std::to_string(s % 86400 / 3600) + "h";
}

}  // namespace

std::string makeStatusRequest() {
  return dumpJson(Json{{"command", "status"}});
}

std::string makeLogSearchRequest(const LogSearch& s) {
  Json j{{"command", "log.search"}};
  if (s.since) j["since"] = *s.since;
  if (s.until) j["until"] = *s.until;
  if (!s.sender.empty()) j["sender"] = s.sender;
  if (!s.recipient.empty()) j["recipient"] = s.recipient;
  if (!s.subject.empty()) j["subject"] = s.subject;
  if (!s.status.empty()) j["status"] = s.status;
  if (!s.text.empty()) j["text"] = s.text;
  if (s.limit) j["limit"] = *s.limit;
  if (s.offset) j["offset"] = *s.offset;
  return dumpJson(j);
}

std::string makeLogShowRequest(std::string_view id) {
  return dumpJson(Json{{"command", "log.show"}, {"id", std::string(id)}});
}

std::string makeLogRejectedRequest(std::optional<std::size_t> limit) {
  Json j{{"command", "log.rejected"}};
  if (limit) j["limit"] = *limit;
  return dumpJson(j);
}

Result<std::optional<std::string>> replyError(std::string_view line) {
  auto j = parse(line);
  if (!j) return j.error();
  const auto ok = j->find("ok");
  if (ok == j->end() || !ok->is_boolean()) return Error{"reply: ok is missing"};
  if (ok->get<bool>()) return std::optional<std::string>();
  const auto error = j->find("error");
  return std::optional<std::string>(error != j->end() && error->is_string()
                                        ? error->get<std::string>()
                                        : std::string("(no reason given)"));
}

Result<std::string> formatLogSearch(std::string_view line) {
  auto j = parse(line);
  if (!j) return j.error();
  const auto messages = j->find("messages");
  if (messages == j->end() || !messages->is_array()) return Error{"reply: messages is missing"};
  std::string out;
  for (const auto& m : *messages) {
    if (!m.is_object()) continue;
    out += when(num(m, "arrived")) + "  " + str(m, "id") + "  " + str(m, "status");
    if (!str(m, "provider").empty()) out += " via " + str(m, "provider");
    out += "\n  " + addressText(str(m, "sender")) + " → " + recipientsText(m) + "\n";
    if (!str(m, "subject").empty()) out += "  subject: " + str(m, "subject") + "\n";
    if (!str(m, "error").empty() && str(m, "status") != "delivered") {
      out += "  " + codeText(m) + (codeText(m).empty() ? "" : " ") + str(m, "error") + "\n";
    }
  }
  out +=
      std::to_string(messages->size()) + " of " + std::to_string(num(*j, "total")) + " messages\n";
  return out;
}

Result<std::string> formatLogShow(std::string_view line) {
  auto j = parse(line);
  if (!j) return j.error();
  const auto h = j->find("history");
  if (h == j->end() || !h->is_object() || !h->contains("message") || !(*h)["message"].is_object()) {
    return Error{"reply: history is missing"};
  }
  const Json& m = (*h)["message"];
  std::string out;
  out += "id:          " + str(m, "id") + "\n";
  out += "status:      " + str(m, "status") + "\n";
  out += "arrived:     " + when(num(m, "arrived")) + "\n";
  out += "client:      " + str(m, "client_ip");
  if (!str(m, "auth_user").empty()) out += " (user " + str(m, "auth_user") + ")";
  if (!str(m, "listener").empty()) out += " on " + str(m, "listener");
  out += "\n";
  out += "sender:      " + addressText(str(m, "sender")) + "\n";
  out += "from:        " + str(m, "header_from") + "\n";
  out += "subject:     " + str(m, "subject") + "\n";
  out += "message-id:  " + str(m, "message_id") + "\n";
  out += "size:        " + formatSize(static_cast<std::uint64_t>(num(m, "size"))) + "\n";
  out += "provider:    " + str(m, "provider") + "\n";
  out += "attempts:    " + std::to_string(num(m, "attempts")) + "\n";
  if (num(m, "delivered_at") > 0) out += "delivered:   " + when(num(m, "delivered_at")) + "\n";
  if (!str(m, "remote_id").empty()) out += "request id:  " + str(m, "remote_id") + "\n";
  if (const auto r = h->find("recipients"); r != h->end() && r->is_array()) {
    out += "recipients:\n";
    for (const auto& rcpt : *r) {
      if (!rcpt.is_object()) continue;
      out += "  " + str(rcpt, "address") + "  " + str(rcpt, "status");
      if (!codeText(rcpt).empty()) out += "  " + codeText(rcpt);
      if (!str(rcpt, "error").empty()) out += "  " + str(rcpt, "error");
      out += "\n";
    }
  }
  if (const auto e = h->find("events"); e != h->end() && e->is_array()) {
    out += "attempts:\n";
    for (const auto& ev : *e) {
      if (!ev.is_object()) continue;
      out += "  " + when(num(ev, "time")) + "  #" + std::to_string(num(ev, "attempt")) + "  " +
             str(ev, "recipient") + "  " + str(ev, "status");
      if (!str(ev, "provider").empty()) out += " via " + str(ev, "provider");
      if (!codeText(ev).empty()) out += "  " + codeText(ev);
      if (!str(ev, "error").empty()) out += "  " + str(ev, "error");
      out += "\n";
    }
  }
  return out;
}

Result<std::string> formatLogRejected(std::string_view line) {
  auto j = parse(line);
  if (!j) return j.error();
  const auto rows = j->find("rejections");
  if (rows == j->end() || !rows->is_array()) return Error{"reply: rejections is missing"};
  std::string out;
  for (const auto& r : *rows) {
    if (!r.is_object()) continue;
    out += when(num(r, "time")) + "  " + str(r, "client_ip") + "  " + str(r, "reason") + "  " +
           codeText(r);
    if (!str(r, "auth_user").empty()) out += "  user " + str(r, "auth_user");
    if (!str(r, "sender").empty()) out += "  from " + str(r, "sender");
    out += "\n";
  }
  out += std::to_string(rows->size()) +
         (rows->size() == 1 ? " refused attempt\n" : " refused attempts\n");
  return out;
}

Result<std::string> formatStatus(std::string_view line) {
  auto j = parse(line);
  if (!j) return j.error();
  const auto st = j->find("status");
  if (st == j->end() || !st->is_object()) return Error{"reply: status is missing"};
  const Json& s = *st;
  std::string out;
  out += "mailbridge " + str(s, "version") + ", up " + duration(num(s, "uptime_seconds")) +
         " (since " + when(num(s, "started")) + ")\n";
  const bool ready = s.value("ready", false);
  out += std::string("ready:       ") + (ready ? "yes" : "no") + "\n";
  if (const auto p = s.find("problems"); p != s.end() && p->is_array()) {
    for (const auto& problem : *p) {
      if (problem.is_string()) out += "  " + printable(problem.get<std::string>()) + "\n";
    }
  }
  out += "\n             accepted  delivered  deferred  bounced  rejected\n";
  if (const auto t = s.find("totals"); t != s.end() && t->is_object()) {
    for (const char* period : {"overall", "today", "last_24h"}) {
      if (!t->contains(period)) continue;
      const Json& p = (*t)[period];
      char row[128];
      std::snprintf(
          row, sizeof row, "%-12s %8lld %10lld %9lld %8lld %9lld\n",
          std::string(period) == "last_24h" ? "last 24 h" : period,
          static_cast<long long>(num(p, "accepted")), static_cast<long long>(num(p, "delivered")),
          static_cast<long long>(num(p, "deferred")), static_cast<long long>(num(p, "bounced")),
          static_cast<long long>(num(p, "rejected")));
      out += row;
    }
  }
  if (const auto rate = s.find("error_rate"); rate != s.end() && rate->is_number()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "error rate:  %.1f %% (last 24 h)\n", rate->get<double>() * 100);
    out += "\n";
    out += buf;
  }
  if (const auto d = s.find("delivery_seconds"); d != s.end() && d->is_object()) {
    const auto avg = d->find("average");
    const auto p95 = d->find("p95");
    if (avg != d->end() && avg->is_number() && p95 != d->end() && p95->is_number()) {
      out += "delivery:    average " + seconds(avg->get<double>()) + ", p95 " +
             seconds(p95->get<double>()) + " (recent deliveries)\n";
    }
  }
  if (const auto e = s.find("last_error"); e != s.end() && e->is_object()) {
    out += "last error:  " + when(num(*e, "time")) + " " + str(*e, "provider") + " " +
           codeText(*e) + " " + str(*e, "error") + "\n";
  }
  if (const auto q = s.find("queue"); q != s.end() && q->is_object()) {
    out += "queue:       " + std::to_string(num(*q, "depth")) + " messages, " +
           std::to_string(num(*q, "in_flight")) + " in flight";
    if (num(*q, "depth") > 0) out += ", oldest " + duration(num(*q, "oldest_age_seconds")) + " old";
    if (!q->value("writable", true)) out += "; NOT WRITABLE: " + str(*q, "problem");
    out += "\n";
  }
  if (const auto p = s.find("providers"); p != s.end() && p->is_array()) {
    out += "providers:\n";
    for (const auto& pr : *p) {
      if (!pr.is_object()) continue;
      out += "  " + str(pr, "name") + " (" + str(pr, "type") + ")  circuit " + str(pr, "breaker") +
             ", token " + str(pr, "token");
      if (num(pr, "token_expires") > 0) out += " until " + when(num(pr, "token_expires"));
      out += "; " + std::to_string(num(pr, "delivered")) + " delivered, " +
             std::to_string(num(pr, "deferred")) + " deferred, " +
             std::to_string(num(pr, "bounced")) + " bounced\n";
      if (!str(pr, "token_error").empty())
        out += "    token error: " + str(pr, "token_error") + "\n";
      if (num(pr, "secret_expires") > 0)
        out += "    secret expires " + when(num(pr, "secret_expires")) + "\n";
    }
  }
  if (const auto t = s.find("tracker"); t != s.end() && t->is_object()) {
    if (!t->value("enabled", false)) {
      out += "mail log:    off\n";
    } else {
      out += "mail log:    " +
             std::string(t->value("writable", true) ? "ok"
                                                    : "NOT WRITABLE: " + str(*t, "last_error")) +
             ", " + std::to_string(num(*t, "written")) + " events written, " +
             std::to_string(num(*t, "dropped")) + " dropped\n";
    }
  }
  return out;
}

Result<std::int64_t> parseWhen(std::string_view text, std::int64_t now) {
  if (text.empty()) return Error{"empty time"};
  std::int64_t n = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec == std::errc() && p == text.data() + text.size()) return n;
  if (auto d = parseDuration(text)) {
    return now - std::chrono::duration_cast<std::chrono::seconds>(*d).count();
  }
  const std::string s(text);
  for (const char* format : {"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
                             "%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"}) {
    tm t{};
    const char* end = ::strptime(s.c_str(), format, &t);
    if (end != nullptr && *end == '\0') return static_cast<std::int64_t>(::timegm(&t));
  }
  return Error{"'" + printable(text, 64) +
               "' is not a time: give an age (90m, 2h, 1d), a UTC time (2026-05-01T09:00:00Z, "
               "\"2026-05-01 09:00\") or a date (2026-05-01)"};
}

}  // namespace mb::admin
