#include "queue/envelope.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

namespace mb::queue {
namespace {

Envelope sampleEnvelope() {
  Envelope env;
  env.id = newQueueId();
  env.sender = "scanner@example.com";
  env.recipients.push_back({"alice@example.org", RecipientState::Pending, 0, "", ""});
  env.recipients.push_back({"bob@example.org", RecipientState::Delivered, 250, "2.0.0", ""});
  env.recipients.push_back({"carol@example.org", RecipientState::Failed, 550, "5.1.1", "no such user"});
  env.client_address = "192.0.2.7";
  env.helo = "printer \"lobby\"\r\n";
  env.auth_user = "printer";
  env.listener = "submission";
  env.arrival = 1'800'000'123;
  env.size = 123456789012ULL;
  env.attempts = 3;
  env.next_attempt = 1'800'000'999;
  env.last_error = "451 4.3.0 try later";
  env.route = "outbox";
  env.held = true;
  return env;
}

void expectEqual(const Envelope& a, const Envelope& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.sender, b.sender);
  EXPECT_EQ(a.recipients, b.recipients);
  EXPECT_EQ(a.client_address, b.client_address);
  EXPECT_EQ(a.helo, b.helo);
  EXPECT_EQ(a.auth_user, b.auth_user);
  EXPECT_EQ(a.listener, b.listener);
  EXPECT_EQ(a.arrival, b.arrival);
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(a.attempts, b.attempts);
  EXPECT_EQ(a.next_attempt, b.next_attempt);
  EXPECT_EQ(a.last_error, b.last_error);
  EXPECT_EQ(a.route, b.route);
  EXPECT_EQ(a.held, b.held);
  EXPECT_EQ(a.mailbox, b.mailbox);
}

// Seals a hand-made body the way the format says (BLAKE2b-128 of every byte
// before the end line), so that field validation is reached past the checksum.
std::string sealed(const std::string& json_line) {
  const std::string body = json_line + "\n";
  unsigned char digest[16];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(body.data()),
                     body.size(), nullptr, 0);
  char hex[33];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return body + "end " + hex + "\n";
}

nlohmann::json sampleJson() {
  const std::string text = serialize(sampleEnvelope());
  return nlohmann::json::parse(text.substr(0, text.find('\n')));
}

std::string parseError(const std::string& text) {
  auto r = parse(text);
  return r.ok() ? std::string("(ok)") : r.error().message;
}

TEST(EnvelopeTest, RoundTrip) {
  const Envelope env = sampleEnvelope();
  const std::string text = serialize(env);
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  expectEqual(env, *parsed);
  EXPECT_EQ(serialize(*parsed), text);
}

// The bytes on disk, pinned: relays of other versions read these files.
TEST(EnvelopeTest, SerializedBytesAreTheFormatsOwn) {
  const std::string line =
      R"({"arrival":1800000123,"attempts":3,"auth_user":"printer","client_address":"192.0.2.7",)"
      R"("held":true,"helo":"printer \"lobby\"\r\n","id":"4Kc9bQ2mXfZ7LpT1aB0d","last_error":"451 4.3.0 try later",)"
      R"("listener":"submission","next_attempt":1800000999,"recipients":[{"address":"alice@example.org",)"
      R"("enhanced":"","last_error":"","smtp_code":0,"state":"pending"},{"address":"bob@example.org",)"
      R"("enhanced":"2.0.0","last_error":"","smtp_code":250,"state":"delivered"},{"address":"carol@example.org",)"
      R"("enhanced":"5.1.1","last_error":"no such user","smtp_code":550,"state":"failed"}],"route":"outbox",)"
      R"("sender":"scanner@example.com","size":123456789012,"version":1})";
  Envelope env = sampleEnvelope();
  env.id = "4Kc9bQ2mXfZ7LpT1aB0d";
  EXPECT_EQ(serialize(env), sealed(line));
}

TEST(EnvelopeTest, FormatIsJsonThenEndLine) {
  const std::string text = serialize(sampleEnvelope());
  const auto nl = text.find('\n');
  ASSERT_NE(nl, std::string::npos);
  const auto obj = nlohmann::json::parse(text.substr(0, nl), nullptr, false);
  ASSERT_FALSE(obj.is_discarded());
  EXPECT_EQ(obj["version"], 1);
  EXPECT_EQ(obj["recipients"][1]["state"], "delivered");
  EXPECT_EQ(obj["recipients"][2]["state"], "failed");
  const std::string end = text.substr(nl + 1);
  ASSERT_EQ(end.size(), 4 + 32 + 1);
  EXPECT_EQ(end.substr(0, 4), "end ");
  EXPECT_EQ(end.back(), '\n');
}

TEST(EnvelopeTest, EmptyAndNullSenderRoundTrip) {
  Envelope env;
  env.id = newQueueId();
  auto parsed = parse(serialize(env));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  expectEqual(env, *parsed);
  EXPECT_TRUE(parsed->allRecipientsDone());
}

