#include "queue/bouncer.h"

#include <future>

#include "base/log.h"
#include "base/text.h"
#include "queue/dsn.h"

namespace mb::queue {

Bouncer::Bouncer(const config::QueueConfig& config, std::string hostname, Spool& spool,
                 Clock& clock, Enqueue enqueue)
    : bounce_to_(config.bounce_to),
      admin_address_(config.admin_address),
      bounce_from_(config.bounce_from),
      hostname_(std::move(hostname)),
      spool_(spool),
      clock_(clock),
      enqueue_(std::move(enqueue)) {}

void Bouncer::reconfigure(const config::QueueConfig& config, std::string hostname) {
  std::lock_guard lock(mutex_);
  bounce_to_ = config.bounce_to;
  admin_address_ = config.admin_address;
  bounce_from_ = config.bounce_from;
  hostname_ = std::move(hostname);
}

bool Bouncer::onBounce(const Envelope& env, const std::vector<std::size_t>& failed) {
  config::BounceTo bounce_to;
  std::string admin_address;
  std::string hostname;
  std::string from;
  {
    std::lock_guard lock(mutex_);
    bounce_to = bounce_to_;
    admin_address = admin_address_;
    hostname = hostname_;
    from = bounce_from_.empty() ? "MAILER-DAEMON@" + hostname_ : bounce_from_;
  }
  if (failed.empty() || bounce_to == config::BounceTo::None) return true;
  if (!shouldBounce(env)) {
    spdlog::info("{}: no bounce for a message with the null sender", env.id);
    return true;
  }
  bool stored = true;
  if (bounce_to == config::BounceTo::Sender || bounce_to == config::BounceTo::Both) {
    stored = send(env, failed, env.sender, hostname, from) && stored;
  }
  if ((bounce_to == config::BounceTo::Admin || bounce_to == config::BounceTo::Both) &&
      !admin_address.empty() && admin_address != env.sender) {
    stored = send(env, failed, admin_address, hostname, from) && stored;
  }
  return stored;
}

bool Bouncer::send(const Envelope& env, const std::vector<std::size_t>& failed,
                   const std::string& to, const std::string& hostname, const std::string& from) {
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(clock_.wallNow().time_since_epoch())
          .count();
  DsnInput in;
  in.envelope = &env;
  in.failed = failed;
  in.reporting_host = hostname;
  in.now = now;
  in.original_content = spool_.contentPath(env.id);
  in.original_size = env.size;  // the message is the file's first env.size bytes
  in.from_address = from;
  in.to_address = to;
  auto text = buildDsn(in);
  if (!text) {
    spdlog::error("{}: cannot build a bounce to {}: {}", env.id, printable(to),
                  text.error().message);
    return true;
  }
  auto created = spool_.create();
  if (!created) {
    spdlog::error("{}: cannot store a bounce to {}: {}", env.id, printable(to),
                  created.error().message);
    return false;
  }
  auto message = std::move(created).value();
  if (Status st = message->write(*text); !st) {
    spdlog::error("{}: cannot store a bounce to {}: {}", env.id, printable(to), st.error().message);
    return false;  // the partial file goes with `message`
  }
  Envelope dsn;
  dsn.id = message->id();
  dsn.size = message->size();  // as the spool records it: the queue may start from this copy
  dsn.sender = "";  // null sender: a bounce never bounces
  RecipientEntry rcpt;
  rcpt.address = to;
  dsn.recipients.push_back(std::move(rcpt));
  dsn.helo = hostname;
  dsn.listener = "bounce";
  dsn.arrival = now;
  dsn.route = env.route;

  // Wait for the commit: the original is removed after this returns, and
  // the bounce must be durable by then.
  std::promise<Status> committed;
  auto done = committed.get_future();
  spool_.commit(std::move(message), dsn,
                [&committed](Status st) { committed.set_value(std::move(st)); });
  const Status st = done.get();
  if (!st) {
    spdlog::error("{}: cannot store a bounce to {}: {}", env.id, printable(to), st.error().message);
    return false;
  }
  spdlog::warn("{}: bounce {} queued to {} for {} failed recipient(s)", env.id, dsn.id,
               printable(to), failed.size());
  enqueue_(dsn);
  return true;
}

}  // namespace mb::queue
