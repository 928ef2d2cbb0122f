#include "delivery/graph/graph_provider.h"

#include <algorithm>
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
#include "oauth/token_source.h"
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

GraphProvider::~GraphProvider() {
  // Requests sent without a worker finish first: their completions may still
  // hand work to the pool.
  {
    std::unique_lock lock(started_mutex_);
    started_done_.wait(lock, [this] { return started_ == 0; });
  }
  completions_.stop();
  pool_.stop();
}

void GraphProvider::deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) {
  if (job.envelope.size <= kMaxStartedBytes && config_.save_to_sent) {
    if (std::shared_ptr<oauth::TokenSource> tokens = tokens_(job.envelope)) {
      if (std::optional<oauth::AccessToken> token = tokens->cached()) {
        Plan plan = prepare(job, tokens);
        if (auto* result = std::get_if<DeliveryResult>(&plan)) {
          finishOn(pool_, std::move(done), std::move(*result));
          return;
        }
        auto& ready = std::get<Prepared>(plan);
        if (ready.send_mail) {
          startSendMail(job, std::move(ready), token->value, std::move(done));
          return;
        }
      }
    }
  }
  toPool(job, std::move(done));
}

void GraphProvider::toPool(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done, bool token_refused,
                           bool connection_lost) {
  deliverOnPool(pool_, config_.name, job, std::move(done), [this, token_refused, connection_lost](const queue::DeliveryJob& j) {
    return attempt(j, token_refused, connection_lost);
  });
}

void GraphProvider::startSendMail(const queue::DeliveryJob& job, Prepared ready, const std::string& token,
                                  queue::DeliveryAgent::DoneCallback done) {
  http::Request req = std::move(*ready.send_mail);
  req.timeout = config_.timeout;
  const std::string client_request_id = addBearerHeaders(req, token, job.envelope.id);
  spdlog::debug("{}: Graph sendMail (client-request-id {})", job.envelope.id, client_request_id);
  {
    std::lock_guard lock(started_mutex_);
    ++started_;
  }
  auto finish = [this, job, ready = std::move(ready), token, done = std::move(done)](http::Outcome out) mutable {
    onSendMailDone(job, ready, token, std::move(out), std::move(done));
    std::lock_guard lock(started_mutex_);
    if (--started_ == 0) started_done_.notify_all();
  };
  http_.start(std::move(req), std::move(finish));
}

void GraphProvider::onSendMailDone(const queue::DeliveryJob& job, const Prepared& ready, const std::string& token,
                                   http::Outcome out, queue::DeliveryAgent::DoneCallback done) {
  const std::string& id = job.envelope.id;
  const auto* err = std::get_if<http::TransportError>(&out);
  const auto* resp = std::get_if<http::Response>(&out);
  // What BearerCaller does with a second request — a new token after a 401,
  // a new connection after a broken one — takes blocking calls: the whole
  // attempt is done again on a worker, which has them.
  if ((err != nullptr && err->connection_lost) || (resp != nullptr && resp->status == 401)) {
    if (resp != nullptr) {
      spdlog::info("{}: Graph refused the access token (401); fetching a new one for sendMail", id);
      ready.tokens->invalidate(token);
    } else {
      spdlog::info("{}: Graph sendMail: the connection broke ({}); sending once more", id, err->message);
    }
    toPool(job, std::move(done), resp != nullptr, err != nullptr);
    return;
  }
  if (resp != nullptr && dropsToken(*resp)) ready.tokens->invalidate(token);
  DeliveryResult result =
      err != nullptr ? sameForAll(job, config_.name, transportFailure(*err, id, "Graph", "sendMail"))
                     : sendMailResult(job, *resp, ready.sender);
  // Here is the HTTP client's thread, which must not be held up: what is
  // left is handed on. A message whose every recipient was pending and is
  // now delivered is only removed from the queue (two unlinks), which the
  // provider's one completion thread does in order, without waking a
  // worker per message. Anything else may write the spool and store a
  // bounce, with fsyncs, so it goes to a worker.
  const bool all_delivered =
      job.recipients.size() == job.envelope.recipients.size() &&
      std::all_of(result.results.begin(), result.results.end(),
                  [](const RecipientResult& r) { return r.outcome == Outcome::Delivered; });
  finishOn(all_delivered ? completions_ : pool_, std::move(done), std::move(result));
}

