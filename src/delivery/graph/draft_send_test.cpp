// The Graph provider's draft path: large messages and save_to_sent: false.
#include <gtest/gtest.h>
#include <sodium.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/testing/temp_dir.h"
#include "delivery/graph/draft_send.h"
#include "delivery/graph/graph_provider.h"
#include "delivery/testing/slurping_client.h"
#include "delivery/testing/stored_job.h"
#include "http/testing/fake_http_client.h"
#include "oauth/token_source.h"

namespace mb::delivery::graph {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using queue::Outcome;

using mb::delivery::testing::SlurpingClient;
using Tokens = mb::delivery::testing::FixedTokens;

std::string base64Lines(const std::string& data) {
  std::string out;
  for (std::size_t i = 0; i < data.size(); i += 57) {
    const std::string chunk = data.substr(i, 57);
    std::string enc(sodium_base64_encoded_len(chunk.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
    sodium_bin2base64(enc.data(), enc.size(), reinterpret_cast<const unsigned char*>(chunk.data()), chunk.size(),
                      sodium_base64_VARIANT_ORIGINAL);
    enc.resize(enc.size() - 1);
    out += enc + "\r\n";
  }
  return out;
}

std::string decode(const std::string& text) {
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  EXPECT_EQ(sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(),
                              "\r\n", &len, nullptr, sodium_base64_VARIANT_ORIGINAL),
            0);
  out.resize(len);
  return out;
}

std::string bytes(std::size_t n, unsigned seed) {
  std::string out(n, '\0');
  unsigned x = seed;
  for (auto& c : out) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 16);
  }
  return out;
}

struct Part {
  std::string name;
  std::string type;
  std::string data;
  std::string content_id;  // inline when set
};

std::string multipart(const std::vector<Part>& parts, const std::string& to = "alice@example.com") {
  std::string m = "From: Scanner <scanner@example.com>\r\nTo: " + to +
                  "\r\nSubject: scan\r\nMIME-Version: 1.0\r\n"
                  "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
                  "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour scan.\r\n";
  for (const auto& p : parts) {
    m += "--b1\r\nContent-Type: " + p.type + "; name=\"" + p.name + "\"\r\nContent-Transfer-Encoding: base64\r\n";
    if (p.content_id.empty()) {
      m += "Content-Disposition: attachment; filename=\"" + p.name + "\"\r\n\r\n";
    } else {
      m += "Content-Disposition: inline; filename=\"" + p.name + "\"\r\nContent-ID: <" + p.content_id + ">\r\n\r\n";
    }
    m += base64Lines(p.data);
  }
  return m + "--b1--\r\n";
}