TEST(EnvelopeTest, MailboxIsOptional) {
  Envelope env = sampleEnvelope();
  EXPECT_EQ(serialize(env).find("\"mailbox\""), std::string::npos) << "not written when empty";
  EXPECT_EQ(env.sendingMailbox(), env.sender);
  env.mailbox = "floor2@example.com";
  auto parsed = parse(serialize(env));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  expectEqual(env, *parsed);
  EXPECT_EQ(parsed->sendingMailbox(), "floor2@example.com");
  auto j = sampleJson();
  j["mailbox"] = 7;
  EXPECT_NE(parseError(sealed(j.dump())).find("mailbox"), std::string::npos);
}

TEST(EnvelopeTest, InvalidUtf8DoesNotThrow) {
  Envelope env = sampleEnvelope();
  env.helo = std::string("bad\xff\xfe utf8");
  const std::string text = serialize(env);
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_NE(parsed->helo.find("bad"), std::string::npos);
}

TEST(EnvelopeTest, EveryTruncationFails) {
  const std::string text = serialize(sampleEnvelope());
  for (std::size_t n = 0; n < text.size(); ++n) {
    auto parsed = parse(std::string_view(text).substr(0, n));
    EXPECT_FALSE(parsed.ok()) << "truncated at " << n;
  }
}

TEST(EnvelopeTest, EveryFlippedByteFails) {
  const std::string text = serialize(sampleEnvelope());
  for (std::size_t i = 0; i < text.size(); ++i) {
    for (unsigned char mask : {0x01, 0x20, 0x80}) {
      std::string broken = text;
      broken[i] = static_cast<char>(static_cast<unsigned char>(broken[i]) ^ mask);
      EXPECT_FALSE(parse(broken).ok()) << "flipped byte " << i << " with mask " << int(mask);
    }
  }
}

TEST(EnvelopeTest, PreciseErrors) {
  const std::string text = serialize(sampleEnvelope());
  const auto msg = [](std::string_view t) {
    auto r = parse(t);
    return r.ok() ? std::string("(ok)") : r.error().message;
  };
  EXPECT_NE(msg("").find("no end line"), std::string::npos);
  EXPECT_NE(msg(text.substr(0, text.size() - 1)).find("incomplete"), std::string::npos);
  EXPECT_NE(msg(text + "x").find("1 trailing bytes"), std::string::npos);
  EXPECT_NE(msg(text + "end 00\n").find("trailing"), std::string::npos);

  std::string garbled = text;
  garbled[garbled.size() - 2] = 'Z';
  EXPECT_NE(msg(garbled).find("garbled"), std::string::npos);

  std::string mismatch = text;
  mismatch[mismatch.size() - 2] = mismatch[mismatch.size() - 2] == '0' ? '1' : '0';
  EXPECT_NE(msg(mismatch).find("checksum mismatch"), std::string::npos);

  std::string body_edit = text;
  const auto pos = body_edit.find("scanner");
  body_edit[pos] = 'S';
  EXPECT_NE(msg(body_edit).find("checksum mismatch"), std::string::npos);
}

TEST(EnvelopeTest, SealedSampleParses) {
  EXPECT_EQ(parseError(sealed(sampleJson().dump())), "(ok)");
}

TEST(EnvelopeTest, RejectsUnknownVersion) {
  auto j = sampleJson();
  j["version"] = 2;
  EXPECT_NE(parseError(sealed(j.dump())).find("unknown envelope version 2"), std::string::npos);
  j.erase("version");
  EXPECT_NE(parseError(sealed(j.dump())).find("no version"), std::string::npos);
  j["version"] = "1";
  EXPECT_NE(parseError(sealed(j.dump())).find("version is not an integer"), std::string::npos);
}

TEST(EnvelopeTest, RejectsNonObjectAndBadJson) {
  EXPECT_NE(parseError(sealed("[1,2]")).find("not a JSON object"), std::string::npos);
  EXPECT_NE(parseError(sealed("{\"version\":1,")).find("not valid JSON"), std::string::npos);
}

TEST(EnvelopeTest, RejectsMissingFields) {
  for (const char* key : {"id", "sender", "recipients", "client_address", "helo", "auth_user", "listener",
                          "arrival", "size", "attempts", "next_attempt", "last_error", "route"}) {
    auto j = sampleJson();
    j.erase(key);
    const std::string err = parseError(sealed(j.dump()));
    EXPECT_NE(err.find(std::string("field '") + key + "' is missing"), std::string::npos) << key << ": " << err;
  }
  for (const char* key : {"address", "state", "smtp_code", "enhanced", "last_error"}) {
    auto j = sampleJson();
    j["recipients"][1].erase(key);
    const std::string err = parseError(sealed(j.dump()));
    EXPECT_NE(err.find(std::string("field 'recipients[1].") + key + "' is missing"), std::string::npos)
        << key << ": " << err;
  }
}

