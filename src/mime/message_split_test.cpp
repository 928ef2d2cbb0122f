#include "mime/message_split.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "base/testing/temp_dir.h"
#include "mime/gmime_support.h"

namespace mb::mime {
namespace {

using detail::GCharPtr;
using detail::GObjectPtr;

constexpr std::uint64_t kMin = 3 * 1024 * 1024;

// Bytes that look like a binary file, the same for every run: byte `i` of a
// payload can be recomputed without keeping the payload.
unsigned char patternByte(std::uint64_t i) {
  return static_cast<unsigned char>(((i * 2654435761u) >> 11) ^ (i >> 7));
}

std::string pattern(std::size_t size) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>(patternByte(i));
  return out;
}

// RFC 2045 §6.8 with 76-character lines, appended to `out` as CRLF lines.
void appendBase64(std::string& out, std::string_view data) {
  for (std::size_t at = 0; at < data.size(); at += 57) {
    const std::string_view chunk = data.substr(at, 57);
    const GCharPtr line(g_base64_encode(reinterpret_cast<const guchar*>(chunk.data()), chunk.size()));
    out += line.get();
    out += "\r\n";
  }
}

std::string base64(std::string_view data) {
  std::string out;
  appendBase64(out, data);
  return out;
}

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// What a reader of the skeleton finds: its leaf parts, as "type/subtype",
// and the text of its first text/plain part.
struct Reading {
  bool parsed = false;
  std::vector<std::string> types;
  std::string text;
};

void walk(GMimeObject* obj, Reading& r) {
  if (GMIME_IS_MULTIPART(obj)) {
    for (int i = 0; i < g_mime_multipart_get_count(GMIME_MULTIPART(obj)); ++i) {
      walk(g_mime_multipart_get_part(GMIME_MULTIPART(obj), i), r);
    }
    return;
  }
  const GCharPtr type(g_mime_content_type_get_mime_type(g_mime_object_get_content_type(obj)));
  r.types.emplace_back(type.get());
  if (GMIME_IS_TEXT_PART(obj) && r.text.empty() && r.types.back() == "text/plain") {
    const GCharPtr text(g_mime_text_part_get_text(GMIME_TEXT_PART(obj)));
    if (text) r.text = text.get();
  }
}

Reading read(const std::string& message) {
  detail::ensureGMime();
  Reading r;
  GObjectPtr<GMimeStream> stream(
      g_mime_stream_mem_new_with_buffer(message.data(), message.size()));
  GObjectPtr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
  GObjectPtr<GMimeMessage> parsed(g_mime_parser_construct_message(parser.get(), nullptr));
  if (!parsed || g_mime_message_get_mime_part(parsed.get()) == nullptr) return r;
  r.parsed = true;
  walk(g_mime_message_get_mime_part(parsed.get()), r);
  return r;
}

std::string part(std::string_view headers, std::string_view body) {
  return std::string(headers) + "\r\n" + std::string(body);
}

std::string multipart(std::string_view subtype, std::string_view boundary, const std::vector<std::string>& parts) {
  std::string out = "Content-Type: multipart/" + std::string(subtype) + "; boundary=\"" + std::string(boundary) +
                    "\"\r\n\r\n";
  for (const std::string& p : parts) out += "--" + std::string(boundary) + "\r\n" + p + "\r\n";
  out += "--" + std::string(boundary) + "--\r\n";
  return out;
}

const std::string kHead =
    "From: Scanner <scan@example.com>\r\n"
    "To: alice@example.com\r\n"
    "Subject: Scan 0042\r\n"
    "MIME-Version: 1.0\r\n";

const std::string kText = part("Content-Type: text/plain; charset=us-ascii\r\n", "Your scan is attached.\r\n");

std::string pdfPart(std::string_view data, std::string_view filename = "scan.pdf") {
  return part("Content-Type: application/pdf\r\n"
              "Content-Disposition: attachment; filename=\"" + std::string(filename) + "\"\r\n"
              "Content-Transfer-Encoding: base64\r\n",
              base64(data));
}

// What the spool keeps after the message in the same file (the envelope);
// only the first `size` bytes are the message.
const std::string kTrailer = "\n{\"trailer\":\"MUST-NOT-LEAK\"}\nMBENV";

class MessageSplitTest : public ::testing::Test {
 protected:
  // Stores `message` followed by `trailer`, as the spool does.
  ContentFile store(std::string_view message, std::string_view trailer = kTrailer) {
    const auto path = dir_.path() / ("msg-" + std::to_string(++count_) + ".eml");
    std::ofstream out(path, std::ios::binary);
    out.write(message.data(), static_cast<std::streamsize>(message.size()));
    out.write(trailer.data(), static_cast<std::streamsize>(trailer.size()));
    return {path, message.size()};
  }

