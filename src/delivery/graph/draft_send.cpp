#include "delivery/graph/draft_send.h"


#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "base/durable_file.h"
#include "base/log.h"
#include "base/text.h"
#include "delivery/bearer_call.h"
#include "delivery/graph/graph_error.h"
#include "mime/header_block.h"
#include "mime/message_split.h"
#include "mime/recipient_rewrite.h"
#include "oauth/encoding.h"

namespace mb::delivery::graph {
namespace {

using queue::Outcome;
using queue::RecipientResult;
using json = nlohmann::json;

// What a part of `decoded` bytes costs in a skeleton, estimated from above:
// base64 in lines of 76 plus CRLF, and room for its headers and boundary.
std::uint64_t keptCost(std::uint64_t decoded) { return (decoded + 56) / 57 * 78 + 512; }

// The split whose skeleton fits in one request, taking out as few parts as
// it can (the largest first): every part of 3 MB or more has to come out
// (only upload sessions take them); smaller ones only while the skeleton
// is too big. `threshold` is what splitMessage was given.
struct Plan {
  mime::SplitPlan split;
  std::uint64_t threshold = 0;
};

Result<Plan> planSplit(const mime::ContentFile& content, std::uint64_t budget) {
  // Everything that can come out, out: the smallest possible skeleton, and
  // the size of every part.
  auto all = mime::splitMessage(content, 0);
  if (!all) return all.error();
  std::vector<std::uint64_t> sizes;
  for (const auto& a : all->attachments) sizes.push_back(a.size);
  std::sort(sizes.begin(), sizes.end(), std::greater<>());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());

  std::vector<std::uint64_t> thresholds{mime::kGraphUploadSessionMin};
  for (auto s : sizes) {
    if (s < mime::kGraphUploadSessionMin && s > 0) thresholds.push_back(s);
  }
  for (std::uint64_t t : thresholds) {
    std::uint64_t kept = 0;
    for (const auto& a : all->attachments) {
      if (a.size < t) kept += keptCost(a.size);
    }
    if (all->skeleton.size() + kept > budget) continue;
    auto plan = mime::splitMessage(content, t);
    if (!plan) return plan.error();
    if (plan->skeleton.size() <= budget) return Plan{std::move(plan).value(), t};
  }
  return Plan{std::move(all).value(), 0};
}

// The first offset of an upload session's nextExpectedRanges ("4194304",
// "4194304-" or "4194304-8388607"); nullopt when there is none.
std::optional<std::uint64_t> nextExpected(const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  const auto it = j.find("nextExpectedRanges");
  if (it == j.end() || !it->is_array() || it->empty() || !(*it)[0].is_string()) return std::nullopt;
  const std::string range = (*it)[0].get<std::string>();
  std::uint64_t start = 0;
  const auto [end, ec] = std::from_chars(range.data(), range.data() + range.size(), start);
  if (ec != std::errc() || end == range.data()) return std::nullopt;
  return start;
}

class DraftSender {
 public:
  DraftSender(BearerCaller& graph, const DraftSend& send)
      : g_(graph),
        s_(send),
        id_(graph.queueId()),
        user_url_(send.graph_endpoint + "/v1.0/users/" + oauth::percentEncode(send.sender)),
        who_(printable(send.sender)) {}

  ~DraftSender() {
    std::error_code ec;
    for (const auto& f : scratch_) std::filesystem::remove(f, ec);
  }

  DraftOutcome run() {
    DraftOutcome out;
    auto failure = createDraft();
    if (!failure) failure = addAttachments();
    if (!failure && !s_.save_to_sent) failure = markDeleteAfterSubmit();
    if (!failure) failure = send(out.remote_id);
    if (failure) {
      if (!message_id_.empty() && !sent_maybe_) deleteDraft();
      out.result = std::move(*failure);
      return out;
    }
    out.result.outcome = Outcome::Delivered;
    out.result.smtp_code = 250;
    out.result.enhanced = "2.0.0";
    out.result.detail = "accepted by Graph as " + who_ + " through a draft with " +
                        std::to_string(plan_.split.attachments.size()) + " attachment(s) added" +
                        (out.remote_id.empty() ? "" : ", request-id " + out.remote_id);
    return out;
  }

