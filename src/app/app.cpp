#include "app/app.h"

#include <systemd/sd-daemon.h>

#include <cerrno>
#include <csignal>
#include <memory>
#include <optional>
#include <vector>

#include "admin/control_server.h"
#include "base/durable_file.h"
#include "base/log.h"
#include "config/loader.h"
#include "delivery/gmail/gmail_provider.h"
#include "delivery/graph/graph_provider.h"
#include "delivery/graph/graph_setup.h"
#include "delivery/google_tokens.h"
#include "delivery/http_options.h"
#include "delivery/graph/user_password.h"
#include "delivery/outbox/outbox_provider.h"
#include "delivery/smtp/smtp_provider.h"
#include "delivery/smtp/smtp_setup.h"
#include "http/curl_client.h"
#include "mime/header_summary.h"
#include "mime/recipient_rewrite.h"
#include "oauth/cached_token_source.h"
#include "oauth/refresh_token_store.h"
#include "delivery/router.h"
#include "net/asio.h"
#include "net/tls_context_holder.h"
#include "policy/route_rules.h"
#include "queue/bouncer.h"
#include "queue/file_spool.h"
#include "queue/queue_manager.h"
#include "server/smtp_server.h"
#include "tracker/tracker.h"

namespace mb::app {
namespace {

namespace asio = net::asio;

constexpr auto kShutdownGrace = std::chrono::seconds(20);

// What the providers share and must outlive them: HTTP clients (one per
// provider: each may have its own CA file and proxy) and the token cache.
struct ProviderSupport {
  std::vector<std::unique_ptr<http::CurlClient>> http;
  std::shared_ptr<oauth::TokenCache> tokens;
  // The provider with auth_mode user_password, if any: SMTP AUTH asks it.
  std::shared_ptr<delivery::graph::UserPasswordSignIn> password_sign_in;
};

// Where providers keep decoded attachments while they upload them.
std::filesystem::path scratchDir(const config::Config& config) { return config.server.state_dir / "tmp"; }

// Empties the scratch directory, which only an attempt in progress uses:
// what is there at start-up was left by a relay that stopped mid-upload.
Status prepareScratchDir(const config::Config& config) {
  const auto dir = scratchDir(config);
  if (Status st = fs::makeDirectories(dir, 0700); !st) return st;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::error_code ignored;
    std::filesystem::remove_all(entry.path(), ignored);
  }
  if (ec) return Error{"cannot list " + dir.string() + ": " + ec.message()};
  return {};
}

// Builds the providers; a provider that cannot be set up (a certificate that
// does not load) is an error at start-up.
Result<std::vector<std::unique_ptr<delivery::Provider>>> makeProviders(const config::Config& config,
                                                                     ProviderSupport& support, Clock& clock) {
  std::vector<std::unique_ptr<delivery::Provider>> providers;
  for (const auto& p : config.providers) {
    switch (p.type) {
      case config::ProviderType::Outbox:
        providers.push_back(std::make_unique<delivery::OutboxProvider>(p.name, p.directory, p.refuse_recipients));
        break;
      case config::ProviderType::Graph: {
        support.http.push_back(std::make_unique<http::CurlClient>(delivery::httpOptionsFor(p)));
        http::HttpClient& client = *support.http.back();
        if (!support.tokens) support.tokens = std::make_shared<oauth::TokenCache>(clock);
        if (p.auth_mode == config::GraphAuthMode::UserPassword) {
          auto store = std::make_shared<oauth::FileRefreshTokenStore>(
              delivery::graph::refreshTokenDir(config.server.state_dir));
          auto sign_in =
              std::make_shared<delivery::graph::UserPasswordSignIn>(p, client, clock, store, support.tokens);
          support.password_sign_in = sign_in;
          providers.push_back(std::make_unique<delivery::graph::GraphProvider>(
              p, client, [sign_in](const queue::Envelope& env) { return sign_in->tokensFor(env.auth_user); },
              scratchDir(config), std::max<std::size_t>(1, config.queue.max_in_flight)));
          break;
        }
        auto credentials = delivery::graph::makeGraphCredentials(p, client, clock, config.server.state_dir);
        if (!credentials) return credentials.error();
        if (credentials->certificate) {
          spdlog::info("provider {}: certificate {}", p.name, credentials->certificate->describe());
        }
        std::unique_ptr<oauth::TokenFetcher> fetcher = std::move(credentials->fetcher);
        auto tokens = std::make_shared<oauth::CachedTokenSource>(support.tokens, std::move(fetcher));
        providers.push_back(std::make_unique<delivery::graph::GraphProvider>(
            p, client, std::move(tokens), scratchDir(config),
            std::max<std::size_t>(1, config.queue.max_in_flight)));
        break;
      }
      case config::ProviderType::Gmail: {
        support.http.push_back(std::make_unique<http::CurlClient>(delivery::httpOptionsFor(p)));
        http::HttpClient& client = *support.http.back();
        if (!support.tokens) support.tokens = std::make_shared<oauth::TokenCache>(clock);
        // The service account acts as each sending user: one token each.
        auto tokens = delivery::googleUserTokens(p, client, support.tokens, clock);
        if (!tokens) return tokens.error();
        providers.push_back(std::make_unique<delivery::gmail::GmailProvider>(
            p, client, std::move(*tokens), scratchDir(config),
            clock, std::max<std::size_t>(1, config.queue.max_in_flight)));
        break;
      }
      case config::ProviderType::Smtp: {
        delivery::smtp::SmtpProvider::TokenSelector selector;
        if (p.auth == config::SmtpAuth::XOAuth2) {
          // Token requests trust what the SMTP connection trusts (ca_file).
          support.http.push_back(std::make_unique<http::CurlClient>(delivery::httpOptionsFor(p)));
          if (!support.tokens) support.tokens = std::make_shared<oauth::TokenCache>(clock);
          auto made = delivery::smtp::makeSmtpTokenSelector(p, *support.http.back(), support.tokens, clock,
                                                            config.server.state_dir);
          if (!made) return made.error();
          selector = std::move(*made);
        }
        providers.push_back(
            std::make_unique<delivery::smtp::SmtpProvider>(p, config.server.hostname, std::move(selector)));
        break;
      }
    }
  }
  return providers;
}

// The mail log, when tracker.retention_days is not -1. A database that
// cannot be opened is logged and mail flows on without it.
std::unique_ptr<tracker::Tracker> openMailLog(const config::Config& config, const Clock& clock) {
  if (!config.tracker.enabled()) return nullptr;
  tracker::Tracker::Options options;
  options.database = config.server.state_dir / "tracker.db";
  options.config = config.tracker;
  options.header_parser = [](std::string_view header, tracker::Accepted& event) {
    mime::HeaderSummary summary = mime::summarizeHeader(header);
    event.header_from = std::move(summary.from);
    event.subject = std::move(summary.subject);
    event.message_id = std::move(summary.message_id);
  };
  auto opened = tracker::Tracker::open(std::move(options), clock);
  if (!opened) {
    spdlog::error("{}; the mail log is off until this is fixed and mailbridge restarted", opened.error().message);
    return nullptr;
  }
  return std::move(*opened);
}

// What the mail log keeps of a message the server committed.
tracker::Accepted acceptedEvent(const queue::Envelope& env, std::string header, const Clock& clock) {
  tracker::Accepted a;
  a.id = env.id;
  a.time = clock.wallNow();
  a.client_ip = env.client_address;
  a.auth_user = env.auth_user;
  a.listener = env.listener;
  a.sender = env.sender;
  for (const auto& r : env.recipients) a.recipients.push_back(r.address);
  a.size = env.size;
  a.header = std::move(header);
  return a;
}

// What the mail log keeps of one attempt: each recipient's new state.
void recordAttempt(tracker::Tracker& log, const queue::Envelope& env, const std::vector<std::size_t>& recipients,
                   const queue::DeliveryResult& result, const Clock& clock) {
  for (std::size_t i : recipients) {
    const queue::RecipientEntry& rcpt = env.recipients.at(i);
    tracker::Outcome o;
    o.id = env.id;
    o.index = i;
    o.recipient = rcpt.address;
    o.attempt = env.attempts;
    o.time = clock.wallNow();
    o.status = rcpt.state == queue::RecipientState::Delivered ? tracker::Status::Delivered
               : rcpt.state == queue::RecipientState::Failed  ? tracker::Status::Bounced
                                                              : tracker::Status::Deferred;
    o.provider = result.provider;
    o.remote_id = result.remote_id;
    o.code = rcpt.smtp_code;
    o.enhanced = rcpt.enhanced;
    o.error = rcpt.last_error;
    log.outcome(std::move(o));
  }
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

bool sameListenerAddresses(const std::vector<config::ListenerConfig>& a,
                           const std::vector<config::ListenerConfig>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].host != b[i].host || a[i].port != b[i].port ||
        a[i].tls != b[i].tls) {
      return false;
    }
  }
  return true;
}