  SplitPlan ok(const ContentFile& content, std::uint64_t min = kMin) {
    auto r = splitMessage(content, min);
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r) return {};
    EXPECT_EQ(r->skeleton.find("MUST-NOT-LEAK"), std::string::npos);
    return std::move(r).value();
  }

  std::string attachment(const ContentFile& content, std::size_t index, std::uint64_t min = kMin) {
    const auto out = dir_.path() / ("out-" + std::to_string(++count_));
    Status st = writeAttachment(content, index, min, out);
    EXPECT_TRUE(st.ok()) << st.error().message;
    std::string bytes = readFile(out);
    EXPECT_EQ(bytes.find("MUST-NOT-LEAK"), std::string::npos);
    return bytes;
  }

  mb::testing::TempDir dir_;
  int count_ = 0;
};

TEST_F(MessageSplitTest, LargePdfIsTakenOutOfMixed) {
  const std::string pdf = pattern(5 * 1024 * 1024);
  const auto path = store(kHead + multipart("mixed", "b1", {kText, pdfPart(pdf)}));
  const SplitPlan plan = ok(path);
  ASSERT_EQ(plan.attachments.size(), 1u);
  const AttachmentPart& a = plan.attachments[0];
  EXPECT_EQ(a.name, "scan.pdf");
  EXPECT_EQ(a.content_type, "application/pdf");
  EXPECT_EQ(a.content_id, "");
  EXPECT_FALSE(a.is_inline);
  EXPECT_EQ(a.size, pdf.size());

  EXPECT_LT(plan.skeleton.size(), 2048u);
  EXPECT_EQ(plan.skeleton.find("application/pdf"), std::string::npos);
  EXPECT_EQ(plan.skeleton.rfind(kHead, 0), 0u) << "headers stay first, as stored";
  const Reading r = read(plan.skeleton);
  ASSERT_TRUE(r.parsed);
  EXPECT_EQ(r.types, (std::vector<std::string>{"text/plain"}));
  EXPECT_EQ(r.text, "Your scan is attached.\r\n");

  EXPECT_TRUE(attachment(path, 0) == pdf);
}

TEST_F(MessageSplitTest, InlineImageInRelatedKeepsContentId) {
  const std::string png = pattern(40000);
  const std::string html = part("Content-Type: text/html; charset=utf-8\r\n",
                                "<p>Logo: <img src=\"cid:logo@example.com\"></p>\r\n");
  const std::string image = part(
      "Content-Type: image/png; name=\"logo.png\"\r\n"
      "Content-Disposition: inline\r\n"
      "Content-ID: <logo@example.com>\r\n"
      "Content-Transfer-Encoding: base64\r\n",
      base64(png));
  // No disposition, but a Content-ID inside multipart/related: inline too.
  const std::string bare = part(
      "Content-Type: image/gif\r\n"
      "Content-ID: <bare@example.com>\r\n"
      "Content-Transfer-Encoding: base64\r\n",
      base64(png));
  const auto path = store(kHead + multipart("related", "rel", {html, image, bare}));
  const SplitPlan plan = ok(path, 10000);
  ASSERT_EQ(plan.attachments.size(), 2u);
  EXPECT_EQ(plan.attachments[0].name, "logo.png");
  EXPECT_EQ(plan.attachments[0].content_type, "image/png");
  EXPECT_EQ(plan.attachments[0].content_id, "logo@example.com");
  EXPECT_TRUE(plan.attachments[0].is_inline);
  EXPECT_EQ(plan.attachments[0].size, png.size());
  EXPECT_EQ(plan.attachments[1].name, "attachment");
  EXPECT_EQ(plan.attachments[1].content_id, "bare@example.com");
  EXPECT_TRUE(plan.attachments[1].is_inline);
  const Reading r = read(plan.skeleton);
  EXPECT_EQ(r.types, (std::vector<std::string>{"text/html"}));
  EXPECT_EQ(attachment(path, 0, 10000), png);
}