 private:
  using Failure = std::optional<RecipientResult>;

  Failure createDraft() {
    const std::uint64_t size = s_.content.size;
    if (size > kMaxGraphMessageBytes) {
      spdlog::error("{}: {} bytes is over the {} bytes Graph sends", id_, size, kMaxGraphMessageBytes);
      return permanentFailure(552, "5.3.4", "message too big for the mail service",
                       "message of " + std::to_string(size) + " bytes is over Graph's limit of " +
                           std::to_string(kMaxGraphMessageBytes) + " bytes");
    }
    std::string skeleton;
    if (size <= kMaxMimeRequestBytes) {
      auto whole = fs::readFilePrefix(s_.content.path, size);
      if (!whole) return temporaryFailure("cannot read the stored message: " + whole.error().message);
      skeleton = std::move(whole).value();
    } else {
      auto plan = planSplit(s_.content, kMaxMimeRequestBytes);
      if (!plan) {
        spdlog::error("{}: cannot split the message for Graph's upload sessions: {}", id_, plan.error().message);
        return temporaryFailure("cannot split the stored message: " + plan.error().message);
      }
      plan_ = std::move(plan).value();
      if (plan_.split.skeleton.size() > kMaxMimeRequestBytes) {
        // A single part, a forwarded message (message/rfc822 stays whole) or
        // a text that is itself over the limit.
        spdlog::error("{}: the message's text and the parts Graph cannot take as attachments come to {} bytes, "
                      "over the {} bytes of one Graph request; it cannot be sent through Graph",
                      id_, plan_.split.skeleton.size(), kMaxMimeRequestBytes);
        return permanentFailure(552, "5.3.4", "message too big for the mail service",
                         "the message body without its attachments is " +
                             std::to_string(plan_.split.skeleton.size()) + " bytes, over the " +
                             std::to_string(kMaxMimeRequestBytes) + " bytes Graph takes in one request");
      }
      skeleton = std::move(plan_.split.skeleton);
      plan_.split.skeleton.clear();
      spdlog::info("{}: {} bytes: sending through a Graph draft, {} part(s) taken out as attachments", id_, size,
                   plan_.split.attachments.size());
    }

    auto block = mime::headerBlockOf(skeleton);
    if (!block) return temporaryFailure("cannot read the message header: " + block.error().message);
    auto rw = mime::rewriteRecipients(*block, s_.recipients);
    if (!rw) return temporaryFailure("cannot rewrite the message header: " + rw.error().message);
    std::string mime = rw->headers;
    mime.append(skeleton, rw->body_offset);
    skeleton.clear();
    skeleton.shrink_to_fit();

    http::Request req;
    req.method = "POST";
    req.url = user_url_ + "/messages";
    req.headers = {{"Content-Type", "text/plain"}};
    req.body = oauth::base64Encode(mime);
    mime.clear();
    mime.shrink_to_fit();
    auto out = g_.call(std::move(req), "create draft");
    if (auto* f = std::get_if<RecipientResult>(&out)) return *f;
    const auto& resp = std::get<http::Response>(out);
    if (resp.status != 201 && resp.status != 200) {
      return failureOf(resp, id_, "creating a draft as " + who_,
                       resp.status == 403 ? "creating a draft needs the application permission Mail.ReadWrite (used "
                                            "for messages over 3 MB and with save_to_sent: false), granted with "
                                            "admin consent"
                                          : "");
    }
    const json j = json::parse(resp.body, nullptr, false);
    if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || j["id"].get<std::string>().empty()) {
      spdlog::warn("{}: Graph created a draft but its answer has no id", id_);
      return temporaryFailure("Graph's answer to the draft has no id");
    }
    message_id_ = j["id"].get<std::string>();
    message_url_ = user_url_ + "/messages/" + oauth::percentEncode(message_id_);
    return std::nullopt;
  }