// A reloaded configuration with the running value kept for what only a
// restart can change (bound sockets, the spool, providers holding their own
// state, the logger's format), each named in the log so that nobody wonders
// why an edit did nothing.
config::Config keepRestartOnly(const config::Config& running, config::Config next) {
  const auto restart = [](const char* what) {
    spdlog::warn("SIGHUP: {} changed; restart mailbridge to apply that (the running value stays)",
                 what);
  };
  if (!sameListenerAddresses(running.listeners, next.listeners)) {
    restart("listeners (added, removed, or a name, host, port or tls mode)");
    next.listeners = running.listeners;
  }
  if (next.server.state_dir != running.server.state_dir) {
    restart("server.state_dir");
    next.server.state_dir = running.server.state_dir;
  }
  if (running.providers != next.providers) {
    restart("providers");
    next.providers = running.providers;
  }
  if (running.routes != next.routes) {
    restart("routes");
    next.routes = running.routes;
  }
  if (running.tracker != next.tracker) {
    restart("tracker");
    next.tracker = running.tracker;
  }
  if (next.logging.format != running.logging.format) {
    restart("logging.format");
    next.logging.format = running.logging.format;
  }
  if (next.access.open_relay && !running.access.open_relay) {
    spdlog::warn("SIGHUP: access.open_relay is now true: any client that can connect may relay mail");
  }
  if (next.auth.max_parallel_verifications != running.auth.max_parallel_verifications) {
    restart("auth.max_parallel_verifications");
    next.auth.max_parallel_verifications = running.auth.max_parallel_verifications;
  }
  return next;
}

}  // namespace

