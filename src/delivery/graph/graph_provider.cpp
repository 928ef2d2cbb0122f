#include "delivery/graph/graph_provider.h"

#include <sodium.h>

#include <filesystem>
#include <fstream>
#include <system_error>

#include "base/log.h"
#include "base/text.h"
#include "delivery/graph/graph_error.h"
#include "http/http_client.h"
#include "mime/recipient_rewrite.h"
#include "oauth/client_assertion.h"
#include "oauth/encoding.h"
#include "oauth/token_source.h"

namespace mb::delivery::graph {
namespace {

using queue::DeliveryResult;
using queue::Outcome;
using queue::RecipientResult;

DeliveryResult everyone(const queue::DeliveryJob& job, const std::string& provider, RecipientResult r) {
  DeliveryResult out;
  out.provider = provider;
  out.results.assign(job.recipients.size(), r);
  return out;
}

RecipientResult temporary(std::string detail, const char* enhanced = "4.3.0") {
  RecipientResult r;
  r.outcome = Outcome::TemporaryFailure;
  r.smtp_code = 451;
  r.enhanced = enhanced;
  r.detail = std::move(detail);
  return r;
}

std::string base64(std::string_view bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

// The message as Graph should get it: the rewritten header block, then the
// body from the stored file.
Result<std::string> assemble(const std::filesystem::path& content, const mime::RecipientRewrite& rw,
                             std::uint64_t file_size) {
  std::string out = rw.headers;
  std::ifstream in(content, std::ios::binary);
  if (!in) return Error{"cannot open " + content.string()};
  in.seekg(static_cast<std::streamoff>(rw.body_offset));
  const std::uint64_t body = file_size - rw.body_offset;
  const std::size_t start = out.size();
  out.resize(start + body);
  in.read(out.data() + start, static_cast<std::streamsize>(body));
  if (static_cast<std::uint64_t>(in.gcount()) != body) return Error{"short read of " + content.string()};
  return out;
}

}  // namespace

GraphProvider::GraphProvider(config::ProviderConfig config, http::HttpClient& http,
                             std::shared_ptr<oauth::TokenSource> tokens, std::size_t threads)
    : config_(std::move(config)), http_(http), tokens_(std::move(tokens)), pool_(threads) {}

GraphProvider::~GraphProvider() { pool_.stop(); }

void GraphProvider::deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) {
  auto shared_done = std::make_shared<queue::DeliveryAgent::DoneCallback>(std::move(done));
  const bool queued = pool_.submit([this, job, shared_done] { (*shared_done)(attempt(job)); });
  if (!queued) {
    (*shared_done)(everyone(job, config_.name, temporary("provider " + config_.name + " is stopping")));
  }
}

DeliveryResult GraphProvider::attempt(const queue::DeliveryJob& job) {
  const std::string& id = job.envelope.id;
  std::vector<std::string> recipients;
  for (std::size_t i : job.recipients) recipients.push_back(job.envelope.recipients.at(i).address);

  auto rewrite = mime::rewriteRecipients(job.content, recipients);
  if (!rewrite) {
    spdlog::error("{}: cannot read the message header for Graph: {}", id, rewrite.error().message);
    return everyone(job, config_.name, temporary("cannot read the stored message: " + rewrite.error().message));
  }
  if (rewrite->changed) {
    spdlog::info("{}: header rewritten for Graph: {} header address(es) not in the envelope removed, {} "
                 "envelope recipient(s) added as Bcc",
                 id, rewrite->removed.size(), rewrite->added_bcc.size());
  }

  // Graph sends only as a mailbox: the null sender (a bounce) goes out as
  // its From address (queue.bounce_from for our own bounces).
  const std::string sender = job.envelope.sender.empty() ? rewrite->from_address : job.envelope.sender;
  if (sender.empty()) {
    RecipientResult r;
    r.outcome = Outcome::PermanentFailure;
    r.smtp_code = 550;
    r.enhanced = "5.1.7";
    r.summary = "no sender mailbox to send from";
    r.detail = "neither MAIL FROM nor a From header names a mailbox to send as";
    return everyone(job, config_.name, r);
  }

  std::error_code ec;
  const std::uint64_t file_size = std::filesystem::file_size(job.content, ec);
  if (ec) return everyone(job, config_.name, temporary("cannot read the stored message: " + ec.message()));
  const std::uint64_t size = rewrite->headers.size() + (file_size - rewrite->body_offset);
  if (size > kMaxSendMailBytes) {
    spdlog::error("{}: {} bytes is over what Graph's sendMail takes ({} bytes); the upload-session "
                  "path for larger messages is not available in this version",
                  id, size, kMaxSendMailBytes);
    RecipientResult r;
    r.outcome = Outcome::PermanentFailure;
    r.smtp_code = 552;
    r.enhanced = "5.3.4";
    r.summary = "message too big for the mail service";
    r.detail = "message of " + std::to_string(size) + " bytes is over the sendMail limit of " +
               std::to_string(kMaxSendMailBytes) + " bytes";
    return everyone(job, config_.name, r);
  }
  auto mime = assemble(job.content, *rewrite, file_size);
  if (!mime) return everyone(job, config_.name, temporary(mime.error().message));

  http::Request req;
  req.method = "POST";
  req.url = config_.graph_endpoint + "/v1.0/users/" + oauth::percentEncode(sender) + "/sendMail";
  req.body = base64(*mime);
  req.timeout = config_.timeout;

  for (int round = 0; round < 2; ++round) {
    auto token = tokens_->token();
    if (!token) {
      const oauth::TokenFailure& f = token.failure();
      spdlog::error("{}: no access token for provider {}: {}", id, config_.name, f.explanation);
      // Broken credentials are the administrator's to fix: mail waits.
      RecipientResult r = temporary("no access token: " + f.explanation, "4.7.0");
      r.retry_after = f.retry_after;
      return everyone(job, config_.name, r);
    }
    // Graph wants a GUID here; it is logged with the queue id so that a
    // support case can be matched to this message.
    const auto guid = oauth::randomGuid();
    const std::string client_request_id = guid ? *guid : id;
    req.headers = {{"Authorization", "Bearer " + token->value},
                   {"Content-Type", "text/plain"},
                   {"client-request-id", client_request_id}};
    spdlog::debug("{}: sendMail as {} (client-request-id {})", id, printable(sender), client_request_id);
    const http::Outcome out = http_.perform(req);
    if (const auto* err = std::get_if<http::TransportError>(&out)) {
      // sendMail is not idempotent: after a timeout the mail may have gone.
      spdlog::warn("{}: Graph request {}: {}{}", id, err->timeout ? "timed out" : "failed", err->message,
                   err->timeout ? "; it may have been sent, a retry may duplicate it" : "");
      return everyone(job, config_.name,
                      temporary("Graph unreachable: " + err->message, err->timeout ? "4.4.2" : "4.4.1"));
    }
    const auto& resp = std::get<http::Response>(out);
    const std::string request_id = resp.header("request-id").value_or("");
    if (resp.status == 202) {
      RecipientResult r;
      r.outcome = Outcome::Delivered;
      r.smtp_code = 250;
      r.enhanced = "2.0.0";
      r.detail = "accepted by Graph as " + printable(sender) + (request_id.empty() ? "" : ", request-id " + request_id);
      DeliveryResult result = everyone(job, config_.name, r);
      result.remote_id = request_id;
      return result;
    }
    if (resp.status == 401 && round == 0) {
      spdlog::info("{}: Graph refused the access token (401); fetching a new one", id);
      tokens_->invalidate(token->value);
      continue;
    }
    const GraphError error = parseGraphError(resp.status, resp.body);
    // A token from before the administrator granted consent has no roles;
    // do not keep using it for the rest of its hour.
    if (resp.status == 403 && error.code == "ErrorAccessDenied") tokens_->invalidate(token->value);
    const auto retry_after = resp.retryAfter();
    RecipientResult r = classify(error, retry_after);
    spdlog::log(r.outcome == Outcome::PermanentFailure ? spdlog::level::err : spdlog::level::warn,
                "{}: Graph refused sending as {}: {}", id, printable(sender), r.detail);
    return everyone(job, config_.name, r);
  }
  return everyone(job, config_.name, temporary("Graph refused the access token twice"));
}

}  // namespace mb::delivery::graph