void GraphProvider::finishOn(WorkerPool& pool, queue::DeliveryAgent::DoneCallback done, DeliveryResult result) {
  auto shared_done = std::make_shared<queue::DeliveryAgent::DoneCallback>(std::move(done));
  auto shared_result = std::make_shared<DeliveryResult>(std::move(result));
  // A pool that no longer takes work is stopping: its caller waits anyway.
  if (!pool.submit([shared_done, shared_result] { (*shared_done)(std::move(*shared_result)); })) {
    (*shared_done)(std::move(*shared_result));
  }
}

GraphProvider::Plan GraphProvider::prepare(const queue::DeliveryJob& job,
                                           const std::shared_ptr<oauth::TokenSource>& tokens) {
  const std::string& id = job.envelope.id;
  Prepared ready;
  for (std::size_t i : job.recipients) ready.recipients.push_back(job.envelope.recipients.at(i).address);

  // The message is the first envelope.size bytes of the content file; the
  // spool may keep more after them, which must never be sent.
  ready.content = mime::ContentFile{job.content, job.envelope.size};
  const mime::ContentFile& content = ready.content;
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
    rewrite = block ? mime::rewriteRecipients(*block, ready.recipients)
                    : Result<mime::RecipientRewrite>(block.error());
  } else {
    rewrite = mime::rewriteRecipients(content, ready.recipients);
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
  ready.sender = chosen.empty() ? rewrite->from_address : chosen;
  if (ready.sender.empty()) {
    return sameForAll(job, config_.name,
                      permanentFailure(550, "5.1.7", "no sender mailbox to send from",
                                       "neither MAIL FROM nor a From header names a mailbox to send as"));
  }

  const std::uint64_t size = rewrite->headers.size() + (content.size - rewrite->body_offset);
  if (!tokens) {
    spdlog::error("{}: provider {} sends only for users signed in with SMTP AUTH (auth_mode user_password), "
                  "and this message came without one",
                  id, config_.name);
    return sameForAll(job, config_.name,
                      permanentFailure(550, "5.7.1", "sender not signed in",
                                       "no SMTP AUTH user to send for (auth_mode user_password)"));
  }
  ready.tokens = tokens;
  if (size > kMaxSendMailBytes || !config_.save_to_sent) return ready;  // through a draft

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
  req.url = config_.graph_endpoint + "/v1.0/users/" + oauth::percentEncode(ready.sender) + "/sendMail";
  req.body = oauth::base64Encode(*mime);
  req.headers = {{"Content-Type", "text/plain"}};
  ready.send_mail = std::move(req);
  return ready;
}

DeliveryResult GraphProvider::sendMailResult(const queue::DeliveryJob& job, const http::Response& resp,
                                             const std::string& sender) const {
  if (resp.status != 202) {
    return sameForAll(job, config_.name, failureOf(resp, job.envelope.id, "sending as " + printable(sender)));
  }
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

DeliveryResult GraphProvider::attempt(const queue::DeliveryJob& job) { return attempt(job, false, false); }

DeliveryResult GraphProvider::attempt(const queue::DeliveryJob& job, bool token_refused, bool connection_lost) {
  Plan plan = prepare(job, tokens_(job.envelope));
  if (auto* result = std::get_if<DeliveryResult>(&plan)) return std::move(*result);
  auto& ready = std::get<Prepared>(plan);
  BearerCaller graph(http_, *ready.tokens, job.envelope.id, config_.timeout, "Graph", dropsToken);
  graph.retriesSpent(token_refused, connection_lost);

  if (!ready.send_mail) {
    DraftSend send;
    send.content = ready.content;
    send.recipients = ready.recipients;
    send.sender = ready.sender;
    send.graph_endpoint = config_.graph_endpoint;
    send.save_to_sent = config_.save_to_sent;
    send.scratch_dir = scratch_dir_;
    send.upload_retry_delay = upload_retry_delay_;
    DraftOutcome out = sendThroughDraft(graph, send);
    DeliveryResult result = sameForAll(job, config_.name, out.result);
    result.remote_id = out.remote_id;
    return result;
  }

  auto out = graph.call(std::move(*ready.send_mail), "sendMail");
  if (auto* failure = std::get_if<RecipientResult>(&out)) return sameForAll(job, config_.name, *failure);
  return sendMailResult(job, std::get<http::Response>(out), ready.sender);
}

}  // namespace mb::delivery::graph
