#include "cli/provider_command.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include "base/log.h"
#include "config/loader.h"
#include "delivery/graph/graph_diagnostics.h"
#include "delivery/graph/graph_provider.h"
#include "delivery/graph/graph_setup.h"
#include "delivery/http_options.h"
#include "delivery/smtp/smtp_provider.h"
#include "delivery/smtp/smtp_setup.h"
#include "http/curl_client.h"
#include "oauth/cached_token_source.h"
#include "oauth/encoding.h"
#include "oauth/token_cache.h"

namespace mb::cli {
namespace {

constexpr const char* kCheckFooter = R"(
Checks a `type: graph` provider without sending anything: that a token can be
had, that it carries Mail.Send (admin consent), with --sender that the
mailbox exists, and when the app's client secret or certificate expires
(this needs Application.Read.All; otherwise it says so). Prints one line per
finding: "ok: ...", "warn: ..." or "FAIL: ... — fix: ...".

A `type: smtp` provider is checked by connecting, starting TLS, verifying the
certificate and authenticating as the daemon would (with XOAUTH2 as
--sender, unless the provider names a username), then QUIT.

Exit codes: 0 no FAIL, 1 at least one FAIL, 2 usage or configuration error.
)";

constexpr const char* kSendFooter = R"(
Sends one short test message (Subject "Mailbridge test message" unless
--subject) from --from to --to through the provider, without the queue and
without a running daemon, and prints the token step, the request and the
result with its SMTP code.

Exit codes: 0 delivered, 1 refused or failed, 2 usage or configuration error.
)";

std::string hostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// What both commands need: the provider's configuration, the HTTP client
// and token source made as the daemon makes them.
struct Setup {
  config::ProviderConfig provider;
  std::unique_ptr<http::CurlClient> http;
  std::shared_ptr<oauth::TokenCache> cache;
  std::shared_ptr<oauth::CachedTokenSource> tokens;
  std::shared_ptr<const oauth::ClientCertificate> certificate;
  std::unique_ptr<delivery::smtp::SmtpProvider> smtp;  // type smtp
};

std::optional<Setup> setUp(const std::string& command, const std::string& config_path, const std::string& name) {
  config::Config config;
  try {
    config = config::loadConfigFile(config_path);
  } catch (const config::ConfigError& e) {
    for (const auto& issue : e.issues()) std::cerr << issue.format() << '\n';
    std::cerr << command << ": the configuration has errors\n";
    return std::nullopt;
  }
  const config::ProviderConfig* found = nullptr;
  for (const auto& p : config.providers) {
    if (p.name == name) found = &p;
  }
  if (found == nullptr) {
    std::cerr << command << ": no provider named '" << name << "' in " << config_path << '\n';
    return std::nullopt;
  }
  if (found->type != config::ProviderType::Graph && found->type != config::ProviderType::Smtp) {
    std::cerr << command << ": provider '" << name << "' is not of type graph or smtp\n";
    return std::nullopt;
  }
  Setup s;
  s.provider = *found;
  s.http = std::make_unique<http::CurlClient>(delivery::httpOptionsFor(s.provider));
  s.cache = std::make_shared<oauth::TokenCache>(SystemClock::instance());
  if (found->type == config::ProviderType::Smtp) {
    auto selector = delivery::smtp::makeSmtpTokenSelector(s.provider, *s.http, s.cache, SystemClock::instance(),
                                                          config.server.state_dir);
    if (!selector) {
      std::cerr << command << ": " << selector.error().message << '\n';
      return std::nullopt;
    }
    s.smtp = std::make_unique<delivery::smtp::SmtpProvider>(s.provider, hostName(), std::move(*selector));
    return s;
  }
  auto credentials =
      delivery::graph::makeGraphCredentials(s.provider, *s.http, SystemClock::instance(), config.server.state_dir);
  if (!credentials) {
    std::cerr << command << ": " << credentials.error().message << '\n';
    return std::nullopt;
  }
  s.certificate = credentials->certificate;
  s.tokens = std::make_shared<oauth::CachedTokenSource>(s.cache, std::move(credentials->fetcher));
  return s;
}

}  // namespace

ProviderCommands::ProviderCommands(CLI::App& parent) {
  check_ = parent.add_subcommand(
      "check-provider",
      "Diagnose a Microsoft Graph or upstream SMTP provider without sending: token, permissions, sender mailbox, "
      "credential expiry.");
  check_->footer(kCheckFooter);
  check_->add_option("name", provider_, "Provider name (providers[].name)")->required()->type_name("NAME");
  check_->add_option("-c,--config", config_path_, "Configuration file (YAML)")->required()->type_name("FILE");
  check_->add_option("--sender", sender_, "Also check this sender mailbox")->type_name("ADDRESS");

  send_ = parent.add_subcommand("test-send", "Send one test message through a Microsoft Graph or upstream SMTP provider.");
  send_->footer(kSendFooter);
  send_->add_option("--provider", provider_, "Provider name (providers[].name)")->required()->type_name("NAME");
  send_->add_option("--from", from_, "Sender mailbox (envelope sender and From)")->required()->type_name("A");
  send_->add_option("--to", to_, "Recipient")->required()->type_name("B");
  send_->add_option("-c,--config", config_path_, "Configuration file (YAML)")->required()->type_name("FILE");
  send_->add_option("--subject", subject_, "Subject (default: Mailbridge test message)")->type_name("S");
}