TEST(EnvelopeTest, RejectsIllTypedFields) {
  const auto errFor = [](const char* key, nlohmann::json value) {
    auto j = sampleJson();
    j[key] = std::move(value);
    return parseError(sealed(j.dump()));
  };
  EXPECT_NE(errFor("sender", 5).find("'sender' must be a string"), std::string::npos);
  EXPECT_NE(errFor("arrival", "now").find("'arrival' must be an integer"), std::string::npos);
  EXPECT_NE(errFor("arrival", 1.5).find("'arrival' must be an integer"), std::string::npos);
  EXPECT_NE(errFor("size", -1).find("'size' must be a non-negative integer"), std::string::npos);
  EXPECT_NE(errFor("attempts", 1LL << 40).find("'attempts' must be an integer in range"), std::string::npos);
  EXPECT_NE(errFor("next_attempt", 18446744073709551615ULL).find("in range"), std::string::npos);
  EXPECT_NE(errFor("recipients", "x").find("'recipients' must be an array"), std::string::npos);
  EXPECT_NE(errFor("recipients", nlohmann::json::array({1})).find("recipients[0] must be an object"),
            std::string::npos);

  auto j = sampleJson();
  j["recipients"][2]["state"] = "bounced";
  EXPECT_NE(parseError(sealed(j.dump())).find("'recipients[2].state' has unknown value 'bounced'"),
            std::string::npos);
  j = sampleJson();
  j["recipients"][0]["smtp_code"] = "250";
  EXPECT_NE(parseError(sealed(j.dump())).find("'recipients[0].smtp_code' must be an integer"),
            std::string::npos);
}

TEST(EnvelopeTest, HeldIsOptionalAndTyped) {
  // Files written before `held` existed are not held.
  auto j = sampleJson();
  j.erase("held");
  auto parsed = parse(sealed(j.dump()));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_FALSE(parsed->held);
  j["held"] = "yes";
  EXPECT_NE(parseError(sealed(j.dump())).find("'held' must be true or false"), std::string::npos);
}

TEST(EnvelopeTest, RejectsInvalidQueueId) {
  for (const char* bad : {"", "short", "../../../etc/passwd0", "AAAAAAAAAAAAAAAAAAA-", "AAAAAAAAAAAAAAAAAAAAA"}) {
    auto j = sampleJson();
    j["id"] = bad;
    EXPECT_NE(parseError(sealed(j.dump())).find("not a valid queue id"), std::string::npos) << bad;
  }
}

TEST(EnvelopeTest, RecipientHelpers) {
  Envelope env = sampleEnvelope();
  EXPECT_FALSE(env.allRecipientsDone());
  EXPECT_EQ(env.pendingRecipients(), std::vector<std::size_t>{0});
  env.recipients[0].state = RecipientState::Delivered;
  EXPECT_TRUE(env.allRecipientsDone());
  EXPECT_TRUE(env.pendingRecipients().empty());
}

TEST(QueueIdTest, ShapeAndValidation) {
  const std::string id = newQueueId();
  EXPECT_EQ(id.size(), 20u);
  EXPECT_TRUE(isValidQueueId(id));
  EXPECT_FALSE(isValidQueueId(id.substr(1)));
  EXPECT_FALSE(isValidQueueId(id + "0"));
  EXPECT_FALSE(isValidQueueId("0000000000000000000."));
  EXPECT_FALSE(isValidQueueId("000000000000000000/0"));
  EXPECT_FALSE(isValidQueueId(std::string("000000000000000000\xc3\xa9")));
}

TEST(QueueIdTest, UniqueOver100kAndSortedByTime) {
  constexpr int kCount = 100'000;
  std::vector<std::string> ids;
  ids.reserve(kCount);
  for (int i = 0; i < kCount; ++i) ids.push_back(newQueueId());
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  std::set<std::string> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), ids.size());
  for (const auto& id : ids) ASSERT_TRUE(isValidQueueId(id)) << id;

  // Across a pause the time prefix alone orders them.
  const std::string before = newQueueId();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const std::string after = newQueueId();
  EXPECT_LT(before.substr(0, 9), after.substr(0, 9));
}

TEST(QueueIdTest, UniqueAcrossThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 10'000;
  std::vector<std::vector<std::string>> per(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&per, t] {
      for (int i = 0; i < kPerThread; ++i) per[static_cast<std::size_t>(t)].push_back(newQueueId());
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> all;
  for (const auto& v : per) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(QueueIdTest, TimePrefixMatchesClock) {
  // The first 9 characters are base62 microseconds: decode and compare with now.
  const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const std::string id = newQueueId();
  const std::string_view alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  long long t = 0;
  for (char c : id.substr(0, 9)) t = t * 62 + static_cast<long long>(alphabet.find(c));
  EXPECT_GE(t, now);
  EXPECT_LT(t - now, 10'000'000);  // within 10 s (earlier tests may have run ahead)
}

}  // namespace
}  // namespace mb::queue
