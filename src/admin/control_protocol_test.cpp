#include "admin/control_protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace mb::admin {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kIdA = "0123456789ABCDEFGHIJ";
constexpr const char* kIdB = "0123456789abcdefghij";

// A message with one recipient in each state, deferred until an hour after
// its arrival.
queue::QueueItem sampleItem(const std::string& id) {
  queue::QueueItem item;
  item.id = id;
  item.sender = "scanner@example.com";
  item.recipients = {
      {"alice@example.com", queue::RecipientState::Pending, 451, "4.4.1", "cannot write"},
      {"bob@example.com", queue::RecipientState::Delivered, 250, "2.0.0", ""},
      {"carol@example.com", queue::RecipientState::Failed, 550, "5.1.1", "no such user"},
  };
  item.arrival = 1700000000;
  item.size = 1234;
  item.attempts = 2;
  item.next_attempt = 1700003600;
  item.last_error = "451 4.4.1 outbox: cannot write";
  item.route = "outbox";
  return item;
}

// QueueControl over a map, recording the calls it gets.
class FakeQueueControl final : public queue::QueueControl {
 public:
  std::map<std::string, queue::QueueItem> items;
  std::vector<std::string> calls;
  std::size_t retry_all_count = 0;
  std::optional<Error> fail_all;  // every call fails with this
  bool throw_on_call = false;

  Result<std::vector<queue::QueueItem>> list() override {
    if (auto e = enter("list")) return *e;
    std::vector<queue::QueueItem> out;
    for (const auto& [id, item] : items) out.push_back(item);
    return out;
  }
  Result<queue::QueueItem> show(const std::string& id) override {
    if (auto e = enter("show " + id)) return *e;
    auto it = items.find(id);
    if (it == items.end()) return unknown(id);
    return it->second;
  }
  Status retry(const std::string& id) override {
    if (auto e = enter("retry " + id)) return *e;
    if (items.count(id) == 0) return unknown(id);
    return {};
  }
  Result<std::size_t> retryAll() override {
    if (auto e = enter("retryAll")) return *e;
    return retry_all_count;
  }
  Status hold(const std::string& id) override { return setHeld("hold ", id, true); }
  Status release(const std::string& id) override { return setHeld("release ", id, false); }
  Status remove(const std::string& id) override {
    if (auto e = enter("remove " + id)) return *e;
    if (items.erase(id) == 0) return unknown(id);
    return {};
  }

 private:
  std::optional<Error> enter(std::string call) {
    calls.push_back(std::move(call));
    if (throw_on_call) throw std::runtime_error("fake failure");
    return fail_all;
  }
  static Error unknown(const std::string& id) {
    return Error{"no message " + id + " in the queue"};
  }
  Status setHeld(const char* what, const std::string& id, bool held) {
    if (auto e = enter(what + id)) return *e;
    auto it = items.find(id);
    if (it == items.end()) return unknown(id);
    it->second.held = held;
    return {};
  }
};

nlohmann::json parsed(const std::string& line) {
  return nlohmann::json::parse(line);
}

void expectSameItem(const queue::QueueItem& a, const queue::QueueItem& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.sender, b.sender);
  EXPECT_EQ(a.arrival, b.arrival);
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(a.attempts, b.attempts);
  EXPECT_EQ(a.next_attempt, b.next_attempt);
  EXPECT_EQ(a.last_error, b.last_error);
  EXPECT_EQ(a.route, b.route);
  EXPECT_EQ(a.held, b.held);
  EXPECT_EQ(a.in_flight, b.in_flight);
  EXPECT_EQ(a.recipients, b.recipients);
}

// The error of a reply that must say no.
std::string errorOf(const std::string& reply) {
  auto r = parseReply(reply);
  EXPECT_TRUE(r.ok()) << reply;
  if (!r) return {};
  EXPECT_FALSE(r->ok) << reply;
  return r->error;
}

class ControlProtocolTest : public ::testing::Test {
 protected:
  ControlProtocolTest() {
    queue_.items[kIdA] = sampleItem(kIdA);
    auto b = sampleItem(kIdB);
    b.sender = "";
    b.held = true;
    queue_.items[kIdB] = b;
  }

