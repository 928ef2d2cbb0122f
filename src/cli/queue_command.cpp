#include "cli/queue_command.h"

#include <chrono>
#include <iostream>

#include "admin/control_server.h"
#include "cli/control_client.h"
#include "queue/envelope.h"

namespace mb::cli {
namespace {

constexpr const char* kQueueFooter = R"(
Reaches the running daemon through its control socket,
<server.state_dir>/control.sock, found through the configuration file
(--config) or given directly (--socket). Needs the user the daemon runs as,
or root.

Exit codes: 0 done, 1 the daemon refused (the reason is on stderr),
2 usage or configuration error, 3 the daemon cannot be reached.
)";

}  // namespace

QueueCommand::QueueCommand(CLI::App& parent) {
  queue_ = parent.add_subcommand(
      "queue",
      "Look at and act on the running daemon's queue: list, show, retry, hold, release, "
      "delete, flush.");
  queue_->footer(kQueueFooter);
  queue_->require_subcommand(1);
  // Lets the options below follow the subcommand: `queue list --json`.
  queue_->fallthrough();
  queue_->add_flag("--json", json_, "Print the daemon's reply as JSON");
  auto* config = queue_
                     ->add_option("-c,--config", config_path_,
                                  "The daemon's configuration file (for server.state_dir)")
                     ->type_name("FILE");
  auto* socket =
      queue_->add_option("--socket", socket_path_, "The control socket itself")->type_name("PATH");
  config->excludes(socket);

  list_ = queue_->add_subcommand(
      "list", "Every queued message: id, size, arrival, sender, state, pending recipients.");
  show_ = queue_->add_subcommand("show", "Everything about one message.");
  show_->add_option("id", id_, "Queue id")->required()->type_name("ID");
  retry_ =
      queue_->add_subcommand("retry", "Attempt a deferred message now (or every one with --all).");
  auto* retry_id = retry_->add_option("id", id_, "Queue id")->type_name("ID");
  auto* retry_all = retry_->add_flag("--all", all_, "Every queued message that is not held");
  retry_id->excludes(retry_all);
  hold_ = queue_->add_subcommand(
      "hold", "Keep a message from being attempted until it is released (survives restarts).");
  hold_->add_option("id", id_, "Queue id")->required()->type_name("ID");
  release_ = queue_->add_subcommand("release", "Undo hold; the message is attempted at once.");
  release_->add_option("id", id_, "Queue id")->required()->type_name("ID");
  delete_ = queue_->add_subcommand("delete",
                                   "Remove a message without delivering it and without a bounce.");
  delete_->add_option("id", id_, "Queue id")->required()->type_name("ID");
  flush_ = queue_->add_subcommand("flush", "Attempt every deferred message now (retry --all).");
}

int QueueCommand::run() {
  admin::Command command = admin::Command::List;
  if (show_->parsed()) {
    command = admin::Command::Show;
  } else if (retry_->parsed()) {
    command = all_ ? admin::Command::RetryAll : admin::Command::Retry;
    if (!all_ && id_.empty()) {
      std::cerr << "queue retry: give a queue id, or --all\n";
      return kUsage;
    }
  } else if (hold_->parsed()) {
    command = admin::Command::Hold;
  } else if (release_->parsed()) {
    command = admin::Command::Release;
  } else if (delete_->parsed()) {
    command = admin::Command::Delete;
  } else if (flush_->parsed()) {
    command = admin::Command::Flush;
  }
  if (!id_.empty() && !queue::isValidQueueId(id_)) {
    std::cerr << "queue: '" << id_ << "' is not a queue id (20 letters and digits)\n";
    return kUsage;
  }

  const auto socket = controlSocket("queue", config_path_, socket_path_);
  if (!socket) return kUsage;

  auto line = admin::controlRequest(*socket, admin::makeRequest(command, id_));
  if (!line) {
    std::cerr << "queue: " << line.error().message << '\n';
    return kUnreachable;
  }
  auto reply = admin::parseReply(*line);
  if (!reply) {
    std::cerr << "queue: unexpected answer from mailbridge: " << reply.error().message << '\n';
    return kRefused;
  }
  if (json_) {
    // As the daemon sent it: a script gets every field, including new ones.
    auto pretty = admin::prettyJson(*line);
    std::cout << (pretty ? *pretty : *line) << '\n';
  }
  if (!reply->ok) {
    std::cerr << "queue: " << reply->error << '\n';
    return kRefused;
  }
  if (json_) return kOk;

  switch (command) {
    case admin::Command::List:
      std::cout << admin::formatList(reply->messages, nowSeconds());
      break;
    case admin::Command::Show:
      if (!reply->message) {
        std::cerr << "queue: unexpected answer from mailbridge: no message in it\n";
        return kRefused;
      }
      std::cout << admin::formatShow(*reply->message, nowSeconds());
      break;
    default:
      std::cout << admin::formatDone(command, *reply);
      break;
  }
  return kOk;
}

}  // namespace mb::cli
