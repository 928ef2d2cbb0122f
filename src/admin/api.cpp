#include "admin/api.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <limits>
#include <optional>
#include <utility>

#include "admin/control_protocol.h"
#include "admin/json_support.h"
#include "base/text.h"
#include "base/time_format.h"
#include "queue/queue_control.h"

namespace mb::admin {
namespace {

Json toJson(const tracker::Totals& t) {
  return Json{{"accepted", t.accepted},
              {"delivered", t.delivered},
              {"deferred", t.deferred},
              {"bounced", t.bounced},
              {"rejected", t.rejected}};
}

Json toJson(const tracker::MessageRow& m) {
  Json j{{"id", m.id},
         {"arrived", unixSeconds(m.arrived)},
         {"client_ip", m.client_ip},
         {"auth_user", m.auth_user},
         {"listener", m.listener},
         {"sender", m.sender},
         {"recipients", m.recipients},
         {"header_from", m.header_from},
         {"subject", m.subject},
         {"message_id", m.message_id},
         {"size", m.size},
         {"provider", m.provider},
         {"status", tracker::statusName(m.status)},
         {"attempts", m.attempts},
         {"delivered_at", m.delivered_at ? unixSeconds(*m.delivered_at) : 0},
         {"remote_id", m.remote_id},
         {"code", m.last_code},
         {"enhanced", m.last_enhanced},
         {"error", m.last_error}};
  return j;
}

Json toJson(const tracker::RecipientRow& r) {
  return Json{{"address", r.address},
              {"status", tracker::statusName(r.status)},
              {"attempts", r.attempts},
              {"code", r.code},
              {"enhanced", r.enhanced},
              {"error", r.error},
              {"provider", r.provider},
              {"remote_id", r.remote_id},
              {"updated", unixSeconds(r.updated)}};
}

Json toJson(const tracker::Outcome& o) {
  return Json{{"time", unixSeconds(o.time)},
              {"recipient", o.recipient},
              {"attempt", o.attempt},
              {"status", tracker::statusName(o.status)},
              {"provider", o.provider},
              {"remote_id", o.remote_id},
              {"code", o.code},
              {"enhanced", o.enhanced},
              {"error", o.error}};
}

Json toJson(const tracker::RejectedRow& r) {
  return Json{{"time", unixSeconds(r.time)},
              {"client_ip", r.client_ip},
              {"auth_user", r.auth_user},
              {"listener", r.listener},
              {"sender", r.sender},
              {"recipients", r.recipients},
              {"code", r.code},
              {"enhanced", r.enhanced},
              {"reason", r.reason}};
}

// The fields each command accepts besides "command".
bool fieldAllowed(std::string_view command, std::string_view key) {
  if (key == "command") return true;
  if (command == "log.search") {
    static constexpr std::string_view kKeys[] = {
        "since", "until", "sender", "recipient", "subject", "status", "text", "limit", "offset"};
    return std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys);
  }
  if (command == "log.show") return key == "id";
  if (command == "log.rejected") return key == "limit";
  return false;
}

Result<std::string> stringField(const Json& request, const char* key) {
  const auto it = request.find(key);
  if (it == request.end()) return std::string();
  if (!it->is_string()) return Error{std::string("field '") + key + "' must be a string"};
  return it->get<std::string>();
}

Result<std::optional<std::int64_t>> integerField(const Json& request, const char* key,
                                                 std::int64_t min, std::int64_t max) {
  const auto it = request.find(key);
  if (it == request.end()) return std::optional<std::int64_t>();
  if (!it->is_number_integer())
    return Error{std::string("field '") + key + "' must be a whole number"};
  const bool too_big =
      it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(max);
  const auto v = it->get<std::int64_t>();
  if (too_big || v < min || v > max) {
    return Error{std::string("field '") + key + "' must be from " + std::to_string(min) + " to " +
                 std::to_string(max)};
  }
  return std::optional<std::int64_t>(v);
}

Clock::WallTime fromUnix(std::int64_t s) {
  return Clock::WallTime(std::chrono::seconds(s));
}

constexpr std::int64_t kMaxUnix = 253402300799;  // 9999-12-31T23:59:59Z

}  // namespace

