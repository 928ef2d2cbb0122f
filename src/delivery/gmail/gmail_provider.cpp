#include "delivery/gmail/gmail_provider.h"

#include <array>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

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

// Copies `length` bytes of `in` from `offset` to `out`, in small pieces.
bool copyRange(std::ifstream& in, std::uint64_t offset, std::uint64_t length, std::ostream& out) {
  in.seekg(static_cast<std::streamoff>(offset));
  std::array<char, 64 * 1024> buf{};
  while (length > 0 && in) {
    const auto n = static_cast<std::streamsize>(std::min<std::uint64_t>(buf.size(), length));
    in.read(buf.data(), n);
    if (in.gcount() != n) return false;
    out.write(buf.data(), n);
    length -= static_cast<std::uint64_t>(n);
  }
  return length == 0 && static_cast<bool>(out);
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

  auto rewrite = mime::rewriteRecipients(job.content, recipients);
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

  std::error_code ec;
  const std::uint64_t file_size = std::filesystem::file_size(job.content, ec);
  if (ec) return sameForAll(job, config_.name, temporaryFailure("cannot read the stored message: " + ec.message()));
  const std::uint64_t body = file_size - rewrite->body_offset;
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
  std::ifstream in(job.content, std::ios::binary);
  if (!in) return sameForAll(job, config_.name, temporaryFailure("cannot open the stored message"));
  if (size <= kMaxRawBytes) {
    auto mime = mime::rewrittenMessage(job.content, *rewrite);
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
      if (!copyRange(in, rewrite->body_offset, body, out) || !out.flush()) {
        return sameForAll(job, config_.name, temporaryFailure("cannot write a scratch copy of the message"));
      }
      req.body_file = scratch.path;
      req.body_length = size;
    } else {
      req.body_file = job.content;
      req.body_length = file_size;
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