  Reply ask(const std::string& line) {
    const std::string reply = handleRequest(line, queue_);
    auto r = parseReply(reply);
    EXPECT_TRUE(r.ok()) << reply << ": " << (r ? "" : r.error().message);
    return r ? std::move(r).value() : Reply{};
  }

  FakeQueueControl queue_;
};

// ---- every command, through makeRequest → handleRequest → parseReply ------

TEST_F(ControlProtocolTest, ListReturnsEveryItem) {
  const Reply r = ask(makeRequest(Command::List));
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(r.messages.size(), 2u);
  expectSameItem(r.messages[0], queue_.items[kIdA]);
  expectSameItem(r.messages[1], queue_.items[kIdB]);
  EXPECT_THAT(queue_.calls, ElementsAre("list"));
}

TEST_F(ControlProtocolTest, ListOfAnEmptyQueue) {
  queue_.items.clear();
  const std::string reply = handleRequest(makeRequest(Command::List), queue_);
  EXPECT_EQ(reply, R"({"ok":true,"messages":[]})");
}

TEST_F(ControlProtocolTest, ItemJsonHasTheDocumentedFields) {
  const auto j = parsed(handleRequest(makeRequest(Command::Show, kIdA), queue_));
  ASSERT_TRUE(j.at("ok").get<bool>());
  const auto& m = j.at("message");
  EXPECT_EQ(m.at("id"), kIdA);
  EXPECT_EQ(m.at("sender"), "scanner@example.com");
  EXPECT_EQ(m.at("arrival"), 1700000000);
  EXPECT_EQ(m.at("size"), 1234);
  EXPECT_EQ(m.at("attempts"), 2);
  EXPECT_EQ(m.at("next_attempt"), 1700003600);
  EXPECT_EQ(m.at("last_error"), "451 4.4.1 outbox: cannot write");
  EXPECT_EQ(m.at("route"), "outbox");
  EXPECT_EQ(m.at("held"), false);
  EXPECT_EQ(m.at("in_flight"), false);
  ASSERT_EQ(m.at("recipients").size(), 3u);
  const auto& r0 = m.at("recipients")[0];
  EXPECT_EQ(r0.at("address"), "alice@example.com");
  EXPECT_EQ(r0.at("state"), "pending");
  EXPECT_EQ(r0.at("smtp_code"), 451);
  EXPECT_EQ(r0.at("enhanced"), "4.4.1");
  EXPECT_EQ(r0.at("last_error"), "cannot write");
  EXPECT_EQ(m.at("recipients")[1].at("state"), "delivered");
  EXPECT_EQ(m.at("recipients")[2].at("state"), "failed");
}

TEST_F(ControlProtocolTest, ShowReturnsOneItem) {
  const Reply r = ask(makeRequest(Command::Show, kIdB));
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_TRUE(r.message.has_value());
  expectSameItem(*r.message, queue_.items[kIdB]);
  EXPECT_THAT(queue_.calls, ElementsAre(std::string("show ") + kIdB));
}

TEST_F(ControlProtocolTest, RetryOne) {
  const Reply r = ask(makeRequest(Command::Retry, kIdA));
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.id, kIdA);
  EXPECT_THAT(queue_.calls, ElementsAre(std::string("retry ") + kIdA));
}

TEST_F(ControlProtocolTest, RetryAllAndFlushCount) {
  queue_.retry_all_count = 7;
  Reply r = ask(makeRequest(Command::RetryAll));
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.count, 7u);
  r = ask(makeRequest(Command::Flush));
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.count, 7u);
  EXPECT_THAT(queue_.calls, ElementsAre("retryAll", "retryAll"));
}

TEST_F(ControlProtocolTest, HoldReleaseDelete) {
  EXPECT_TRUE(ask(makeRequest(Command::Hold, kIdA)).ok);
  EXPECT_TRUE(queue_.items[kIdA].held);
  EXPECT_TRUE(ask(makeRequest(Command::Release, kIdA)).ok);
  EXPECT_FALSE(queue_.items[kIdA].held);
  const Reply r = ask(makeRequest(Command::Delete, kIdA));
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.id, kIdA);
  EXPECT_EQ(queue_.items.count(kIdA), 0u);
  EXPECT_THAT(queue_.calls, ElementsAre(std::string("hold ") + kIdA, std::string("release ") + kIdA,
                                        std::string("remove ") + kIdA));
}

