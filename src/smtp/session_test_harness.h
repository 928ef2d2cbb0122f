#pragma once

// Test support shared by the ServerSession tests (server_session_test.cpp,
// auth_test.cpp, bdat_test.cpp): a sink that keeps every reply, a handler
// that records every call and answers as configured, and a harness that
// feeds a session the way a driver does.

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "smtp/server_session.h"

namespace mb::smtp::testing {

class CapturingSink : public ReplySink {
 public:
  void sendReply(std::string_view wire) override { replies.emplace_back(wire); }
  std::vector<std::string> replies;
};

inline std::string problemName(DataProblem p) {
  switch (p) {
    case DataProblem::None:
      return "None";
    case DataProblem::TooBig:
      return "TooBig";
    case DataProblem::BareLf:
      return "BareLf";
    case DataProblem::LineTooLong:
      return "LineTooLong";
  }
  return "?";
}

// Records every call, answers as configured.
class FakeHandler : public SessionHandler {
 public:
  std::optional<Reply> onMail(const Transaction& txn) override {
    events.push_back("mail " + txn.mail.address);
    last_txn = txn;
    return mail_verdict;
  }
  std::optional<Reply> onRcpt(const Transaction& txn, std::string_view recipient) override {
    events.push_back("rcpt " + std::string(recipient));
    last_txn = txn;
    return rcpt_verdict ? rcpt_verdict(recipient) : std::nullopt;
  }
  std::optional<Reply> onDataStart(const Transaction& txn) override {
    events.push_back("start");
    last_txn = txn;
    if (!data_start_verdict) {
      ++open;
      content.clear();
    }
    return data_start_verdict;
  }
  void onDataChunk(std::string_view bytes) override {
    EXPECT_EQ(open, 1) << "chunk outside DATA";
    content.append(bytes);
    chunked += bytes.size();
  }
  void onDataEnd(const Transaction& txn) override {
    events.push_back("end " + std::to_string(content.size()));
    EXPECT_EQ(open, 1);
    --open;
    ++ends;
    last_txn = txn;
    messages.push_back(content);
    if (complete_at_once && session != nullptr) session->completeData(commit_reply);
  }
  void onDataAbort(DataProblem why) override {
    events.push_back("abort " + problemName(why));
    EXPECT_EQ(open, 1);
    --open;
    aborts.push_back(why);
  }
  void onAuth(const AuthRequest& request) override {
    events.push_back("auth " + request.mechanism + " " + request.user);
    auths.push_back(request);
    if (auth_at_once && session != nullptr) session->completeAuth(auth_result);
  }

  std::vector<std::string> events;
  Transaction last_txn;
  std::optional<Reply> mail_verdict;
  std::function<std::optional<Reply>(std::string_view)> rcpt_verdict;
  std::optional<Reply> data_start_verdict;
  std::string content;
  std::vector<std::string> messages;
  std::vector<DataProblem> aborts;
  std::vector<AuthRequest> auths;
  std::size_t chunked = 0;
  int open = 0;
  int ends = 0;
  bool complete_at_once = false;
  bool auth_at_once = false;
  AuthResult auth_result = AuthResult::Success;
  ServerSession* session = nullptr;
  Reply commit_reply{250, "2.0.0", "Queued", {}};
};

// "250 2.1.0" for "250 2.1.0 Sender OK\r\n"; "250" for a reply without an
// enhanced code (greeting, EHLO, 354, 334).
inline std::string brief(std::string_view wire) {
  std::string_view line = wire.substr(0, wire.find("\r\n"));
  std::string out(line.substr(0, 3));
  if (line.size() > 9 && line[3] == ' ' && line[5] == '.' && line[4] >= '2' && line[4] <= '5') {
    const std::size_t sp = line.find(' ', 4);
    out += ' ';
    out += line.substr(4, sp - 4);
  }
  return out;
}

class Harness {
 public:
  explicit Harness(SessionLimits limits = testLimits(), const SessionFeatures& features = {})
      : session(std::move(limits), handler, sink) {
    handler.session = &session;
    session.setFeatures(features);
    session.greet();
    sink.replies.clear();
  }

  static SessionLimits testLimits() {
    SessionLimits l;
    l.hostname = "mx.example";
    l.max_message_size = 1000;
    l.max_recipients = 5;
    l.max_errors = 100;
    return l;
  }

  // Feeds `bytes` in pieces of `piece` bytes (0: all at once), completing
  // every commit with commit_reply and (with auto_auth) every AUTH with
  // handler.auth_result, as a driver would; returns the replies in brief.
  std::vector<std::string> run(std::string_view bytes, std::size_t piece = 0) {
    const std::size_t first = sink.replies.size();
    if (piece == 0) piece = bytes.size() == 0 ? 1 : bytes.size();
    for (std::size_t i = 0; i < bytes.size(); i += piece) {
      session.feed(bytes.substr(i, piece));
      while ((auto_commit && session.awaitingCommit()) || (auto_auth && session.awaitingAuth())) {
        if (session.awaitingCommit()) {
          session.completeData(handler.commit_reply);
        } else {
          session.completeAuth(handler.auth_result);
        }
      }
    }
    std::vector<std::string> out;
    for (std::size_t i = first; i < sink.replies.size(); ++i) out.push_back(brief(sink.replies[i]));
    return out;
  }

  // The brief of the one reply a line produces.
  std::string say(std::string_view line) {
    const std::vector<std::string> r = run(std::string(line) + "\r\n");
    EXPECT_EQ(r.size(), 1u) << line;
    return r.empty() ? "" : r.back();
  }

  const std::string& lastWire() const { return sink.replies.back(); }

  FakeHandler handler;
  CapturingSink sink;
  ServerSession session;
  bool auto_commit = true;
  bool auto_auth = true;
};

using Replies = std::vector<std::string>;

}  // namespace mb::smtp::testing
