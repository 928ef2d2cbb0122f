#include "delivery/graph/graph_provider.h"


#include <filesystem>
#include <optional>
#include <string>
#include <system_error>

#include "base/durable_file.h"
#include "base/log.h"
#include "base/text.h"
#include "delivery/graph/draft_send.h"
#include "delivery/bearer_call.h"
#include "delivery/graph/graph_error.h"
#include "http/http_client.h"
#include "mime/recipient_rewrite.h"
#include "oauth/encoding.h"

namespace mb::delivery::graph {
namespace {

using queue::DeliveryResult;
using queue::Outcome;
using queue::RecipientResult;

}  // namespace

GraphProvider::GraphProvider(config::ProviderConfig config, http::HttpClient& http,
                             std::shared_ptr<oauth::TokenSource> tokens, std::filesystem::path scratch_dir,
                             std::size_t threads)
    : GraphProvider(
          std::move(config), http, [tokens = std::move(tokens)](const queue::Envelope&) { return tokens; },
          std::move(scratch_dir), threads) {}

GraphProvider::GraphProvider(config::ProviderConfig config, http::HttpClient& http, TokenSelector tokens,
                             std::filesystem::path scratch_dir, std::size_t threads)
    : config_(std::move(config)),
      http_(http),
      tokens_(std::move(tokens)),
      scratch_dir_(std::move(scratch_dir)),
      pool_(threads, WorkerPool::kUnbounded, "mb-graph") {}

GraphProvider::~GraphProvider() { pool_.stop(); }

void GraphProvider::deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) {
  deliverOnPool(pool_, config_.name, job, std::move(done), [this](const queue::DeliveryJob& j) { return attempt(j); });
}

DeliveryResult GraphProvider::attempt(const queue::DeliveryJob& job) {
  const std::string& id = job.envelope.id;
  std::vector<std::string> recipients;
  for (std::size_t i : job.recipients) recipients.push_back(job.envelope.recipients.at(i).address);

  // The message is the first envelope.size bytes of the content file; the
  // spool may keep more after them, which must never be sent.
  const mime::ContentFile content{job.content, job.envelope.size};
  // A message that sendMail takes is read once, whole; a larger one goes
  // through an upload session, which streams it from the file.
  std::optional<std::string> whole;
  if (content.size <= kMaxSendMailBytes && config_.save_to_sent) {
    auto read = fs::readFilePrefix(content.path, content.size);
    if (!read) {
      return sameForAll(job, config_.name,
                        temporaryFailure("cannot read the stored message: " + read.error().message));
    }
    whole = std::move(read).value();
  }
  Result<mime::RecipientRewrite> rewrite = Error{};
  if (whole) {
    auto block = mime::headerBlockOf(*whole);
    rewrite = block ? mime::rewriteRecipients(*block, recipients) : Result<mime::RecipientRewrite>(block.error());
  } else {
    rewrite = mime::rewriteRecipients(content, recipients);
  }
  if (!rewrite) {
    spdlog::error("{}: cannot read the message header for Graph: {}", id, rewrite.error().message);
    return sameForAll(job, config_.name, temporaryFailure("cannot read the stored message: " + rewrite.error().message));
  }
  if (rewrite->changed) {
    spdlog::info("{}: header rewritten for Graph: {} header address(es) not in the envelope removed, {} "
                 "envelope recipient(s) added as Bcc",
                 id, rewrite->removed.size(), rewrite->added_bcc.size());
  }

  // The mailbox chosen at acceptance (senders.use_from_header), else the
  // envelope sender. Graph sends only as a mailbox: the null sender (a
  // bounce) goes out as its From address (queue.bounce_from for our own).
  const std::string& chosen = job.envelope.sendingMailbox();
  const std::string sender = chosen.empty() ? rewrite->from_address : chosen;
  if (sender.empty()) {
    return sameForAll(job, config_.name,
                      permanentFailure(550, "5.1.7", "no sender mailbox to send from",
                                       "neither MAIL FROM nor a From header names a mailbox to send as"));
  }

  const std::uint64_t size = rewrite->headers.size() + (content.size - rewrite->body_offset);
  const std::shared_ptr<oauth::TokenSource> tokens = tokens_(job.envelope);
  if (!tokens) {
    spdlog::error("{}: provider {} sends only for users signed in with SMTP AUTH (auth_mode user_password), "
                  "and this message came without one",
                  id, config_.name);
    return sameForAll(job, config_.name,
                      permanentFailure(550, "5.7.1", "sender not signed in",
                                       "no SMTP AUTH user to send for (auth_mode user_password)"));
  }
  BearerCaller graph(http_, *tokens, id, config_.timeout, "Graph", dropsToken);

  if (size > kMaxSendMailBytes || !config_.save_to_sent) {
    DraftSend send;
    send.content = content;
    send.recipients = recipients;
    send.sender = sender;
    send.graph_endpoint = config_.graph_endpoint;
    send.save_to_sent = config_.save_to_sent;
    send.scratch_dir = scratch_dir_;
    send.upload_retry_delay = upload_retry_delay_;
    DraftOutcome out = sendThroughDraft(graph, send);
    DeliveryResult result = sameForAll(job, config_.name, out.result);
    result.remote_id = out.remote_id;
    return result;
  }

  Result<std::string> mime = Error{};
  if (whole && rewrite->body_offset <= whole->size()) {
    std::string message = std::move(rewrite->headers);
    message.append(*whole, rewrite->body_offset);
    whole.reset();
    mime = std::move(message);
  } else {
    mime = mime::rewrittenMessage(content, *rewrite);
  }
  if (!mime) return sameForAll(job, config_.name, temporaryFailure(mime.error().message));

  http::Request req;
  req.method = "POST";
  req.url = config_.graph_endpoint + "/v1.0/users/" + oauth::percentEncode(sender) + "/sendMail";
  req.body = oauth::base64Encode(*mime);
  req.headers = {{"Content-Type", "text/plain"}};
  mime->clear();

  auto out = graph.call(std::move(req), "sendMail");
  if (auto* failure = std::get_if<RecipientResult>(&out)) return sameForAll(job, config_.name, *failure);
  const auto& resp = std::get<http::Response>(out);
  if (resp.status != 202) return sameForAll(job, config_.name, failureOf(resp, id, "sending as " + printable(sender)));
  const std::string request_id = resp.header("request-id").value_or("");
  RecipientResult r;
  r.outcome = Outcome::Delivered;
  r.smtp_code = 250;
  r.enhanced = "2.0.0";
  r.detail = "accepted by Graph as " + printable(sender) + (request_id.empty() ? "" : ", request-id " + request_id);
  DeliveryResult result = sameForAll(job, config_.name, r);
  result.remote_id = request_id;
  return result;
}

}  // namespace mb::delivery::graph