TEST_F(ControlProtocolTest, RequestsAreOneLineOfJson) {
  EXPECT_EQ(makeRequest(Command::List), R"({"command":"list"})");
  EXPECT_EQ(makeRequest(Command::Show, kIdA),
            std::string(R"({"command":"show","id":")") + kIdA + "\"}");
  EXPECT_EQ(makeRequest(Command::RetryAll), R"({"command":"retry","all":true})");
  EXPECT_EQ(makeRequest(Command::Flush), R"({"command":"flush"})");
  EXPECT_EQ(makeRequest(Command::Delete, kIdA),
            std::string(R"({"command":"delete","id":")") + kIdA + "\"}");
}

TEST_F(ControlProtocolTest, LineEndsAndSpacesAreAccepted) {
  EXPECT_TRUE(ask("{\"command\":\"list\"}\n").ok);
  EXPECT_TRUE(ask("  { \"command\" : \"list\" }\r\n").ok);
  EXPECT_TRUE(ask(std::string(R"({"command":"retry","all":false,"id":")") + kIdA + "\"}").ok);
}

// ---- errors from the queue ----------------------------------------------------

TEST_F(ControlProtocolTest, QueueErrorsAreReplies) {
  const std::string unknown = "ZZZZZZZZZZZZZZZZZZZZ";
  for (Command c :
       {Command::Show, Command::Retry, Command::Hold, Command::Release, Command::Delete}) {
    EXPECT_EQ(errorOf(handleRequest(makeRequest(c, unknown), queue_)),
              "no message " + unknown + " in the queue");
  }
  queue_.fail_all = Error{"spool unreadable"};
  EXPECT_EQ(errorOf(handleRequest(makeRequest(Command::List), queue_)), "spool unreadable");
  EXPECT_EQ(errorOf(handleRequest(makeRequest(Command::Flush), queue_)), "spool unreadable");
}

TEST_F(ControlProtocolTest, AThrowingQueueIsAnErrorReplyNotAnException) {
  queue_.throw_on_call = true;
  std::string reply;
  EXPECT_NO_THROW(reply = handleRequest(makeRequest(Command::List), queue_));
  EXPECT_THAT(errorOf(reply), HasSubstr("internal error"));
}

TEST_F(ControlProtocolTest, TextThatIsNotUtf8StillMakesValidJson) {
  queue_.items[kIdA].last_error = "bad \xff\xfe bytes";
  queue_.items[kIdA].recipients[0].address = "caf\xe9@example.com";
  const std::string reply = handleRequest(makeRequest(Command::Show, kIdA), queue_);
  auto r = parseReply(reply);
  ASSERT_TRUE(r.ok()) << reply;
  ASSERT_TRUE(r->ok);
  EXPECT_THAT(r->message->last_error, HasSubstr("bad "));
  EXPECT_THAT(r->message->last_error, HasSubstr(" bytes"));
}

// ---- request validation -----------------------------------------------------------

struct BadRequest {
  std::string line;
  std::string error;
};

// Names the case in test output by its request, not by its bytes.
void PrintTo(const BadRequest& c, std::ostream* os) { *os << ::testing::PrintToString(c.line); }

class BadRequestTest : public ::testing::TestWithParam<BadRequest> {};

TEST_P(BadRequestTest, IsRefusedWithAPreciseError) {
  FakeQueueControl queue;
  queue.items[kIdA] = sampleItem(kIdA);
  const std::string reply = handleRequest(GetParam().line, queue);
  EXPECT_EQ(errorOf(reply), GetParam().error);
  EXPECT_TRUE(queue.calls.empty()) << "the queue was called for a bad request";
}

const std::string kA = kIdA;