std::string header(const http::Request& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

using mb::delivery::testing::kTrailer;

class DraftSendTest : public ::testing::Test {
 protected:
  DraftSendTest() {
    config_.name = "m365";
    config_.type = config::ProviderType::Graph;
    config_.graph_endpoint = "https://graph.test";
  }

  // Stored as the spool does it: the message, then a trailer (the
  // envelope) that must never be sent.
  queue::DeliveryJob job(const std::string& content, std::vector<std::string> rcpts,
                         const std::string& trailer = kTrailer) {
    return delivery::testing::storedJob(dir_.path(), ++n_, content, rcpts, "scanner@example.com", trailer);
  }

  queue::DeliveryResult run(const queue::DeliveryJob& j) {
    GraphProvider p(config_, client_, tokens_, scratch_.path(), 1);
    p.setUploadRetryDelay(0ms);
    return p.attempt(j);
  }

  void draftCreated(const std::string& id = "AAMk/x=") {
    http_.pushResponse(201, json{{"id", id}, {"isDraft", true}}.dump());
  }
  void sessionCreated() {
    http_.pushResponse(201, json{{"uploadUrl", "https://upload.test/api/v2.0/s?authtoken=up"},
                                 {"nextExpectedRanges", {"0-"}}}
                                .dump());
  }
  void chunkTaken(std::uint64_t next) {
    http_.pushResponse(200, json{{"nextExpectedRanges", {std::to_string(next)}}}.dump());
  }

  bool scratchEmpty() const { return std::filesystem::is_empty(scratch_.path()); }

  mb::testing::TempDir dir_;
  mb::testing::TempDir scratch_;
  int n_ = 0;
  config::ProviderConfig config_;
  http::testing::FakeHttpClient http_;
  SlurpingClient client_{http_};
  std::shared_ptr<Tokens> tokens_ = std::make_shared<Tokens>();
};

TEST_F(DraftSendTest, ALargeAttachmentGoesThroughAnUploadSessionInChunks) {
  const std::string pdf = bytes(5 * 1024 * 1024 + 7, 1);
  const std::string logo = bytes(10000, 2);
  const auto j = job(multipart({{"scan.pdf", "application/pdf", pdf, ""}, {"logo.png", "image/png", logo, "logo1"}}),
                     {"alice@example.com", "bob@example.com"});
  draftCreated();
  sessionCreated();
  chunkTaken(kUploadChunkBytes);
  http_.pushResponse(201, "", {{"Location", "https://upload.test/att"}});
  http_.pushResponse(202, "", {{"request-id", "rid-send"}});

  const auto result = run(j);
  ASSERT_EQ(result.results.size(), 2u);
  EXPECT_EQ(result.results[0].outcome, Outcome::Delivered) << result.results[0].detail;
  EXPECT_EQ(result.remote_id, "rid-send");
  const auto reqs = http_.requests();
  ASSERT_EQ(reqs.size(), 5u);

  // The draft: the skeleton as base64 MIME, the envelope in its header, the
  // small inline image kept, the PDF taken out.
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].url, "https://graph.test/v1.0/users/scanner%40example.com/messages");
  EXPECT_EQ(header(reqs[0], "Content-Type"), "text/plain");
  EXPECT_EQ(header(reqs[0], "Authorization"), "Bearer tok");
  const std::string skeleton = decode(reqs[0].body);
  EXPECT_LT(skeleton.size(), 100000u);
  EXPECT_NE(skeleton.find("Bcc: bob@example.com"), std::string::npos) << skeleton.substr(0, 600);
  EXPECT_NE(skeleton.find("Content-ID: <logo1>"), std::string::npos);
  EXPECT_EQ(skeleton.find("scan.pdf"), std::string::npos);

  // The upload session names the part as the message did.
  EXPECT_EQ(reqs[1].url, "https://graph.test/v1.0/users/scanner%40example.com/messages/AAMk%2Fx%3D/attachments/"
                         "createUploadSession");
  const json item = json::parse(reqs[1].body).at("AttachmentItem");
  EXPECT_EQ(item.at("attachmentType"), "file");
  EXPECT_EQ(item.at("name"), "scan.pdf");
  EXPECT_EQ(item.at("contentType"), "application/pdf");
  EXPECT_EQ(item.at("size"), pdf.size());
  EXPECT_EQ(item.at("isInline"), false);

  // Two PUTs to the upload URL, without the bearer token, in order.
  std::string uploaded;
  for (int i : {2, 3}) {
    EXPECT_EQ(reqs[i].method, "PUT");
    EXPECT_EQ(reqs[i].url, "https://upload.test/api/v2.0/s?authtoken=up");
    EXPECT_EQ(header(reqs[i], "Authorization"), "");
    EXPECT_EQ(header(reqs[i], "Content-Type"), "application/octet-stream");
    EXPECT_LE(reqs[i].body_length, 4u * 1024 * 1024);
    uploaded += reqs[i].body;
  }
  EXPECT_EQ(header(reqs[2], "Content-Range"), "bytes 0-3932159/5242887");
  EXPECT_EQ(header(reqs[3], "Content-Range"), "bytes 3932160-5242886/5242887");
  EXPECT_TRUE(uploaded == pdf) << "the decoded attachment, byte for byte";

  EXPECT_EQ(reqs[4].url, "https://graph.test/v1.0/users/scanner%40example.com/messages/AAMk%2Fx%3D/send");
  EXPECT_EQ(reqs[4].method, "POST");
  EXPECT_TRUE(reqs[4].body.empty());
  EXPECT_TRUE(scratchEmpty());
}