TEST_F(MessageSplitTest, AttachmentWithContentIdButAttachmentDispositionIsNotInline) {
  const std::string data = pattern(20000);
  const std::string p = part(
      "Content-Type: application/octet-stream\r\n"
      "Content-Disposition: attachment; filename=data.bin\r\n"
      "Content-ID: <d@example.com>\r\n"
      "Content-Transfer-Encoding: base64\r\n",
      base64(data));
  const SplitPlan plan = ok(store(kHead + multipart("mixed", "b", {kText, p})), 10000);
  ASSERT_EQ(plan.attachments.size(), 1u);
  EXPECT_EQ(plan.attachments[0].content_id, "d@example.com");
  EXPECT_FALSE(plan.attachments[0].is_inline);
}

TEST_F(MessageSplitTest, FilenamesAreDecoded) {
  const std::string data = pattern(20000);
  // RFC 2231 §4 (charset, continuations) and RFC 2047 in a Content-Type name.
  const std::string rfc2231 = part(
      "Content-Type: application/pdf\r\n"
      "Content-Disposition: attachment;\r\n"
      " filename*0*=UTF-8''R%C3%A9sum%C3%A9%20;\r\n"
      " filename*1=\"final.pdf\"\r\n"
      "Content-Transfer-Encoding: base64\r\n",
      base64(data));
  const std::string rfc2047 = part(
      "Content-Type: application/pdf; name=\"=?UTF-8?B?w5xiZXJzaWNodC5wZGY=?=\"\r\n"
      "Content-Transfer-Encoding: base64\r\n",
      base64(data));
  const SplitPlan plan = ok(store(kHead + multipart("mixed", "b", {kText, rfc2231, rfc2047})), 10000);
  ASSERT_EQ(plan.attachments.size(), 2u);
  EXPECT_EQ(plan.attachments[0].name, "R\xC3\xA9sum\xC3\xA9 final.pdf");
  EXPECT_EQ(plan.attachments[1].name, "\xC3\x9c" "bersicht.pdf");
}

TEST_F(MessageSplitTest, SmallAttachmentStaysInSkeleton) {
  const std::string small = pattern(1000);
  const std::string big = pattern(50000);
  const auto path = store(kHead + multipart("mixed", "b", {kText, pdfPart(small, "small.pdf"), pdfPart(big, "big.pdf")}));
  const SplitPlan plan = ok(path, 10000);
  ASSERT_EQ(plan.attachments.size(), 1u);
  EXPECT_EQ(plan.attachments[0].name, "big.pdf");
  EXPECT_NE(plan.skeleton.find(base64(small)), std::string::npos);
  EXPECT_EQ(read(plan.skeleton).types, (std::vector<std::string>{"text/plain", "application/pdf"}));
  EXPECT_EQ(attachment(path, 0, 10000), big);
}

TEST_F(MessageSplitTest, ASmallSinglePartMessageIsItsOwnSkeleton) {
  const std::string msg = kHead + "Content-Type: text/plain\r\n\r\n" + std::string(20000, 'x') + "\r\nend\r\n";
  const SplitPlan plan = ok(store(msg), 30000);
  EXPECT_TRUE(plan.attachments.empty());
  EXPECT_EQ(plan.skeleton, msg);
}