INSTANTIATE_TEST_SUITE_P(
    All, BadRequestTest,
    ::testing::Values(
        BadRequest{"", "empty request"}, BadRequest{" \r\n", "empty request"},
        BadRequest{"list", "request is not valid JSON"},
        BadRequest{R"({"command":"list"} x)", "request is not valid JSON"},
        BadRequest{R"({"command":"list"}{"command":"list"})", "request is not valid JSON"},
        BadRequest{"{\"command\":\"li\xff\"}", "request is not valid JSON"},
        BadRequest{R"(["list"])", "request is not a JSON object"},
        BadRequest{"42", "request is not a JSON object"},
        BadRequest{R"("list")", "request is not a JSON object"},
        BadRequest{"{}", "missing field 'command'"},
        BadRequest{R"({"id":")" + kA + "\"}", "missing field 'command'"},
        BadRequest{R"({"command":1})", "field 'command' must be a string"},
        BadRequest{R"({"command":["list"]})", "field 'command' must be a string"},
        BadRequest{R"({"command":"purge"})",
                   "unknown command 'purge'; expected one of: list, show, retry, flush, hold, "
                   "release, delete"},
        BadRequest{R"({"command":""})",
                   "unknown command ''; expected one of: list, show, retry, flush, hold, release, "
                   "delete"},
        BadRequest{R"({"command":"LIST"})",
                   "unknown command 'LIST'; expected one of: list, show, retry, flush, hold, "
                   "release, delete"},
        BadRequest{R"({"command":"list, show"})",
                   "unknown command 'list, show'; expected one of: list, show, retry, flush, hold, "
                   "release, delete"},
        BadRequest{R"({"command":"list","id":")" + kA + "\"}",
                   "unknown field 'id' for command 'list'"},
        BadRequest{R"({"command":"flush","all":true})", "unknown field 'all' for command 'flush'"},
        BadRequest{R"({"command":"hold","all":true})", "unknown field 'all' for command 'hold'"},
        BadRequest{R"({"command":"show","ids":[")" + kA + "\"]}",
                   "unknown field 'ids' for command 'show'"},
        BadRequest{R"({"command":"show"})", "command 'show' needs the field 'id'"},
        BadRequest{R"({"command":"hold"})", "command 'hold' needs the field 'id'"},
        BadRequest{R"({"command":"release"})", "command 'release' needs the field 'id'"},
        BadRequest{R"({"command":"delete"})", "command 'delete' needs the field 'id'"},
        BadRequest{R"({"command":"retry"})",
                   "command 'retry' needs the field 'id' (or \"all\": true)"},
        BadRequest{R"({"command":"retry","all":false})",
                   "command 'retry' needs the field 'id' (or \"all\": true)"},
        BadRequest{R"({"command":"retry","all":"yes"})", "field 'all' must be true or false"},
        BadRequest{R"({"command":"retry","all":true,"id":")" + kA + "\"}",
                   "command 'retry' takes either 'id' or \"all\": true, not both"},
        BadRequest{R"({"command":"show","id":12345})", "field 'id' must be a string"},
        BadRequest{R"({"command":"show","id":null})", "field 'id' must be a string"},
        BadRequest{R"({"command":"show","id":"short"})",
                   "'short' is not a queue id (20 letters and digits)"},
        BadRequest{R"({"command":"delete","id":"../../etc/passwd0000"})",
                   "'../../etc/passwd0000' is not a queue id (20 letters and digits)"},
        BadRequest{R"({"command":"show","id":"0123456789ABCDEFGHI\n"})",
                   "'0123456789ABCDEFGHI\\x0a' is not a queue id (20 letters and digits)"},
        BadRequest{R"({"command":"show","id":"0123456789ABCDEFGHIJK"})",
                   "'0123456789ABCDEFGHIJK' is not a queue id (20 letters and digits)"}));

TEST(ControlProtocol, ALineOverTheLimitIsRefusedBeforeParsing) {
  FakeQueueControl queue;
  std::string line = R"({"command":"list","pad":")";
  line += std::string(kMaxRequestBytes, 'x');
  line += "\"}";
  EXPECT_EQ(errorOf(handleRequest(line, queue)),
            "request too long: " + std::to_string(line.size()) + " bytes, at most 65536");
  EXPECT_TRUE(queue.calls.empty());
}

TEST(ControlProtocol, DeepNestingDoesNotCrash) {
  FakeQueueControl queue;
  const std::string line = std::string(30000, '[') + std::string(30000, ']');
  EXPECT_EQ(errorOf(handleRequest(line, queue)), "request is not a JSON object");
}

TEST(ControlProtocol, ErrorReplyEscapes) {
  EXPECT_EQ(errorReply("a \"quoted\"\nline"), R"({"ok":false,"error":"a \"quoted\"\nline"})");
}

// ---- replies, client side ------------------------------------------------------------

