// The Prometheus text exposition (format 0.0.4) of the statistics and the
// live state: Api::metrics() and renderMetrics() (declared in api.h).

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "admin/api.h"
#include "base/time_format.h"

namespace mb::admin {
namespace {

using Labels = std::vector<std::pair<std::string_view, std::string>>;

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

std::string number(std::uint64_t v) {
  return std::to_string(v);
}
std::string number(std::int64_t v) {
  return std::to_string(v);
}

// Label values escape backslash, double quote and line feed.
std::string escape(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void sample(std::string_view name, const Labels& labels, const std::string& value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      bool first = true;
      for (const auto& [key, v] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += key;
        out_ += "=\"";
        out_ += escape(v);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }

  // A family with one unlabelled sample.
  void single(std::string_view name, std::string_view type, std::string_view help,
              const std::string& value) {
    family(name, type, help);
    sample(name, {}, value);
  }

  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string renderMetrics(const tracker::Statistics::Snapshot& s, const LiveStatus& live) {
  Writer w;
  const std::int64_t now = unixSeconds(s.now);

  w.single("mailbridge_start_time_seconds", "gauge",
           "When this mailbridge process started (unix seconds).", number(unixSeconds(s.started)));
  w.single("mailbridge_uptime_seconds", "gauge", "Seconds since this mailbridge process started.",
           number(static_cast<std::int64_t>(s.uptime.count())));
  w.single("mailbridge_ready", "gauge", "1 when /healthz/ready answers 200.",
           number(static_cast<std::int64_t>(judgeReadiness(live).ready ? 1 : 0)));

  w.single("mailbridge_messages_accepted_total", "counter",
           "Messages accepted and queued (answered 250).", number(s.overall.accepted));

  w.family("mailbridge_recipients_total", "counter",
           "Recipient outcomes of delivery attempts, by provider and status (delivered, deferred, "
           "bounced).");
  for (const auto& [provider, t] : s.per_provider) {
    w.sample("mailbridge_recipients_total", {{"provider", provider}, {"status", "delivered"}},
             number(t.delivered));
    w.sample("mailbridge_recipients_total", {{"provider", provider}, {"status", "deferred"}},
             number(t.deferred));
    w.sample("mailbridge_recipients_total", {{"provider", provider}, {"status", "bounced"}},
             number(t.bounced));
  }

  w.family("mailbridge_rejected_total", "counter",
           "SMTP attempts refused before anything was queued, by reason.");
  for (const auto& [reason, n] : s.rejected_by_reason) {
    w.sample("mailbridge_rejected_total", {{"reason", reason}}, number(n));
  }

  w.single("mailbridge_delivery_error_ratio", "gauge",
           "Deferred and bounced recipient outcomes over all outcomes in the last 24 hours.",
           number(s.error_rate));
  w.single("mailbridge_last_error_time_seconds", "gauge",
           "When the last deferral or bounce happened (unix seconds; 0: none since start).",
           number(s.last_error ? unixSeconds(s.last_error->time) : std::int64_t{0}));

  w.family("mailbridge_delivery_duration_seconds", "histogram",
           "Time from acceptance to a recipient's delivery.");
  for (std::size_t i = 0; i < tracker::DeliveryHistogram::kBounds.size(); ++i) {
    w.sample("mailbridge_delivery_duration_seconds_bucket",
             {{"le", number(tracker::DeliveryHistogram::kBounds[i])}},
             number(s.delivery.counts[i]));
  }
  w.sample("mailbridge_delivery_duration_seconds_bucket", {{"le", "+Inf"}},
           number(s.delivery.count));
  w.sample("mailbridge_delivery_duration_seconds_sum", {}, number(s.delivery.sum));
  w.sample("mailbridge_delivery_duration_seconds_count", {}, number(s.delivery.count));

  w.single("mailbridge_queue_messages", "gauge", "Messages in the queue, held ones included.",
           number(static_cast<std::uint64_t>(live.queue_depth)));
  w.single("mailbridge_queue_in_flight", "gauge", "Delivery attempts running now.",
           number(static_cast<std::uint64_t>(live.in_flight)));
  w.single("mailbridge_queue_oldest_age_seconds", "gauge",
           "Age of the oldest queued message (0: the queue is empty).",
           number(live.oldest_arrival > 0 ? std::max<std::int64_t>(0, now - live.oldest_arrival)
                                          : std::int64_t{0}));
  w.single("mailbridge_queue_writable", "gauge",
           "1 while the queue directory can be written and has room.",
           number(static_cast<std::int64_t>(live.queue_writable ? 1 : 0)));

  w.family("mailbridge_provider_circuit_open", "gauge",
           "1 while a provider's circuit breaker is open or half-open (deliveries held back).");
  for (const auto& p : live.providers) {
    w.sample("mailbridge_provider_circuit_open", {{"provider", p.name}},
             number(static_cast<std::int64_t>(p.breaker == "closed" ? 0 : 1)));
  }
  w.family("mailbridge_provider_token_ok", "gauge",
           "1 while a provider holds an access token and its last fetch succeeded (providers "
           "without OAuth: 1).");
  for (const auto& p : live.providers) {
    const bool ok = p.token == "ok" || p.token == "none" || p.token == "not yet";
    w.sample("mailbridge_provider_token_ok", {{"provider", p.name}},
             number(static_cast<std::int64_t>(ok ? 1 : 0)));
  }
  w.family("mailbridge_provider_secret_expiry_time_seconds", "gauge",
           "When a provider's client secret or certificate expires (unix seconds), where known.");
  for (const auto& p : live.providers) {
    if (p.secret_expires > 0) {
      w.sample("mailbridge_provider_secret_expiry_time_seconds", {{"provider", p.name}},
               number(p.secret_expires));
    }
  }

  w.single("mailbridge_tracker_enabled", "gauge", "1 when the mail log is on.",
           number(static_cast<std::int64_t>(live.tracker_enabled ? 1 : 0)));
  w.single(
      "mailbridge_tracker_writable", "gauge", "1 while the mail log's last batch was written.",
      number(static_cast<std::int64_t>(!live.tracker_enabled || live.tracker.writable ? 1 : 0)));
  w.single("mailbridge_tracker_events_dropped_total", "counter",
           "Mail log events lost to a full queue or a failed write.", number(live.tracker.dropped));
  return w.take();
}

}  // namespace mb::admin