TEST_F(MessageSplitTest, ALargeSinglePartBecomesAnAttachment) {
  // A script's big log as the whole message: it can only go as a file.
  const std::string log = std::string(20000, 'x') + "\r\nend\r\n";
  const std::string msg = kHead + "Content-Type: text/plain\r\n\r\n" + log;
  const auto path = store(msg);
  const SplitPlan plan = ok(path, 100);
  ASSERT_EQ(plan.attachments.size(), 1u);
  EXPECT_EQ(plan.attachments[0].name, "message.txt");
  EXPECT_EQ(plan.attachments[0].content_type, "text/plain");
  EXPECT_EQ(plan.attachments[0].size, log.size());
  EXPECT_EQ(read(plan.skeleton).types, (std::vector<std::string>{"text/plain"}));
  EXPECT_EQ(read(plan.skeleton).text, "");
  EXPECT_NE(plan.skeleton.find("Subject:"), std::string::npos) << "the message's header stays";
  EXPECT_EQ(attachment(path, 0, 100), log);

  // A bare PDF as the message.
  const std::string data = pattern(20000);
  const std::string pdf = kHead + "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                          base64(data);
  const auto pdf_path = store(pdf);
  const SplitPlan pdf_plan = ok(pdf_path, 100);
  ASSERT_EQ(pdf_plan.attachments.size(), 1u);
  EXPECT_EQ(pdf_plan.attachments[0].name, "attachment");
  EXPECT_EQ(pdf_plan.attachments[0].content_type, "application/pdf");
  EXPECT_EQ(attachment(pdf_path, 0, 100), data);
}

TEST_F(MessageSplitTest, AnAttachedMessageGoesWholeAsAnEmlFile) {
  const std::string inner = "From: a@example.com\r\nSubject: the original\r\n\r\n" + std::string(20000, 'o') + "\r\n";
  const std::string msg = kHead + multipart("mixed", "m", {kText, part("Content-Type: message/rfc822\r\n", inner)});
  const auto path = store(msg);
  const SplitPlan plan = ok(path, 1000);
  ASSERT_EQ(plan.attachments.size(), 1u);
  EXPECT_EQ(plan.attachments[0].name, "forwarded message.eml");
  EXPECT_EQ(plan.attachments[0].content_type, "message/rfc822");
  EXPECT_EQ(plan.attachments[0].size, inner.size());
  EXPECT_EQ(attachment(path, 0, 1000), inner);
  EXPECT_EQ(read(plan.skeleton).types, (std::vector<std::string>{"text/plain"}));
  // Below the threshold it stays in the skeleton.
  EXPECT_TRUE(ok(path, 100000).attachments.empty());
}

TEST_F(MessageSplitTest, NestedMultipartsInMessageOrder) {
  const std::string big_html = "<p>" + std::string(30000, 'h') + "</p>\r\n";
  const std::string alternative = multipart(
      "alternative", "alt",
      {kText, part("Content-Type: text/html\r\n", big_html)});
  const std::string a = pattern(20000);
  const std::string b = pattern(30000);
  const std::string c = pattern(25000);
  const std::string inner = multipart("mixed", "inner", {pdfPart(a, "a.pdf"), pdfPart(b, "b.pdf")});
  // A text/plain attachment is an attachment, not the message's text.
  const std::string log = part(
      "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=\"c.log\"\r\n"
      "Content-Transfer-Encoding: base64\r\n",
      base64(c));
  const auto path = store(kHead + multipart("mixed", "outer", {alternative, inner, log}));
  const SplitPlan plan = ok(path, 10000);
  ASSERT_EQ(plan.attachments.size(), 3u);
  EXPECT_EQ(plan.attachments[0].name, "a.pdf");
  EXPECT_EQ(plan.attachments[1].name, "b.pdf");
  EXPECT_EQ(plan.attachments[2].name, "c.log");
  EXPECT_EQ(plan.attachments[2].content_type, "text/plain");
  const Reading r = read(plan.skeleton);
  ASSERT_TRUE(r.parsed);
  // The emptied inner multipart keeps one empty text part (RFC 2046 §5.1.1).
  EXPECT_EQ(r.types, (std::vector<std::string>{"text/plain", "text/html", "text/plain"}));
  EXPECT_EQ(r.text, "Your scan is attached.\r\n");
  EXPECT_NE(plan.skeleton.find(big_html), std::string::npos);
  EXPECT_EQ(attachment(path, 0, 10000), a);
  EXPECT_EQ(attachment(path, 1, 10000), b);
  EXPECT_EQ(attachment(path, 2, 10000), c);
}