TEST(ControlProtocolReply, MalformedRepliesAreErrors) {
  EXPECT_EQ(parseReply("nope").error().message, "reply is not valid JSON");
  EXPECT_EQ(parseReply("[]").error().message, "reply is not a JSON object");
  EXPECT_EQ(parseReply("{}").error().message, "reply: ok is missing");
  EXPECT_EQ(parseReply(R"({"ok":1})").error().message, "reply: ok is not true or false");
  EXPECT_EQ(parseReply(R"({"ok":false})").error().message, "reply: error is missing");
  EXPECT_EQ(parseReply(R"({"ok":true,"count":-1})").error().message,
            "reply: count is not a number not below 0");
  EXPECT_EQ(parseReply(R"({"ok":true,"messages":{}})").error().message,
            "reply: messages is not an array");
  EXPECT_EQ(parseReply(R"({"ok":true,"messages":[1]})").error().message,
            "reply: messages[0] is not an object");
  EXPECT_EQ(parseReply(R"({"ok":true,"message":{"id":"x"}})").error().message,
            "reply: message.sender is missing");
}

TEST(ControlProtocolReply, BadRecipientStateIsAnError) {
  FakeQueueControl queue;
  queue.items[kIdA] = sampleItem(kIdA);
  auto j = nlohmann::json::parse(handleRequest(makeRequest(Command::List), queue));
  j["messages"][0]["recipients"][1]["state"] = "lost";
  EXPECT_EQ(parseReply(j.dump()).error().message,
            "reply: messages[0].recipients[1].state is not pending, delivered or failed");
  j["messages"][0]["recipients"][1]["state"] = "failed";
  j["messages"][0]["attempts"] = 1e10;
  EXPECT_EQ(parseReply(j.dump()).error().message,
            "reply: messages[0].attempts is not a whole number");
}

TEST(ControlProtocolReply, ErrorReply) {
  auto r = parseReply(R"({"ok":false,"error":"no message X in the queue"})");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->error, "no message X in the queue");
}

TEST(ControlProtocolReply, PrettyJsonKeepsTheDaemonsOrder) {
  FakeQueueControl queue;
  queue.items[kIdA] = sampleItem(kIdA);
  const auto pretty = prettyJson(handleRequest(makeRequest(Command::Show, kIdA), queue));
  ASSERT_TRUE(pretty.ok());
  EXPECT_EQ(pretty->rfind("{\n  \"ok\": true,\n  \"message\": {\n    \"id\": \"", 0), 0u)
      << *pretty;
  EXPECT_LT(pretty->find("\"sender\""), pretty->find("\"recipients\""));
  EXPECT_LT(pretty->find("\"held\""), pretty->find("\"in_flight\""));
  EXPECT_FALSE(prettyJson("{").ok());
}

// ---- human output -----------------------------------------------------------------

