#include "app/app.h"

#include <systemd/sd-daemon.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "admin/api.h"
#include "admin/control_server.h"
#include "admin/http_server.h"
#include "base/durable_file.h"
#include "base/log.h"
#include "base/time_format.h"
#include "base/units.h"
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
#include "tracker/accept_times.h"
#include "tracker/statistics.h"
#include "tracker/tracker.h"

namespace mb::app {
namespace {

namespace asio = net::asio;

constexpr auto kShutdownGrace = std::chrono::seconds(20);

// What the providers need and must outlive them: HTTP clients (one per
// provider: each may have its own CA file and proxy) and a token cache per
// provider (so that the status page can tell whose tokens fail).
struct ProviderSupport {
  std::vector<std::unique_ptr<http::CurlClient>> http;
  std::map<std::string, std::shared_ptr<oauth::TokenCache>> tokens;
  // When a provider's certificate expires (unix s), for the status page.
  std::map<std::string, std::int64_t> certificate_expires;
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
        auto cache = support.tokens[p.name] = std::make_shared<oauth::TokenCache>(clock);
        if (p.auth_mode == config::GraphAuthMode::UserPassword) {
          auto store = std::make_shared<oauth::FileRefreshTokenStore>(
              delivery::graph::refreshTokenDir(config.server.state_dir));
          auto sign_in =
              std::make_shared<delivery::graph::UserPasswordSignIn>(p, client, clock, store, cache);
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
          support.certificate_expires[p.name] = unixSeconds(credentials->certificate->notAfter());
        }
        std::unique_ptr<oauth::TokenFetcher> fetcher = std::move(credentials->fetcher);
        auto tokens = std::make_shared<oauth::CachedTokenSource>(cache, std::move(fetcher));
        providers.push_back(std::make_unique<delivery::graph::GraphProvider>(
            p, client, std::move(tokens), scratchDir(config),
            std::max<std::size_t>(1, config.queue.max_in_flight)));
        break;
      }
      case config::ProviderType::Gmail: {
        support.http.push_back(std::make_unique<http::CurlClient>(delivery::httpOptionsFor(p)));
        http::HttpClient& client = *support.http.back();
        auto cache = support.tokens[p.name] = std::make_shared<oauth::TokenCache>(clock);
        // The service account acts as each sending user: one token each.
        auto tokens = delivery::googleUserTokens(p, client, cache, clock);
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
          auto cache = support.tokens[p.name] = std::make_shared<oauth::TokenCache>(clock);
          auto made = delivery::smtp::makeSmtpTokenSelector(p, *support.http.back(), cache, clock,
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

// What the statistics and the mail log (when on) keep of one attempt: each
// recipient's new state.
void recordAttempt(tracker::Statistics& stats, tracker::Tracker* log, tracker::AcceptTimes& accept_times,
                   const queue::Envelope& env, const std::vector<std::size_t>& recipients,
                   const queue::DeliveryResult& result, const Clock& clock) {
  const auto now = clock.wallNow();
  const auto accepted = accept_times.take(env.id).value_or(Clock::WallTime(std::chrono::seconds(env.arrival)));
  for (std::size_t i : recipients) {
    const queue::RecipientEntry& rcpt = env.recipients.at(i);
    const tracker::Status status = rcpt.state == queue::RecipientState::Delivered ? tracker::Status::Delivered
                                   : rcpt.state == queue::RecipientState::Failed  ? tracker::Status::Bounced
                                                                                  : tracker::Status::Deferred;
    const auto taken = now - accepted;
    stats.outcome(result.provider, status, std::chrono::duration_cast<std::chrono::milliseconds>(taken),
                  rcpt.smtp_code, rcpt.enhanced, rcpt.last_error);
    if (log == nullptr) continue;
    tracker::Outcome o;
    o.id = env.id;
    o.index = i;
    o.recipient = rcpt.address;
    o.attempt = env.attempts;
    o.time = now;
    o.status = status;
    o.provider = result.provider;
    o.remote_id = result.remote_id;
    o.code = rcpt.smtp_code;
    o.enhanced = rcpt.enhanced;
    o.error = rcpt.last_error;
    log->outcome(std::move(o));
  }
}

// Whether the queue directory takes a new file, and has the room the
// server asks for before it accepts MAIL.
std::string queueProblem(const config::Config& config, const std::filesystem::path& queue_dir) {
  const auto free = fs::freeSpace(config.server.state_dir);
  if (!free) return free.error().message;
  if (const std::uint64_t floor = config::freeSpaceFloor(config.queue, config.smtp); floor > 0 && *free < floor) {
    return formatSize(*free) + " free, below the " + formatSize(floor) + " needed to accept mail";
  }
  const std::filesystem::path probe = queue_dir / ".ready-probe.tmp";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error::fromErrno("cannot create a file in " + queue_dir.string(), errno).message;
  ::close(fd);
  ::unlink(probe.c_str());
  return {};
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
  if (running.admin != next.admin) {
    restart("admin");
    next.admin = running.admin;
  }
  if (next.logging.file != running.logging.file || next.logging.retention_days != running.logging.retention_days) {
    restart("logging.file and logging.retention_days");
    next.logging.file = running.logging.file;
    next.logging.retention_days = running.logging.retention_days;
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
  const log::Format log_format =
      config_.logging.format == config::LogFormat::Json ? log::Format::Json : log::Format::Text;
  if (config_.logging.writesFile()) {
    if (Status st = log::init(config_.logging.level, log_format,
                              log::LogFile{config_.logging.file, config_.logging.retention_days});
        !st) {
      spdlog::critical("{}", st.error().message);
      return 1;
    }
  } else {
    log::init(config_.logging.level, log_format);
  }
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
  if (anyTlsListener(config_) || (config_.admin.enabled && config_.admin.tls)) {
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
  // Before the queue and the server, which report to them: they outlive both.
  std::unique_ptr<tracker::Tracker> mail_log = openMailLog(config_, clock_);
  tracker::Statistics stats(clock_);
  tracker::AcceptTimes accept_times;
  queue::QueueManager queue_manager(config_.queue, spool, router, clock_);
  queue_manager.setAttemptObserver([log = mail_log.get(), &stats, &accept_times, this](
                                       const queue::Envelope& env, const std::vector<std::size_t>& recipients,
                                       const queue::DeliveryResult& result) {
    recordAttempt(stats, log, accept_times, env, recipients, result, clock_);
  });
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
  server.setAcceptedObserver([log = mail_log.get(), &stats, &accept_times, this](const queue::Envelope& env,
                                                                                std::string header) {
    stats.accepted();
    accept_times.add(env.id, clock_.wallNow());
    if (log != nullptr) log->accepted(acceptedEvent(env, std::move(header), clock_));
  }, /*with_header=*/mail_log != nullptr);  // the statistics need no header
  server.setRefusalObserver([log = mail_log.get(), &stats, this](server::SmtpServer::Refusal r) {
    stats.rejected(r.reason);
    if (log == nullptr) return;
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
  // The live state for the status page, /metrics and /healthz/ready:
  // counters and flags only, read on each request.
  auto live = [this, &queue_manager, &spool, &provider_support, log = mail_log.get()]() {
    admin::LiveStatus l;
    l.version = MB_VERSION;
    l.queue_depth = queue_manager.queuedCount();
    l.in_flight = queue_manager.inFlightCount();
    l.oldest_arrival = queue_manager.oldestArrival();
    l.queue_problem = queueProblem(config_, spool.queueDir());
    l.queue_writable = l.queue_problem.empty();
    for (const auto& p : config_.providers) {
      admin::ProviderState state;
      state.name = p.name;
      state.type = config::providerTypeName(p.type);
      state.breaker = queue_manager.breakerState(p.name);
      if (const auto it = provider_support.tokens.find(p.name); it != provider_support.tokens.end()) {
        const oauth::TokenCache::Summary t = it->second->summary();
        state.token = t.failing > 0 ? "failing" : t.with_token > 0 ? "ok" : "not yet";
        state.token_error = t.last_failure;
        if (t.soonest_expiry) {
          state.token_expires = unixSeconds(*t.soonest_expiry);
        }
      }
      state.secret_expires = p.client_secret_expires;
      if (const auto it = provider_support.certificate_expires.find(p.name);
          it != provider_support.certificate_expires.end()) {
        state.secret_expires = it->second;
      }
      l.providers.push_back(std::move(state));
    }
    l.tracker_enabled = log != nullptr;
    if (log != nullptr) l.tracker = log->health();
    return l;
  };
  admin::Api api(queue_manager, mail_log.get(), stats, live);
  admin::ControlServer control(config_.server.state_dir / "control.sock",
                               [&api](std::string_view request) { return api.handle(request); });
  if (Status st = control.start(); !st) {
    spdlog::critical("{}", st.error().message);
    return 1;
  }
  std::unique_ptr<admin::HttpServer> admin_http;
  if (config_.admin.enabled) {
    admin::HttpServer::Options options;
    options.host = config_.admin.host;
    options.port = config_.admin.port;
    if (config_.admin.tls) options.tls = tls;
    options.password_hash = config_.admin.password_hash;
    options.api_token = config_.admin.api_token.reveal();
    options.public_metrics = config_.admin.public_metrics;
    options.public_health = config_.admin.public_health;
    options.session_timeout = config_.admin.session_timeout;
    admin_http = std::make_unique<admin::HttpServer>(std::move(options), api, clock_);
    if (Status st = admin_http->start(); !st) {
      spdlog::critical("{}", st.error().message);
      return 1;
    }
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

  // Old daily log files go at start and then hourly (a day's file ends at
  // local midnight; an hourly look needs no clock arithmetic).
  asio::steady_timer log_purge(io);
  std::function<void(const boost::system::error_code&)> purge_logs = [&](const boost::system::error_code& ec) {
    if (ec) return;
    if (config_.logging.writesFile()) {
      auto n = log::purgeLogFiles(config_.logging.file, config_.logging.retention_days, clock_.wallNow());
      if (!n) {
        spdlog::warn("log files: {}", n.error().message);
      } else if (*n > 0) {
        spdlog::info("log files: deleted {} older than {} days", *n, config_.logging.retention_days);
      }
    }
    log_purge.expires_after(std::chrono::hours(1));
    log_purge.async_wait(purge_logs);
  };
  purge_logs({});

  sd_notify(0, "READY=1");
  spdlog::info("ready");
  io.run();

  if (admin_http) admin_http->stop();
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
