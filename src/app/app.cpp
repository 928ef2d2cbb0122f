#include "app/app.h"

#include <systemd/sd-daemon.h>

#include <csignal>
#include <memory>
#include <vector>

#include "base/durable_file.h"
#include "base/log.h"
#include "delivery/outbox/outbox_provider.h"
#include "delivery/router.h"
#include "net/asio.h"
#include "net/tls_context_holder.h"
#include "queue/bouncer.h"
#include "queue/file_spool.h"
#include "queue/queue_manager.h"
#include "server/smtp_server.h"

namespace mb::app {
namespace {

namespace asio = net::asio;

constexpr auto kShutdownGrace = std::chrono::seconds(20);

std::vector<std::unique_ptr<delivery::Provider>> makeProviders(const config::Config& config) {
  std::vector<std::unique_ptr<delivery::Provider>> providers;
  for (const auto& p : config.providers) {
    switch (p.type) {
      case config::ProviderType::Outbox:
        providers.push_back(std::make_unique<delivery::OutboxProvider>(p.name, p.directory));
        break;
    }
  }
  return providers;
}

// Waits until every session has ended or the grace period is over, then
// stops the I/O loop.
asio::awaitable<void> drainSessions(asio::io_context& io, server::SmtpServer& server) {
  const auto deadline = std::chrono::steady_clock::now() + kShutdownGrace;
  asio::steady_timer tick(io);
  while (server.activeSessions() > 0 && std::chrono::steady_clock::now() < deadline) {
    tick.expires_after(std::chrono::milliseconds(50));
    co_await tick.async_wait(asio::use_awaitable);
  }
  if (server.activeSessions() > 0) {
    spdlog::warn("{} sessions still open after {}s; closing them", server.activeSessions(),
                 kShutdownGrace.count());
  }
  io.stop();
}

bool anyTlsListener(const config::Config& config) {
  for (const auto& l : config.listeners) {
    if (l.tls != config::TlsMode::None) return true;
  }
  return false;
}

net::TlsSource tlsSource(const config::Config& config) {
  net::TlsSource source;
  if (!config.tls.pkcs12_file.empty()) {
    source.kind = net::TlsSource::Kind::Pkcs12;
    source.pkcs12 = config.tls.pkcs12_file;
    source.password = config.tls.pkcs12_password.reveal();
  } else if (!config.tls.cert_file.empty()) {
    source.kind = net::TlsSource::Kind::Pem;
    source.cert_chain = config.tls.cert_file;
    source.key = config.tls.key_file.empty() ? config.tls.cert_file : config.tls.key_file;
  } else {
    source.kind = net::TlsSource::Kind::SelfSigned;
    source.dir = config.server.state_dir / "tls";
    source.hostname = config.server.hostname;
  }
  return source;
}

}  // namespace

App::App(config::Config config, Clock& clock) : config_(std::move(config)), clock_(clock) {}

int App::run() {
  log::init(config_.logging.level,
            config_.logging.format == config::LogFormat::Json ? log::Format::Json
                                                              : log::Format::Text);
  spdlog::info("mailbridge {} starting with {}", MB_VERSION, config_.source);
  if (config_.access.open_relay) {
    spdlog::warn("access.open_relay is true: any client that can connect may relay mail");
  }

  if (Status st = fs::makeDirectories(config_.server.state_dir); !st) {
    spdlog::critical("state directory: {}", st.error().message);
    return 1;
  }
  queue::FileSpool spool(config_.server.state_dir);
  if (Status st = spool.open(); !st) {
    spdlog::critical("spool: {}", st.error().message);
    return 1;
  }
  auto recovered = spool.recover();
  if (!recovered) {
    spdlog::critical("spool recovery: {}", recovered.error().message);
    return 1;
  }
  if (!recovered->empty()) {
    spdlog::info("{} queued messages recovered from {}", recovered->size(),
                 spool.queueDir().string());
  }

  std::shared_ptr<net::TlsContextHolder> tls;
  if (anyTlsListener(config_)) {
    auto ctx = net::load(tlsSource(config_));
    if (!ctx) {
      spdlog::critical("TLS certificate: {}", ctx.error().message);
      return 1;
    }
    spdlog::info("TLS certificate: {}", (*ctx)->describe());
    tls = std::make_shared<net::TlsContextHolder>(std::move(ctx).value());
  }

  delivery::Router router(makeProviders(config_));
  queue::QueueManager queue_manager(config_.queue, spool, router, clock_);
  queue::Bouncer bouncer(config_.queue, config_.server.hostname, spool, clock_,
                         [&queue_manager](const queue::Envelope& env) { queue_manager.enqueue(env); });
  queue_manager.setOnBounce([&bouncer](const queue::Envelope& env, std::vector<std::size_t> failed) {
    bouncer.onBounce(env, failed);
  });

  asio::io_context io(1);
  server::SmtpServer server(
      io, config_, spool, [&queue_manager](const queue::Envelope& env) { queue_manager.enqueue(env); },
      clock_, tls);
  if (Status st = server.start(); !st) {
    spdlog::critical("{}", st.error().message);
    return 1;
  }
  queue_manager.start(*recovered);

  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        if (signo == SIGHUP) {
          // Certificates are renewed in place (certbot, an internal CA);
          // new connections get the new one, open ones keep theirs. Reading
          // the rest of the configuration again arrives with the queue work.
          if (tls) {
            auto ctx = net::load(tlsSource(config_));
            if (ctx) {
              spdlog::info("SIGHUP: TLS certificate reloaded: {}", (*ctx)->describe());
              tls->replace(std::move(ctx).value());
            } else {
              spdlog::error("SIGHUP: TLS certificate not reloaded, keeping the old one: {}",
                            ctx.error().message);
            }
          }
          spdlog::warn("SIGHUP: only TLS certificates are reloaded; restart to apply other "
                       "configuration changes");
          signals.async_wait(on_signal);
          return;
        }
        spdlog::info("signal {}: stopping", signo);
        sd_notify(0, "STOPPING=1");
        signals.cancel();
        server.stop();
        asio::co_spawn(io, drainSessions(io, server), asio::detached);
      };
  signals.async_wait(on_signal);

  sd_notify(0, "READY=1");
  spdlog::info("ready");
  io.run();

  queue_manager.stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace mb::app