TEST_F(MessageSplitTest, QuotedPrintableAttachmentIsDecoded) {
  std::string decoded;
  std::string encoded;
  for (int i = 0; i < 2000; ++i) {
    decoded += "id=" + std::to_string(i) + ";caf\xC3\xA9\r\n";
    encoded += "id=3D" + std::to_string(i) + ";caf=C3=A9\r\n";
  }
  const std::string csv = part(
      "Content-Type: text/csv; charset=utf-8\r\n"
      "Content-Disposition: attachment; filename=report.csv\r\n"
      "Content-Transfer-Encoding: quoted-printable\r\n",
      encoded);
  const auto path = store(kHead + multipart("mixed", "b", {kText, csv}));
  const SplitPlan plan = ok(path, 10000);
  ASSERT_EQ(plan.attachments.size(), 1u);
  EXPECT_EQ(plan.attachments[0].content_type, "text/csv");
  EXPECT_EQ(plan.attachments[0].size, decoded.size());
  EXPECT_EQ(attachment(path, 0, 10000), decoded);
}

TEST_F(MessageSplitTest, DecodedSizeDecidesNotStoredSize) {
  // 12000 bytes stored, 9000 decoded: under a 10000-byte threshold.
  const SplitPlan plan = ok(store(kHead + multipart("mixed", "b", {kText, pdfPart(pattern(9000))})), 10000);
  EXPECT_TRUE(plan.attachments.empty());
}

TEST_F(MessageSplitTest, NothingPastTheSizeIsPartOfTheMessage) {
  // The closing boundary, then the trailer: read, it would be the epilogue.
  const std::string pdf = pattern(20000);
  const std::string closed = kHead + multipart("mixed", "b", {kText, pdfPart(pdf)});
  const SplitPlan with = ok(store(closed), 1000);
  const SplitPlan without = ok(store(closed, ""), 1000);
  EXPECT_EQ(with.skeleton, without.skeleton);
  ASSERT_EQ(with.attachments.size(), 1u);
  EXPECT_EQ(with.attachments[0].size, pdf.size());
  EXPECT_EQ(attachment(store(closed), 0, 1000), pdf);

  // No closing boundary: the last part runs to the end of the message.
  const std::string log = std::string(5000, 'l') + "\r\nlast line";
  const std::string open = kHead + "Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\n" + kText +
                           "\r\n--o\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
                           "filename=\"log.txt\"\r\n\r\n" + log;
  const ContentFile open_file = store(open);
  const SplitPlan open_plan = ok(open_file, 1000);
  ASSERT_EQ(open_plan.attachments.size(), 1u);
  EXPECT_EQ(open_plan.attachments[0].size, log.size());
  EXPECT_EQ(attachment(open_file, 0, 1000), log);
  EXPECT_EQ(ok(store(open, ""), 1000).skeleton, open_plan.skeleton);

  // A single part kept whole, and one taken out.
  const std::string single = kHead + "Content-Type: text/plain\r\n\r\nshort text, no final line end";
  EXPECT_EQ(ok(store(single), 100000).skeleton, single);
  const ContentFile single_file = store(single);
  ASSERT_EQ(ok(single_file, 10).attachments.size(), 1u);
  EXPECT_EQ(attachment(single_file, 0, 10), "short text, no final line end");
}