int ProviderCommands::run() {
  // What the libraries would log (token failures, Graph refusals) is in
  // the lines this command prints; the log would only repeat it.
  log::init("off", log::Format::Text);
  return check_->parsed() ? checkProvider() : testSend();
}

int ProviderCommands::checkProvider() {
  auto setup = setUp("check-provider", config_path_, provider_);
  if (!setup) return kUsage;
  if (setup->smtp) {
    const config::ProviderConfig& p = setup->provider;
    std::cout << "checking provider " << p.name << " (smtp " << p.host << ":" << p.port << ")\n";
    const std::string user = setup->smtp->xoauth2User(sender_);
    if (p.auth == config::SmtpAuth::XOAuth2 && user.empty()) {
      std::cout << "FAIL: XOAUTH2 needs a mailbox to authenticate as — fix: give --sender\n";
      return kFailed;
    }
    auto found = setup->smtp->probe(user);
    if (!found) {
      std::cout << "FAIL: " << found.error().message << '\n';
      return kFailed;
    }
    std::cout << "ok: " << *found << '\n';
    return kOk;
  }
  std::cout << "checking provider " << setup->provider.name << " (tenant " << setup->provider.tenant_id
            << ", client " << setup->provider.client_id << ")\n";
  const auto lines = delivery::graph::diagnoseGraphProvider(setup->provider, *setup->http, *setup->tokens, sender_,
                                                            SystemClock::instance(), setup->certificate.get());
  for (const auto& line : lines) std::cout << delivery::graph::formatCheckLine(line) << '\n';
  return delivery::graph::anyFailed(lines) ? kFailed : kOk;
}

int ProviderCommands::testSend() {
  if (from_.find('@') == std::string::npos || to_.find('@') == std::string::npos) {
    std::cerr << "test-send: --from and --to must be mail addresses\n";
    return kUsage;
  }
  if (subject_.find_first_of("\r\n") != std::string::npos) {
    std::cerr << "test-send: the subject must be one line\n";
    return kUsage;
  }
  auto setup = setUp("test-send", config_path_, provider_);
  if (!setup) return kUsage;
  const std::string host = hostName();

  std::error_code ec;
  const auto dir = std::filesystem::temp_directory_path(ec);
  std::string pattern = ((ec ? std::filesystem::path("/tmp") : dir) / "mailbridge-test-XXXXXX").string();
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) {
    std::cerr << "test-send: cannot create a temporary file in " << pattern << '\n';
    return kFailed;
  }
  ::close(fd);
  const std::filesystem::path file = pattern;
  struct Remove {
    std::filesystem::path p;
    ~Remove() {
      std::error_code ignored;
      std::filesystem::remove(p, ignored);
    }
  } remove{file};
  const std::string message = delivery::graph::buildTestMessage(from_, to_, subject_, setup->provider.name, host,
                                                                SystemClock::instance().wallNow());
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << message;
    if (!out.flush()) {
      std::cerr << "test-send: cannot write " << file << '\n';
      return kFailed;
    }
  }
  std::cout << "message: " << message.size() << " bytes from " << from_ << " to " << to_ << ", subject \""
            << subject_ << "\"\n";

  queue::DeliveryJob job;
  job.envelope.id = "test-send";
  job.envelope.sender = from_;
  queue::RecipientEntry rcpt;
  rcpt.address = to_;
  job.envelope.recipients.push_back(rcpt);
  job.recipients = {0};
  job.content = file;
  job.envelope.size = message.size();  // providers read only this many bytes: the whole file written above
  if (setup->smtp) {
    std::cout << "request: SMTP to " << setup->provider.host << ":" << setup->provider.port << '\n';
    return printResult(setup->smtp->attempt(job));
  }

  // The token first, so that a credential problem is told as such; the
  // provider then takes it from the cache.
  auto token = setup->tokens->token();
  if (!token) {
    std::cout << "token: FAIL: " << token.failure().explanation << '\n';
    return kFailed;
  }
  std::cout << "token: ok (client " << setup->provider.client_id << ", tenant " << setup->provider.tenant_id
            << ")\n";
  std::cout << "request: POST " << setup->provider.graph_endpoint << "/v1.0/users/" << oauth::percentEncode(from_)
            << "/sendMail\n";

  delivery::graph::GraphProvider provider(setup->provider, *setup->http, setup->tokens, file.parent_path(), 1);
  return printResult(provider.attempt(job));
}

int ProviderCommands::printResult(const queue::DeliveryResult& result) {
  if (result.results.empty()) {
    std::cout << "result: no result\n";
    return kFailed;
  }
  const queue::RecipientResult& r = result.results.front();
  const bool delivered = r.outcome == queue::Outcome::Delivered;
  std::cout << "result: " << (delivered ? "delivered" : r.outcome == queue::Outcome::PermanentFailure ? "refused" : "failed")
            << ": " << r.smtp_code << ' ' << r.enhanced << (r.summary.empty() ? "" : " " + r.summary) << " — "
            << r.detail << '\n';
  return delivered ? kOk : kFailed;
}

}  // namespace mb::cli