  Failure addAttachments() {
    for (std::size_t i = 0; i < plan_.split.attachments.size(); ++i) {
      const auto& part = plan_.split.attachments[i];
      const auto file = s_.scratch_dir / (id_ + "-part" + std::to_string(i));
      scratch_.push_back(file);
      if (Status st = mime::writeAttachment(s_.content, i, plan_.threshold, file); !st) {
        spdlog::error("{}: cannot decode attachment {} for the upload: {}", id_, i, st.error().message);
        return temporaryFailure("cannot decode an attachment: " + st.error().message);
      }
      Failure f = part.size < mime::kGraphUploadSessionMin ? postAttachment(part, file) : uploadAttachment(part, file);
      std::error_code ec;
      std::filesystem::remove(file, ec);
      if (f) return f;
    }
    return std::nullopt;
  }

  static json attachmentItem(const mime::AttachmentPart& part) {
    json item = {{"name", part.name}, {"contentType", part.content_type}, {"isInline", part.is_inline}};
    if (!part.content_id.empty()) item["contentId"] = part.content_id;
    return item;
  }

  Failure postAttachment(const mime::AttachmentPart& part, const std::filesystem::path& file) {
    auto bytes = fs::readFile(file);
    if (!bytes) return temporaryFailure("cannot read a decoded attachment: " + bytes.error().message);
    json body = attachmentItem(part);
    body["@odata.type"] = "#microsoft.graph.fileAttachment";
    body["contentBytes"] = oauth::base64Encode(*bytes);
    bytes->clear();
    bytes->shrink_to_fit();
    http::Request req;
    req.method = "POST";
    req.url = message_url_ + "/attachments";
    req.headers = {{"Content-Type", "application/json"}};
    req.body = body.dump();
    body = json();
    auto out = g_.call(std::move(req), "add attachment");
    if (auto* f = std::get_if<RecipientResult>(&out)) return *f;
    const auto& resp = std::get<http::Response>(out);
    if (resp.status != 201 && resp.status != 200) return failureOf(resp, id_, "adding an attachment");
    return std::nullopt;
  }

  Failure uploadAttachment(const mime::AttachmentPart& part, const std::filesystem::path& file) {
    json item = attachmentItem(part);
    item["attachmentType"] = "file";
    item["size"] = part.size;
    http::Request req;
    req.method = "POST";
    req.url = message_url_ + "/attachments/createUploadSession";
    req.headers = {{"Content-Type", "application/json"}};
    req.body = json{{"AttachmentItem", item}}.dump();
    auto out = g_.call(std::move(req), "create upload session");
    if (auto* f = std::get_if<RecipientResult>(&out)) return *f;
    const auto& resp = std::get<http::Response>(out);
    if (resp.status != 201 && resp.status != 200) return failureOf(resp, id_, "creating an upload session");
    const json j = json::parse(resp.body, nullptr, false);
    std::string url;
    if (j.is_object() && j.contains("uploadUrl") && j["uploadUrl"].is_string()) url = j["uploadUrl"].get<std::string>();
    if (!url.starts_with("https://") && !url.starts_with("http://")) {
      spdlog::warn("{}: Graph's upload session has no usable uploadUrl", id_);
      return temporaryFailure("Graph's upload session has no upload URL");
    }
    spdlog::debug("{}: uploading {} ({} bytes) in chunks of {}", id_, printable(part.name), part.size,
                  kUploadChunkBytes);

    std::uint64_t offset = 0;
    while (offset < part.size) {
      const std::uint64_t length = std::min(kUploadChunkBytes, part.size - offset);
      http::Request put;
      put.method = "PUT";
      put.url = url;  // holds its own credential: no Authorization header
      put.headers = {{"Content-Type", "application/octet-stream"},
                     {"Content-Range", "bytes " + std::to_string(offset) + "-" + std::to_string(offset + length - 1) +
                                           "/" + std::to_string(part.size)}};
      put.body_file = file;
      put.body_offset = offset;
      put.body_length = length;
      auto done = putChunk(put);
      if (auto* f = std::get_if<RecipientResult>(&done)) return *f;
      const auto& r = std::get<http::Response>(done);
      if (r.status == 201) {
        if (offset + length != part.size) {
          spdlog::warn("{}: Graph completed the upload at byte {} of {}", id_, offset + length, part.size);
        }
        return std::nullopt;
      }
      const auto next = nextExpected(r.body);
      if (!next || *next <= offset || *next > part.size) {
        spdlog::warn("{}: the upload session expects bytes from {} after {} of {}", id_,
                     next ? std::to_string(*next) : std::string("(nothing)"), offset + length, part.size);
        return temporaryFailure("Graph's upload session lost its place");
      }
      offset = *next;
    }
    spdlog::warn("{}: Graph did not complete the upload of {} bytes", id_, part.size);
    return temporaryFailure("Graph did not complete an attachment upload");
  }

