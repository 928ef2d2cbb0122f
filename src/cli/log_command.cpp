#include "cli/log_command.h"

#include <chrono>
#include <iostream>

#include "admin/control_protocol.h"
#include "admin/control_server.h"
#include "admin/log_format.h"
#include "cli/control_client.h"
#include "cli/queue_command.h"

namespace mb::cli {
namespace {

constexpr const char* kFooter = R"(
Asks the running daemon through its control socket,
<server.state_dir>/control.sock, found through the configuration file
(--config) or given directly (--socket). Times are UTC. The mail log keeps
what tracker: allows (masked addresses and subjects stay masked here).

Exit codes: 0 done, 1 the daemon refused (the reason is on stderr),
2 usage or configuration error, 3 the daemon cannot be reached.
)";

// --json, --config and --socket on a command that talks to the daemon.
void addConnectionOptions(CLI::App* app, bool& json, std::string& config_path,
                          std::string& socket_path) {
  app->add_flag("--json", json, "Print the daemon's reply as JSON");
  auto* config = app->add_option("-c,--config", config_path,
                                 "The daemon's configuration file (for server.state_dir)")
                     ->type_name("FILE");
  auto* socket =
      app->add_option("--socket", socket_path, "The control socket itself")->type_name("PATH");
  config->excludes(socket);
}

}  // namespace

LogCommand::LogCommand(CLI::App& parent) {
  log_ = parent.add_subcommand(
      "log", "Search the mail log: what became of each message, and refused attempts.");
  log_->footer(kFooter);
  log_->require_subcommand(1);
  log_->fallthrough();
  addConnectionOptions(log_, json_, config_path_, socket_path_);

  search_ = log_->add_subcommand("search", "Messages matching every filter given, newest first.");
  search_
      ->add_option("text", text_,
                   "Text in the sender, a recipient, From, subject, Message-ID, id or error")
      ->type_name("TEXT");
  search_
      ->add_option("--since", since_,
                   "Arrived at or after: an age (2h, 1d) or a UTC time (2026-05-01T09:14:00Z)")
      ->type_name("WHEN");
  search_->add_option("--until", until_, "Arrived before (same forms)")->type_name("WHEN");
  search_->add_option("--sender", sender_, "Envelope sender contains")->type_name("TEXT");
  search_->add_option("--recipient", recipient_, "A recipient contains")->type_name("TEXT");
  search_->add_option("--subject", subject_, "Subject contains")->type_name("TEXT");
  search_->add_option("--status", state_, "queued, delivered, deferred, bounced or rejected")
      ->check(CLI::IsMember({"queued", "delivered", "deferred", "bounced", "rejected"},
                            CLI::ignore_case))
      ->type_name("STATUS");
  search_->add_option("--limit", limit_, "At most this many (default 50, at most 1000)")
      ->check(CLI::Range(1, 1000))
      ->type_name("N");
  search_->add_option("--offset", offset_, "Skip this many (paging)")->type_name("N");

  show_ = log_->add_subcommand("show", "One message: its recipients and every delivery attempt.");
  show_->add_option("id", id_, "Queue id")->required()->type_name("ID");

  rejected_ = log_->add_subcommand("rejected",
                                   "Refused attempts (IP not allowed, AUTH failed, too big ...).");
  rejected_->add_option("--limit", limit_, "At most this many (default 50)")
      ->check(CLI::Range(1, 1000))
      ->type_name("N");

  status_ = parent.add_subcommand("status",
                                  "Uptime, readiness, totals (overall, today, last 24 h), "
                                  "providers, queue and mail log health.");
  status_->footer(kFooter);
  addConnectionOptions(status_, json_, config_path_, socket_path_);
}

int LogCommand::run() {
  const char* name = status_->parsed() ? "status" : "log";
  std::string request;
  if (status_->parsed()) {
    request = admin::makeStatusRequest();
  } else if (search_->parsed()) {
    admin::LogSearch s;
    const std::int64_t now = nowSeconds();
    for (auto [text, out] : {std::pair{&since_, &s.since}, std::pair{&until_, &s.until}}) {
      if (text->empty()) continue;
      auto t = admin::parseWhen(*text, now);
      if (!t) {
        std::cerr << "log search: " << t.error().message << '\n';
        return QueueCommand::kUsage;
      }
      *out = *t;
    }
    s.sender = sender_;
    s.recipient = recipient_;
    s.subject = subject_;
    s.status = state_;
    s.text = text_;
    if (limit_ > 0) s.limit = limit_;
    if (offset_ > 0) s.offset = offset_;
    request = admin::makeLogSearchRequest(s);
  } else if (show_->parsed()) {
    request = admin::makeLogShowRequest(id_);
  } else {
    request = admin::makeLogRejectedRequest(limit_ > 0 ? std::optional<std::size_t>(limit_)
                                                       : std::nullopt);
  }

  const auto socket = controlSocket(name, config_path_, socket_path_);
  if (!socket) return QueueCommand::kUsage;
  auto line = admin::controlRequest(*socket, request);
  if (!line) {
    std::cerr << name << ": " << line.error().message << '\n';
    return QueueCommand::kUnreachable;
  }
  auto error = admin::replyError(*line);
  if (!error) {
    std::cerr << name << ": unexpected answer from mailbridge: " << error.error().message << '\n';
    return QueueCommand::kRefused;
  }
  if (json_) {
    auto pretty = admin::prettyJson(*line);
    std::cout << (pretty ? *pretty : *line) << '\n';
  }
  if (*error) {
    std::cerr << name << ": " << **error << '\n';
    return QueueCommand::kRefused;
  }
  if (json_) return QueueCommand::kOk;

  Result<std::string> text = status_->parsed()   ? admin::formatStatus(*line)
                             : search_->parsed() ? admin::formatLogSearch(*line)
                             : show_->parsed()   ? admin::formatLogShow(*line)
                                                 : admin::formatLogRejected(*line);
  if (!text) {
    std::cerr << name << ": unexpected answer from mailbridge: " << text.error().message << '\n';
    return QueueCommand::kRefused;
  }
  std::cout << *text;
  return QueueCommand::kOk;
}

}  // namespace mb::cli