TEST_F(MessageSplitTest, AFileShorterThanTheSizeIsAnError) {
  ContentFile content = store(kHead + multipart("mixed", "b", {kText, pdfPart(pattern(20000))}), "");
  content.size += 1;
  auto plan = splitMessage(content, 1000);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.error().message.find("less than"), std::string::npos) << plan.error().message;
  EXPECT_FALSE(writeAttachment(content, 0, 1000, dir_.path() / "out").ok());
}

TEST_F(MessageSplitTest, Errors) {
  EXPECT_FALSE(splitMessage({dir_.path() / "missing.eml", 100}, kMin).ok());
  const auto path = store(kHead + multipart("mixed", "b", {kText, pdfPart(pattern(20000))}));
  EXPECT_FALSE(writeAttachment(path, 1, 10000, dir_.path() / "out").ok());
  EXPECT_FALSE(writeAttachment(path, 0, 10000, dir_.path() / "no-such-dir" / "out").ok());
}

// The peak resident size since the last resetPeakRss(), in kB (Linux:
// VmHWM, reset through clear_refs); -1 when the kernel does not say.
long peakRssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

bool resetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return out.good();
}

long currentRssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

TEST_F(MessageSplitTest, FortyMegabyteMessageIsStreamed) {
  constexpr std::uint64_t kSize = 40ull * 1024 * 1024;
  constexpr std::size_t kChunk = 57 * 1024;  // whole base64 lines per chunk
  const auto path = dir_.path() / "big.eml";
  {
    std::ofstream out(path, std::ios::binary);
    std::string head = kHead + "Content-Type: multipart/mixed; boundary=\"big\"\r\n\r\n--big\r\n" + kText +
                       "\r\n--big\r\nContent-Type: application/pdf\r\n"
                       "Content-Disposition: attachment; filename=\"big.pdf\"\r\n"
                       "Content-Transfer-Encoding: base64\r\n\r\n";
    out << head;
    std::string chunk(kChunk, '\0');
    std::string lines;
    for (std::uint64_t at = 0; at < kSize; at += kChunk) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, kSize - at));
      for (std::size_t i = 0; i < n; ++i) chunk[i] = static_cast<char>(patternByte(at + i));
      lines.clear();
      appendBase64(lines, std::string_view(chunk).substr(0, n));
      out << lines;
    }
    out << "\r\n--big--\r\n";
  }
  const ContentFile content{path, std::filesystem::file_size(path)};
  const bool peak_known = resetPeakRss();
  const long before = currentRssKb();
  const SplitPlan plan = ok(content);
  ASSERT_EQ(plan.attachments.size(), 1u);
  EXPECT_EQ(plan.attachments[0].size, kSize);
  EXPECT_LT(plan.skeleton.size(), 2048u);
  const auto out = dir_.path() / "big.pdf";
  ASSERT_TRUE(writeAttachment(content, 0, kMin, out).ok());
  // Neither call held the part: the peak grew by far less than its size.
  if (peak_known && before > 0) {
    EXPECT_LT(peakRssKb() - before, 16 * 1024);
  }
  EXPECT_EQ(std::filesystem::file_size(out), kSize);
  std::ifstream in(out, std::ios::binary);
  std::vector<char> buf(1 << 16);
  std::uint64_t at = 0;
  bool same = true;
  while (same && in.read(buf.data(), static_cast<std::streamsize>(buf.size())), in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount() && same; ++i) {
      same = static_cast<unsigned char>(buf[i]) == patternByte(at + static_cast<std::uint64_t>(i));
    }
    at += static_cast<std::uint64_t>(in.gcount());
    if (!same) break;
  }
  EXPECT_TRUE(same) << "first difference near byte " << at;
  EXPECT_EQ(at, kSize);
}

}  // namespace
}  // namespace mb::mime