TEST_F(DraftSendTest, NothingPastTheMessageSizeIsUploaded) {
  // One large text part without a final line end or boundary: it runs to
  // the end of the message, and goes out as the attachment message.txt.
  std::string log;
  while (log.size() < 3 * 1024 * 1024 + 500 * 1024) log += std::string(76, 'l') + "\r\n";
  log += "last line";
  const std::string msg = "From: scanner@example.com\r\nTo: alice@example.com\r\nSubject: log\r\n"
                          "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + log;
  ASSERT_GT(msg.size(), kMaxMimeRequestBytes);
  ASSERT_LT(log.size(), kUploadChunkBytes);
  draftCreated("d5");
  sessionCreated();
  http_.pushResponse(201, "");
  http_.pushResponse(202, "");
  const auto result = run(job(msg, {"alice@example.com"}));
  EXPECT_EQ(result.results.at(0).outcome, Outcome::Delivered) << result.results.at(0).detail;
  const auto reqs = http_.requests();
  ASSERT_EQ(reqs.size(), 4u);
  const std::string skeleton = decode(reqs[0].body);
  EXPECT_EQ(skeleton.find("MUST-NOT-LEAK"), std::string::npos);
  const json item = json::parse(reqs[1].body).at("AttachmentItem");
  EXPECT_EQ(item.at("name"), "message.txt");
  EXPECT_EQ(item.at("size"), log.size());
  EXPECT_EQ(reqs[2].method, "PUT");
  EXPECT_EQ(header(reqs[2], "Content-Range"),
            "bytes 0-" + std::to_string(log.size() - 1) + "/" + std::to_string(log.size()));
  EXPECT_TRUE(reqs[2].body == log) << "the part ends where the message does";
  EXPECT_EQ(reqs[2].body.find("MUST-NOT-LEAK"), std::string::npos);
  EXPECT_TRUE(scratchEmpty());
}

TEST_F(DraftSendTest, TheUploadFollowsNextExpectedRanges) {
  const std::string pdf = bytes(4 * 1024 * 1024, 3);
  const auto j = job(multipart({{"a.bin", "application/octet-stream", pdf, ""}}), {"alice@example.com"});
  draftCreated();
  sessionCreated();
  chunkTaken(1000);  // the server kept only the first 1000 bytes
  chunkTaken(1000 + kUploadChunkBytes);
  http_.pushResponse(201, "");
  http_.pushResponse(202, "");
  const auto result = run(j);
  EXPECT_EQ(result.results[0].outcome, Outcome::Delivered) << result.results[0].detail;
  const auto reqs = http_.requests();
  ASSERT_EQ(reqs.size(), 6u);
  EXPECT_EQ(header(reqs[3], "Content-Range"), "bytes 1000-3933159/4194304");
  EXPECT_EQ(header(reqs[4], "Content-Range"), "bytes 3933160-4194303/4194304");
  EXPECT_TRUE(reqs[3].body == pdf.substr(1000, kUploadChunkBytes));
}

TEST_F(DraftSendTest, SmallPartsArePostedWhenTheSkeletonWouldBeTooBig) {
  // Four parts of 1 MB: none may use an upload session (under 3 MB), but
  // together they do not fit in one request.
  std::vector<Part> parts;
  for (int i = 0; i < 4; ++i) parts.push_back({"p" + std::to_string(i) + ".bin", "application/octet-stream",
                                               bytes(1024 * 1024 + static_cast<std::size_t>(i), 10u + i), ""});
  const auto j = job(multipart(parts), {"alice@example.com"});
  draftCreated("d1");
  http_.pushResponse(201, "{}");
  http_.pushResponse(201, "{}");
  http_.pushResponse(202, "");
  const auto result = run(j);
  EXPECT_EQ(result.results[0].outcome, Outcome::Delivered) << result.results[0].detail;
  const auto reqs = http_.requests();
  ASSERT_GE(reqs.size(), 3u);
  const std::string skeleton = decode(reqs[0].body);
  EXPECT_LE(reqs[0].body.size(), 4u * 1024 * 1024);
  std::size_t kept = 0;
  for (const auto& p : parts) kept += skeleton.find(p.name) != std::string::npos ? 1 : 0;
  std::size_t posted = 0;
  for (std::size_t i = 1; i + 1 < reqs.size(); ++i) {
    ASSERT_EQ(reqs[i].url, "https://graph.test/v1.0/users/scanner%40example.com/messages/d1/attachments");
    const json a = json::parse(reqs[i].body);
    EXPECT_EQ(a.at("@odata.type"), "#microsoft.graph.fileAttachment");
    const std::string name = a.at("name");
    const auto& part = parts.at(static_cast<std::size_t>(name[1] - '0'));
    EXPECT_TRUE(decode(a.at("contentBytes")) == part.data) << name;
    EXPECT_EQ(skeleton.find(name), std::string::npos) << name << " both kept and posted";
    ++posted;
  }
  EXPECT_EQ(kept + posted, parts.size());
  EXPECT_EQ(posted, 2u) << "only as many parts out as needed, the largest first";
  EXPECT_EQ(reqs.back().url, "https://graph.test/v1.0/users/scanner%40example.com/messages/d1/send");
}