  // One chunk, repeated (twice at most) after a transport error, a 5xx or a
  // 429: on a large message, losing all that was uploaded is costly. 200 and
  // 201 come back as responses; anything else as the failure to report.
  CallOutcome putChunk(const http::Request& put) {
    for (int attempt = 1;; ++attempt) {
      auto out = g_.upload(put);
      const auto* resp = std::get_if<http::Response>(&out);
      if (resp != nullptr && (resp->status == 200 || resp->status == 201)) return out;
      const bool retryable = resp == nullptr || resp->status == 429 || resp->status >= 500;
      std::chrono::milliseconds delay = s_.upload_retry_delay * attempt;
      if (resp != nullptr) {
        if (auto wait = resp->retryAfter()) delay = std::max<std::chrono::milliseconds>(delay, *wait);
      }
      if (!retryable || attempt == 3 || delay > std::chrono::seconds(30)) {
        if (resp != nullptr) return failureOf(*resp, id_, "an attachment upload");
        return out;
      }
      spdlog::info("{}: repeating an upload chunk in {} ms", id_, delay.count());
      std::this_thread::sleep_for(delay);
    }
  }

  Failure markDeleteAfterSubmit() {
    http::Request req;
    req.method = "PATCH";
    req.url = message_url_;
    req.headers = {{"Content-Type", "application/json"}};
    req.body = json{{"singleValueExtendedProperties", json::array({{{"id", "Boolean 0x0E01"}, {"value", "true"}}})}}
                   .dump();
    auto out = g_.call(std::move(req), "mark draft delete-after-submit");
    if (auto* f = std::get_if<RecipientResult>(&out)) return *f;
    const auto& resp = std::get<http::Response>(out);
    if (resp.status != 200 && resp.status != 204) return failureOf(resp, id_, "marking the draft not to be kept");
    return std::nullopt;
  }

  Failure send(std::string& remote_id) {
    http::Request req;
    req.method = "POST";
    req.url = message_url_ + "/send";
    auto out = g_.call(std::move(req), "send draft");
    if (auto* f = std::get_if<RecipientResult>(&out)) {
      // A send that timed out may have gone out, the draft moved to Sent
      // Items; deleting by its id is then not safe.
      sent_maybe_ = f->enhanced == "4.4.2";
      if (sent_maybe_) spdlog::warn("{}: the draft may have been sent; it is left in place", id_);
      return *f;
    }
    const auto& resp = std::get<http::Response>(out);
    if (resp.status != 202) return failureOf(resp, id_, "sending the draft as " + who_);
    remote_id = resp.header("request-id").value_or("");
    return std::nullopt;
  }

  void deleteDraft() {
    http::Request req;
    req.method = "DELETE";
    req.url = message_url_;
    auto out = g_.call(std::move(req), "delete draft");
    const auto* resp = std::get_if<http::Response>(&out);
    if (resp != nullptr && (resp->status == 204 || resp->status == 200 || resp->status == 404)) {
      spdlog::info("{}: draft deleted after the failure", id_);
    } else {
      spdlog::warn("{}: could not delete the unsent draft in {}'s Drafts folder", id_, who_);
    }
  }

  BearerCaller& g_;
  const DraftSend& s_;
  const std::string& id_;
  const std::string user_url_;
  const std::string who_;
  Plan plan_;
  std::string message_id_;
  std::string message_url_;
  bool sent_maybe_ = false;
  std::vector<std::filesystem::path> scratch_;
};

}  // namespace

DraftOutcome sendThroughDraft(BearerCaller& graph, const DraftSend& send) { return DraftSender(graph, send).run(); }

}  // namespace mb::delivery::graph