Api::Api(queue::QueueControl& queue, const tracker::Tracker* log, const tracker::Statistics& stats,
         LiveFunction live)
    : queue_(queue), log_(log), stats_(stats), live_(std::move(live)) {}

Api::Readiness judgeReadiness(const LiveStatus& live) {
  Api::Readiness r;
  if (!live.queue_writable) {
    r.ready = false;
    r.problems.push_back("the queue cannot be written: " + live.queue_problem);
  }
  const bool all_open = !live.providers.empty() &&
                        std::all_of(live.providers.begin(), live.providers.end(),
                                    [](const ProviderState& p) { return p.breaker == "open"; });
  if (all_open) {
    r.ready = false;
    r.problems.push_back("every provider's circuit breaker is open");
  }
  return r;
}

Api::Readiness Api::readiness() const {
  return judgeReadiness(live_());
}

std::string Api::handle(std::string_view line) const {
  try {
    std::string_view trimmed = line;
    while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r'))
      trimmed.remove_suffix(1);
    if (trimmed.size() > kMaxRequestBytes) return handleRequest(line, queue_);  // says "too long"
    const Json request = Json::parse(trimmed, nullptr, /*allow_exceptions=*/false);
    const bool ours = request.is_object() && request.contains("command") &&
                      request["command"].is_string() &&
                      (request["command"] == "status" ||
                       request["command"].get<std::string>().rfind("log.", 0) == 0);
    if (!ours) return handleRequest(line, queue_);

    const std::string command = request["command"].get<std::string>();
    if (command != "status" && command != "log.search" && command != "log.show" &&
        command != "log.rejected") {
      return errorReply(
          "unknown command " + inQuotes(command) +
          "; expected one of: list, show, retry, flush, hold, release, delete, status, "
          "log.search, log.show, log.rejected");
    }
    for (const auto& [key, value] : request.items()) {
      if (!fieldAllowed(command, key)) {
        return errorReply("unknown field " + inQuotes(key) + " for command '" + command + "'");
      }
    }

    if (command == "status") {
      const LiveStatus live = live_();
      const tracker::Statistics::Snapshot s = stats_.snapshot();
      const Readiness ready = judgeReadiness(live);
      Json providers = Json::array();
      for (const auto& p : live.providers) {
        const auto it = s.per_provider.find(p.name);
        const tracker::Totals totals = it == s.per_provider.end() ? tracker::Totals{} : it->second;
        providers.push_back(Json{{"name", p.name},
                                 {"type", p.type},
                                 {"breaker", p.breaker},
                                 {"token", p.token},
                                 {"token_error", p.token_error},
                                 {"token_expires", p.token_expires},
                                 {"secret_expires", p.secret_expires},
                                 {"delivered", totals.delivered},
                                 {"deferred", totals.deferred},
                                 {"bounced", totals.bounced}});
      }
      Json rejected = Json::object();
      for (const auto& [reason, n] : s.rejected_by_reason) rejected[reason] = n;
      Json last_error = nullptr;
      if (s.last_error) {
        last_error = Json{{"time", unixSeconds(s.last_error->time)},
                          {"provider", s.last_error->provider},
                          {"code", s.last_error->code},
                          {"enhanced", s.last_error->enhanced},
                          {"error", s.last_error->error}};
      }
      const std::int64_t now = unixSeconds(s.now);
      Json status{
          {"version", live.version},
          {"started", unixSeconds(s.started)},
          {"uptime_seconds", s.uptime.count()},
          {"ready", ready.ready},
          {"problems", ready.problems},
          {"totals", Json{{"overall", toJson(s.overall)},
                          {"today", toJson(s.today)},
                          {"last_24h", toJson(s.last_24h)}}},
          {"error_rate", s.error_rate},
          {"last_error", std::move(last_error)},
          {"delivery_seconds",
           Json{{"average", s.avg_delivery_seconds ? Json(*s.avg_delivery_seconds) : Json(nullptr)},
                {"p95", s.p95_delivery_seconds ? Json(*s.p95_delivery_seconds) : Json(nullptr)}}},
          {"rejected_by_reason", std::move(rejected)},
          {"queue",
           Json{
               {"depth", live.queue_depth},
               {"in_flight", live.in_flight},
               {"oldest_arrival", live.oldest_arrival},
               {"oldest_age_seconds",
                live.oldest_arrival > 0 ? std::max<std::int64_t>(0, now - live.oldest_arrival) : 0},
               {"writable", live.queue_writable},
               {"problem", live.queue_problem}}},
          {"providers", std::move(providers)},
          {"tracker", Json{{"enabled", live.tracker_enabled},
                           {"writable", live.tracker.writable},
                           {"last_error", live.tracker.last_error},
                           {"written", live.tracker.written},
                           {"dropped", live.tracker.dropped}}}};
      return okReply(Json{{"status", std::move(status)}});
    }

    if (log_ == nullptr) {
      return errorReply(
          "the mail log is off (tracker.retention_days is -1, or its database could not be opened; "
          "see the log)");
    }

    if (command == "log.search") {
      tracker::Query q;
      const auto since = integerField(request, "since", 0, kMaxUnix);
      const auto until = integerField(request, "until", 0, kMaxUnix);
      const auto limit = integerField(request, "limit", 1, tracker::Query::kMaxLimit);
      const auto offset =
          integerField(request, "offset", 0, std::numeric_limits<std::int32_t>::max());
      for (const auto* v : {&since, &until, &limit, &offset}) {
        if (!*v) return errorReply(v->error().message);
      }
      if (*since) q.since = fromUnix(**since);
      if (*until) q.until = fromUnix(**until);
      if (*limit) q.limit = static_cast<std::size_t>(**limit);
      if (*offset) q.offset = static_cast<std::size_t>(**offset);
      for (auto [key, out] : {std::pair{"sender", &q.sender}, std::pair{"recipient", &q.recipient},
                              std::pair{"subject", &q.subject}, std::pair{"text", &q.text}}) {
        auto v = stringField(request, key);
        if (!v) return errorReply(v.error().message);
        *out = std::move(*v);
      }
      const auto status = stringField(request, "status");
      if (!status) return errorReply(status.error().message);
      if (!status->empty()) {
        q.status = tracker::statusFromName(asciiLower(*status));
        if (!q.status) {
          return errorReply("unknown status " + inQuotes(*status) +
                            "; expected queued, delivered, deferred, bounced or rejected");
        }
      }
      auto page = log_->search(q);
      if (!page) return errorReply(page.error().message);
      Json messages = Json::array();
      for (const auto& m : page->messages) messages.push_back(toJson(m));
      return okReply(Json{{"total", page->total}, {"messages", std::move(messages)}});
    }

    if (command == "log.show") {
      const auto id = stringField(request, "id");
      if (!id) return errorReply(id.error().message);
      if (id->empty()) return errorReply("command 'log.show' needs the field 'id'");
      auto history = log_->history(*id);
      if (!history) return errorReply(history.error().message);
      if (!*history) return errorReply("no message " + inQuotes(*id) + " in the mail log");
      Json recipients = Json::array();
      for (const auto& r : (*history)->recipients) recipients.push_back(toJson(r));
      Json events = Json::array();
      for (const auto& e : (*history)->events) events.push_back(toJson(e));
      return okReply(Json{{"history", Json{{"message", toJson((*history)->message)},
                                           {"recipients", std::move(recipients)},
                                           {"events", std::move(events)}}}});
    }

    // log.rejected
    const auto limit = integerField(request, "limit", 1, tracker::Query::kMaxLimit);
    if (!limit) return errorReply(limit.error().message);
    auto rows = log_->rejections(*limit ? static_cast<std::size_t>(**limit) : std::size_t{50});
    if (!rows) return errorReply(rows.error().message);
    Json list = Json::array();
    for (const auto& r : *rows) list.push_back(toJson(r));
    return okReply(Json{{"rejections", std::move(list)}});
  } catch (const std::exception& e) {
    // Nothing above throws by design; an allocation or the tracker might.
    return errorReply(std::string("internal error: ") + e.what());
  } catch (...) {
    return errorReply("internal error");
  }
}

std::string Api::metrics() const {
  return renderMetrics(stats_.snapshot(), live_());
}

}  // namespace mb::admin