TEST_F(DraftSendTest, SaveToSentFalseMarksTheDraftDeleteAfterSubmit) {
  config_.save_to_sent = false;
  const std::string msg = "From: scanner@example.com\r\nTo: alice@example.com\r\nSubject: x\r\n\r\nbody\r\n";
  draftCreated("d2");
  http_.pushResponse(200, "{}");
  http_.pushResponse(202, "");
  const auto result = run(job(msg, {"alice@example.com"}));
  EXPECT_EQ(result.results[0].outcome, Outcome::Delivered) << result.results[0].detail;
  const auto reqs = http_.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(decode(reqs[0].body), msg) << "a small message's bytes go into the draft as they are";
  EXPECT_EQ(reqs[1].method, "PATCH");
  EXPECT_EQ(reqs[1].url, "https://graph.test/v1.0/users/scanner%40example.com/messages/d2");
  EXPECT_EQ(json::parse(reqs[1].body),
            json::parse(R"({"singleValueExtendedProperties":[{"id":"Boolean 0x0E01","value":"true"}]})"));
  EXPECT_EQ(reqs[2].url, "https://graph.test/v1.0/users/scanner%40example.com/messages/d2/send");
}

TEST_F(DraftSendTest, AFailedUploadDeletesTheDraftAndTheScratchFile) {
  const auto j = job(multipart({{"a.bin", "application/octet-stream", bytes(3 * 1024 * 1024 + 1, 4), ""}}),
                     {"alice@example.com"});
  draftCreated("d3");
  sessionCreated();
  http_.pushResponse(400, R"({"error":{"code":"InvalidContentRange","message":"bad range"}})");
  http_.pushResponse(204, "");
  const auto result = run(j);
  EXPECT_NE(result.results[0].outcome, Outcome::Delivered);
  const auto reqs = http_.requests();
  ASSERT_EQ(reqs.size(), 4u);
  EXPECT_EQ(reqs[3].method, "DELETE");
  EXPECT_EQ(reqs[3].url, "https://graph.test/v1.0/users/scanner%40example.com/messages/d3");
  EXPECT_TRUE(scratchEmpty());
}

TEST_F(DraftSendTest, AChunkIsRepeatedAfterAServerError) {
  const std::string data = bytes(3 * 1024 * 1024 + 5, 5);
  const auto j = job(multipart({{"a.bin", "application/octet-stream", data, ""}}), {"alice@example.com"});
  draftCreated("d4");
  sessionCreated();
  http_.pushResponse(503, "");
  http_.push(http::TransportError{"connection reset", false});
  http_.pushResponse(201, "");
  http_.pushResponse(202, "");
  const auto result = run(j);
  EXPECT_EQ(result.results[0].outcome, Outcome::Delivered) << result.results[0].detail;
  const auto reqs = http_.requests();
  ASSERT_EQ(reqs.size(), 6u);
  for (int i : {2, 3, 4}) EXPECT_EQ(header(reqs[i], "Content-Range"), "bytes 0-3145732/3145733");
}

TEST_F(DraftSendTest, MissingMailReadWriteIsExplained) {
  const auto j = job(multipart({{"a.bin", "application/octet-stream", bytes(3 * 1024 * 1024 + 1, 6), ""}}),
                     {"alice@example.com"});
  http_.pushResponse(403, R"({"error":{"code":"ErrorAccessDenied","message":"Access is denied."}})");
  const auto result = run(j);
  EXPECT_EQ(result.results[0].outcome, Outcome::PermanentFailure);
  EXPECT_NE(result.results[0].detail.find("Mail.ReadWrite"), std::string::npos) << result.results[0].detail;
  EXPECT_EQ(http_.requestCount(), 1u) << "no draft, nothing to delete";
}

TEST_F(DraftSendTest, OverGraphsLimitFailsBeforeAnyRequest) {
  auto j = job("From: scanner@example.com\r\nTo: alice@example.com\r\n\r\n", {"alice@example.com"});
  std::filesystem::resize_file(j.content, kMaxGraphMessageBytes + 1);  // sparse
  j.envelope.size = kMaxGraphMessageBytes + 1;
  const auto result = run(j);
  EXPECT_EQ(result.results[0].outcome, Outcome::PermanentFailure);
  EXPECT_EQ(result.results[0].smtp_code, 552);
  EXPECT_EQ(http_.requestCount(), 0u);
}

}  // namespace
}  // namespace mb::delivery::graph
