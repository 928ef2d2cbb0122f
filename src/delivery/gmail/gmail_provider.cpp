#include "delivery/gmail/gmail_provider.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

#include "base/durable_file.h"
#include "base/log.h"
#include "base/text.h"
#include "delivery/bearer_call.h"
#include "delivery/results.h"
#include "delivery/gmail/gmail_error.h"
#include "http/http_client.h"
#include "mime/recipient_rewrite.h"
#include "oauth/encoding.h"

namespace mb::delivery::gmail {
namespace {

using queue::DeliveryResult;
using queue::Outcome;
using queue::RecipientResult;
using json = nlohmann::json;

// Copies bytes [offset, offset + length) of `from` to `out`, in small
// pieces, reading nothing outside them.
bool copyRange(const std::filesystem::path& from, std::uint64_t offset, std::uint64_t length, std::ostream& out) {
  Status st = fs::streamFileRange(from, offset, length, [&out](std::string_view piece) -> Status {
    out.write(piece.data(), static_cast<std::streamsize>(piece.size()));
    if (!out) return Error{"write failed"};
    return {};
  });
  return st.ok() && static_cast<bool>(out);
}

// Removes a scratch file when the attempt ends.
struct ScratchFile {
  std::filesystem::path path;
  ~ScratchFile() {
    if (path.empty()) return;
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
};

}  // namespace

GmailProvider::GmailProvider(config::ProviderConfig config, http::HttpClient& http, TokenSelector tokens,
                             std::filesystem::path scratch_dir, const Clock& clock, std::size_t threads)
    : config_(std::move(config)),
      http_(http),
      tokens_(std::move(tokens)),
      scratch_dir_(std::move(scratch_dir)),
      clock_(clock),
      pool_(threads, WorkerPool::kUnbounded, "mb-gmail") {}

GmailProvider::~GmailProvider() { pool_.stop(); }

void GmailProvider::deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) {
  deliverOnPool(pool_, config_.name, job, std::move(done), [this](const queue::DeliveryJob& j) { return attempt(j); });
}

DeliveryResult GmailProvider::attempt(const queue::DeliveryJob& job) {
  const std::string& id = job.envelope.id;
  std::vector<std::string> recipients;
  for (std::size_t i : job.recipients) recipients.push_back(job.envelope.recipients.at(i).address);

  // The message is the first envelope.size bytes of the content file; the
  // spool may keep more after them, which must never be sent.
  const mime::ContentFile content{job.content, job.envelope.size};
  auto rewrite = mime::rewriteRecipients(content, recipients);
  if (!rewrite) {
    spdlog::error("{}: cannot read the message header for Gmail: {}", id, rewrite.error().message);
    return sameForAll(job, config_.name, temporaryFailure("cannot read the stored message: " + rewrite.error().message));
  }
  if (rewrite->changed) {
    spdlog::info("{}: header rewritten for Gmail: {} header address(es) not in the envelope removed, {} "
                 "envelope recipient(s) added as Bcc",
                 id, rewrite->removed.size(), rewrite->added_bcc.size());
  }
  const std::string& chosen = job.envelope.sendingMailbox();
  const std::string user = chosen.empty() ? rewrite->from_address : chosen;
  if (user.empty()) {
    return sameForAll(job, config_.name,
                    permanentFailure(550, "5.1.7", "no sender mailbox to send from",
                              "neither MAIL FROM nor a From header names a user to send as"));
  }

  const std::uint64_t body = content.size - rewrite->body_offset;
  const std::uint64_t size = rewrite->headers.size() + body;
  if (size > kMaxMessageBytes) {
    spdlog::error("{}: {} bytes is over the {} bytes the Gmail API sends", id, size, kMaxMessageBytes);
    return sameForAll(job, config_.name,
                    permanentFailure(552, "5.3.4", "message too big for the mail service",
                              "message of " + std::to_string(size) + " bytes is over Gmail's limit of " +
                                  std::to_string(kMaxMessageBytes) + " bytes"));
  }

  const auto tokens = tokens_(user);
  if (!tokens) return sameForAll(job, config_.name, temporaryFailure("no token source for " + printable(user)));
  BearerCaller gmail(http_, *tokens, id, config_.timeout, "Gmail");
  gmail.setTokenFailuresPermanent(true);

  const std::string user_path = "/gmail/v1/users/" + oauth::percentEncode(user) + "/messages/send";
  http::Request req;
  req.method = "POST";
  ScratchFile scratch;
  if (size <= kMaxRawBytes) {
    auto mime = mime::rewrittenMessage(content, *rewrite);
    if (!mime) return sameForAll(job, config_.name, temporaryFailure(mime.error().message));
    req.url = config_.api_endpoint + user_path;
    req.headers = {{"Content-Type", "application/json"}};
    req.body = json{{"raw", oauth::base64UrlEncode(*mime)}}.dump();
  } else {
    // A media upload streams from a file: the spool's own when the header
    // is unchanged, else a copy with the new header.
    req.url = config_.api_endpoint + "/upload" + user_path + "?uploadType=media";
    req.headers = {{"Content-Type", "message/rfc822"}};
    if (rewrite->changed) {
      scratch.path = scratch_dir_ / (id + "-gmail.eml");
      std::ofstream out(scratch.path, std::ios::binary | std::ios::trunc);
      out.write(rewrite->headers.data(), static_cast<std::streamsize>(rewrite->headers.size()));
      if (!copyRange(content.path, rewrite->body_offset, body, out) || !out.flush()) {
        return sameForAll(job, config_.name, temporaryFailure("cannot write a scratch copy of the message"));
      }
      req.body_file = scratch.path;
      req.body_length = size;
    } else {
      // The HTTP client sends body_length bytes and stops there.
      req.body_file = content.path;
      req.body_offset = 0;
      req.body_length = content.size;
    }
  }

  spdlog::debug("{}: Gmail send as {} ({} bytes, {})", id, printable(user), size,
                req.body_file.empty() ? "raw" : "media upload");
  auto out = gmail.call(std::move(req), "send");
  if (auto* failure = std::get_if<RecipientResult>(&out)) return sameForAll(job, config_.name, *failure);
  const auto& resp = std::get<http::Response>(out);
  if (resp.status != 200) {
    RecipientResult r = classify(parseGmailError(resp.status, resp.body), resp.retryAfter(), clock_.wallNow());
    spdlog::log(r.outcome == Outcome::PermanentFailure ? spdlog::level::err : spdlog::level::warn,
                "{}: Gmail refused sending as {}: {}", id, printable(user), r.detail);
    return sameForAll(job, config_.name, r);
  }
  const json j = json::parse(resp.body, nullptr, false);
  const std::string message_id = j.is_object() && j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>()
                                                                                          : std::string();
  RecipientResult r;
  r.outcome = Outcome::Delivered;
  r.smtp_code = 250;
  r.enhanced = "2.0.0";
  r.detail = "accepted by Gmail as " + printable(user) + (message_id.empty() ? "" : ", id " + printable(message_id));
  DeliveryResult result = sameForAll(job, config_.name, r);
  result.remote_id = printable(message_id, 64);
  return result;
}

}  // namespace mb::delivery::gmail