TEST(ControlProtocolFormat, Rfc3339) {
  EXPECT_EQ(rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(rfc3339(1700000000), "2023-11-14T22:13:20Z");
  EXPECT_EQ(rfc3339(951782400), "2000-02-29T00:00:00Z");
  EXPECT_EQ(rfc3339(INT64_MAX), "9999-12-31T23:59:59Z");
  EXPECT_EQ(rfc3339(INT64_MIN), "0001-01-01T00:00:00Z");
}

TEST(ControlProtocolFormat, ListLikePostqueue) {
  auto a = sampleItem(kIdA);
  auto b = sampleItem(kIdB);
  b.sender = "";
  b.held = true;
  b.attempts = 1;
  b.last_error = "";
  b.route = "";
  b.size = 1;
  b.recipients.resize(1);
  const std::string expected = std::string(kIdA) +
                               "  1234 bytes  2023-11-14T22:13:20Z  <scanner@example.com>\n"
                               "  next attempt at 2023-11-14T23:13:20Z, 2 attempts, route outbox\n"
                               "  last error: 451 4.4.1 outbox: cannot write\n"
                               "    alice@example.com\n"
                               "\n" +
                               kIdB +
                               "  1 byte  2023-11-14T22:13:20Z  <>\n"
                               "  held, 1 attempt\n"
                               "    alice@example.com\n"
                               "\n"
                               "2 messages, 1 held\n";
  EXPECT_EQ(formatList({a, b}, 1700000100), expected);
}

TEST(ControlProtocolFormat, ListStates) {
  auto a = sampleItem(kIdA);
  EXPECT_THAT(formatList({a}, a.next_attempt), HasSubstr("\n  due now, 2 attempts"));
  a.next_attempt = 0;
  EXPECT_THAT(formatList({a}, 1700000100), HasSubstr("\n  due now, 2 attempts"));
  a.in_flight = true;
  EXPECT_THAT(formatList({a}, 1700000100), HasSubstr("\n  in flight, 2 attempts"));
  a.held = true;
  EXPECT_THAT(formatList({a}, 1700000100), HasSubstr("\n  held (an attempt is still running)"));
  EXPECT_THAT(formatList({a}, 1700000100), HasSubstr("1 message, 1 held\n"));
}

TEST(ControlProtocolFormat, EmptyList) {
  EXPECT_EQ(formatList({}, 0), "0 messages, 0 held\n");
}

TEST(ControlProtocolFormat, ControlCharactersAreEscaped) {
  auto a = sampleItem(kIdA);
  a.last_error = "evil\x1b[2Jtext\r\nforged line";
  a.recipients[0].address = "bob\x07@example.com";
  const std::string out = formatList({a}, 0) + formatShow(a, 0);
  EXPECT_EQ(out.find('\x1b'), std::string::npos);
  EXPECT_EQ(out.find('\x07'), std::string::npos);
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_THAT(out, HasSubstr("evil\\x1b[2Jtext\\x0d\\x0aforged line"));
}

TEST(ControlProtocolFormat, ShowHasEveryField) {
  const auto a = sampleItem(kIdA);
  const std::string expected = std::string("id:           ") + kIdA +
                               "\n"
                               "sender:       <scanner@example.com>\n"
                               "arrival:      2023-11-14T22:13:20Z\n"
                               "size:         1234 bytes\n"
                               "route:        outbox\n"
                               "state:        next attempt at 2023-11-14T23:13:20Z\n"
                               "held:         no\n"
                               "in flight:    no\n"
                               "attempts:     2\n"
                               "next attempt: 2023-11-14T23:13:20Z\n"
                               "last error:   451 4.4.1 outbox: cannot write\n"
                               "recipients:   3 (1 pending, 1 delivered, 1 failed)\n"
                               "  alice@example.com  pending  451 4.4.1  cannot write\n"
                               "  bob@example.com  delivered  250 2.0.0\n"
                               "  carol@example.com  failed  550 5.1.1  no such user\n";
  EXPECT_EQ(formatShow(a, 1700000100), expected);
}

TEST(ControlProtocolFormat, ShowOfANewBounce) {
  auto a = sampleItem(kIdA);
  a.sender = "";
  a.route = "";
  a.last_error = "";
  a.attempts = 0;
  a.next_attempt = 0;
  a.recipients.resize(1);
  a.recipients[0].smtp_code = 0;
  a.recipients[0].enhanced = "";
  a.recipients[0].last_error = "";
  const std::string out = formatShow(a, 1700000100);
  EXPECT_THAT(out, HasSubstr("sender:       <>\n"));
  EXPECT_THAT(out, HasSubstr("route:        (not routed yet)\n"));
  EXPECT_THAT(out, HasSubstr("state:        due now\n"));
  EXPECT_THAT(out, HasSubstr("next attempt: now\n"));
  EXPECT_THAT(out, HasSubstr("last error:   (none)\n"));
  EXPECT_THAT(out, HasSubstr("\n  alice@example.com  pending\n"));
}

TEST(ControlProtocolFormat, OneLineForTheOthers) {
  Reply r;
  r.ok = true;
  r.id = kIdA;
  EXPECT_EQ(formatDone(Command::Hold, r), std::string("held ") + kIdA + "\n");
  EXPECT_EQ(formatDone(Command::Release, r), std::string("released ") + kIdA + "\n");
  EXPECT_EQ(formatDone(Command::Delete, r), std::string("deleted ") + kIdA + "\n");
  EXPECT_EQ(formatDone(Command::Retry, r), std::string(kIdA) + " due now\n");
  r.count = 2;
  EXPECT_EQ(formatDone(Command::Flush, r), "2 messages due now\n");
  r.count = 1;
  EXPECT_EQ(formatDone(Command::RetryAll, r), "1 message due now\n");
}

}  // namespace
}  // namespace mb::admin