App::App(config::Config config, Clock& clock, Reloader reload)
    : config_(std::move(config)), clock_(clock), reload_(std::move(reload)) {}

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
  // Before the spool is touched: a second relay recovering the same queue
  // would move the first one's in-flight files under its feet.
  const auto lock_path = config_.server.state_dir / "lock";
  auto lock = fs::DirectoryLock::acquire(lock_path);
  if (!lock) {
    if (lock.error().sys_errno == EWOULDBLOCK) {
      spdlog::critical("another mailbridge is running with this state directory ({} is locked)",
                       config_.server.state_dir.string());
    } else {
      spdlog::critical("state directory: {}", lock.error().message);
    }
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

  ProviderSupport provider_support;
  if (Status st = prepareScratchDir(config_); !st) {
    spdlog::critical("state directory: {}", st.error().message);
    return 1;
  }
  auto providers = makeProviders(config_, provider_support, clock_);
  if (!providers) {
    spdlog::critical("{}", providers.error().message);
    return 1;
  }
  // Routes are read at start, like the providers they name. The queue
  // paces and breaks circuits per provider with the same choice the router
  // makes: the rule's provider, else the first one.
  auto routes = std::make_shared<const policy::RouteRules>(config_.routes);
  const std::string first_provider = config_.providers.empty() ? std::string() : config_.providers.front().name;
  auto route_of = [routes, first_provider](const queue::Envelope& env, const std::vector<std::size_t>& pending) {
    std::vector<std::string> recipients;
    for (std::size_t i : pending) recipients.push_back(env.recipients.at(i).address);
    std::string provider =
        routes->choose(env.sendingMailbox(), env.auth_user, env.listener, recipients).provider;
    return provider.empty() ? first_provider : provider;
  };
  delivery::Router router(std::move(providers).value(), [route_of](const queue::DeliveryJob& job) {
    return route_of(job.envelope, job.recipients);
  });
  // Before the queue and the server, which report to it: it outlives both.
  std::unique_ptr<tracker::Tracker> mail_log = openMailLog(config_, clock_);
  queue::QueueManager queue_manager(config_.queue, spool, router, clock_);
  if (mail_log) {
    queue_manager.setAttemptObserver([log = mail_log.get(), this](const queue::Envelope& env,
                                                                 const std::vector<std::size_t>& recipients,
                                                                 const queue::DeliveryResult& result) {
      recordAttempt(*log, env, recipients, result, clock_);
    });
  }
  queue_manager.setRouteFunction(
      [route_of](const queue::Envelope& env) { return route_of(env, env.pendingRecipients()); });
  queue::Bouncer bouncer(config_.queue, config_.server.hostname, spool, clock_,
                         [&queue_manager](const queue::Envelope& env) { queue_manager.enqueue(env); });
  queue_manager.setOnBounce([&bouncer](const queue::Envelope& env, std::vector<std::size_t> failed) {
    return bouncer.onBounce(env, failed);
  });

  asio::io_context io(1);
  server::SmtpServer server(
      io, config_, spool,
      [&queue_manager](const queue::Envelope& env, queue::FirstAttemptCallback on_first) {
        queue_manager.enqueue(env, std::move(on_first));
      },
      clock_, tls);
  server.setHeaderFromParser([](std::string_view header) { return mime::headerFromAddress(header); });
  if (mail_log) {
    server.setAcceptedObserver([log = mail_log.get(), this](const queue::Envelope& env, std::string header) {
      log->accepted(acceptedEvent(env, std::move(header), clock_));
    });
    server.setRefusalObserver([log = mail_log.get(), this](server::SmtpServer::Refusal r) {
      tracker::Rejected event;
      event.time = clock_.wallNow();
      event.client_ip = std::move(r.client_ip);
      event.auth_user = std::move(r.auth_user);
      event.listener = std::move(r.listener);
      event.sender = std::move(r.sender);
      event.recipients = std::move(r.recipients);
      event.code = r.code;
      event.enhanced = std::move(r.enhanced);
      event.reason = std::move(r.reason);
      log->rejected(std::move(event));
    });
  }
  if (auto sign_in = provider_support.password_sign_in) {
    server.setPasswordVerifier([sign_in](const std::string& user, const std::string& password) {
      switch (sign_in->verify(user, password)) {
        case delivery::graph::UserPasswordSignIn::Verdict::Ok:
          return server::SmtpServer::Verdict::Success;
        case delivery::graph::UserPasswordSignIn::Verdict::Refused:
          return server::SmtpServer::Verdict::Failure;
        case delivery::graph::UserPasswordSignIn::Verdict::Unavailable:
          break;
      }
      return server::SmtpServer::Verdict::TempFailure;
    });
  }
  if (Status st = server.start(); !st) {
    spdlog::critical("{}", st.error().message);
    return 1;
  }
  queue_manager.start(*recovered);
  // The queue keeps a small index entry per message and reads an envelope
  // again when its attempt starts; the full envelopes of a large backlog
  // need not stay in memory for the life of the process.
  std::vector<queue::Envelope>().swap(*recovered);
  admin::ControlServer control(config_.server.state_dir / "control.sock", queue_manager);
  if (Status st = control.start(); !st) {
    spdlog::critical("{}", st.error().message);
    return 1;
  }

  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        if (signo == SIGHUP) {
          if (reload_) {
            std::optional<config::Config> next;
            try {
              next = reload_();
            } catch (const config::ConfigError& e) {
              for (const auto& issue : e.issues()) spdlog::error("SIGHUP: {}", issue.format());
            } catch (const std::exception& e) {
              spdlog::error("SIGHUP: {}", e.what());
            }
            if (next) {
              config_ = keepRestartOnly(config_, std::move(*next));
              server.reconfigure(config_);
              queue_manager.reconfigure(config_.queue);
              bouncer.reconfigure(config_.queue, config_.server.hostname);
              // Said before a new level could hide it.
              spdlog::info("SIGHUP: configuration reloaded from {}; new sessions use it", config_.source);
              log::setLevel(config_.logging.level);
            } else {
              spdlog::error("SIGHUP: configuration not reloaded; the running one stays in force");
            }
          }
          // Certificates are renewed in place (certbot, an internal CA), with
          // or without a changed file: new connections get the new one, open
          // ones keep theirs.
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
          if (!reload_) {
            spdlog::info("SIGHUP: the built-in configuration has no file to read again; only the "
                         "TLS certificate was reloaded");
          }
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

  control.stop();
  queue_manager.stop();
  // A commit still under way when the grace ran out calls back into the
  // queue manager and posts to the I/O loop: finish it while both exist.
  // Its message is on disk and is sent after the next start.
  spool.stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace mb::app
