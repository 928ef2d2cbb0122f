#include "queue/file_spool.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <thread>
#include <vector>

#include "base/durable_file.h"
#include "base/testing/temp_dir.h"

namespace mb::queue {
namespace {

namespace stdfs = std::filesystem;

using mb::testing::TempDir;

std::set<std::string> listDir(const stdfs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (stdfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    out.insert(it->path().filename().string());
  }
  return out;
}

std::string readAll(const stdfs::path& p) {
  auto r = fs::readFile(p);
  return r ? *r : std::string("(unreadable)");
}

Envelope envelopeFor(const std::string& rcpt) {
  Envelope env;
  env.sender = "scanner@example.com";
  env.recipients.push_back({rcpt, RecipientState::Pending, 0, "", ""});
  env.client_address = "192.0.2.1";
  env.helo = "scanner";
  env.arrival = 1'800'000'000;
  return env;
}

// Commits and waits for the callback.
Status commitAndWait(FileSpool& spool, std::unique_ptr<IncomingMessage> msg, Envelope env) {
  std::promise<Status> done;
  auto fut = done.get_future();
  spool.commit(std::move(msg), std::move(env), [&done](Status st) { done.set_value(std::move(st)); });
  return fut.get();
}

class FileSpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    ASSERT_TRUE(spool_.open().ok());
  }

  std::string commitOne(std::string_view content, const std::string& rcpt = "a@example.org") {
    auto msg = spool_.create();
    EXPECT_TRUE(msg.ok());
    if (!msg) return {};
    const std::string id = (*msg)->id();
    EXPECT_TRUE((*msg)->write(content).ok());
    Status st = commitAndWait(spool_, std::move(msg).value(), envelopeFor(rcpt));
    EXPECT_TRUE(st.ok()) << st.error().message;
    return id;
  }

  TempDir dir_;
  FileSpool spool_{dir_.path()};
};

TEST_F(FileSpoolTest, OpenCreatesDirectories) {
  EXPECT_TRUE(stdfs::is_directory(dir_.path() / "queue"));
  EXPECT_TRUE(stdfs::is_directory(dir_.path() / "corrupt"));
  EXPECT_EQ(spool_.queueDir(), dir_.path() / "queue");
  EXPECT_EQ(spool_.corruptDir(), dir_.path() / "corrupt");
}

TEST_F(FileSpoolTest, CommitWritesOneFileWithTheEnvelopeAfterTheContent) {
  const std::string content = "Received: by test\r\n\r\nhello\r\n";
  const std::string id = commitOne(content);
  ASSERT_TRUE(isValidQueueId(id));
  EXPECT_EQ(listDir(spool_.queueDir()), (std::set<std::string>{id + ".mail"}));
  EXPECT_EQ(spool_.contentPath(id), spool_.queueDir() / (id + ".mail"));

  auto env = spool_.load(id);
  ASSERT_TRUE(env.ok()) << env.error().message;
  EXPECT_EQ(env->id, id);
  EXPECT_EQ(env->size, content.size());
  EXPECT_EQ(env->sender, "scanner@example.com");
  ASSERT_EQ(env->recipients.size(), 1u);
  EXPECT_EQ(env->recipients[0].address, "a@example.org");

  // The file: the content, the envelope as serialize() writes it, and a line
  // with the envelope's length.
  const std::string file = readAll(spool_.contentPath(id));
  const std::string serialized = serialize(*env);
  std::string length = std::to_string(serialized.size());
  length.insert(0, 10 - length.size(), '0');
  EXPECT_EQ(file, content + serialized + "envelope-length " + length + "\n");
}

TEST_F(FileSpoolTest, LargeContentIsStreamed) {
  auto msg = spool_.create();
  ASSERT_TRUE(msg.ok());
  const std::string id = (*msg)->id();
  std::string expected;
  for (int i = 0; i < 300; ++i) {
    std::string chunk(1000 + static_cast<std::size_t>(i), static_cast<char>('a' + i % 26));
    expected += chunk;
    ASSERT_TRUE((*msg)->write(chunk).ok());
  }
  EXPECT_EQ((*msg)->size(), expected.size());
  ASSERT_TRUE(commitAndWait(spool_, std::move(msg).value(), envelopeFor("a@example.org")).ok());
  EXPECT_EQ(readAll(spool_.contentPath(id)).substr(0, expected.size()), expected);
  EXPECT_EQ(spool_.load(id)->size, expected.size());
}

TEST_F(FileSpoolTest, StopFinishesWhatWasHandedOverAndRefusesTheRest) {
  const std::string kept = commitOne("Subject: before\r\n\r\nx\r\n");
  spool_.stop();
  spool_.stop();  // idempotent
  auto msg = spool_.create();
  ASSERT_TRUE(msg.ok());
  ASSERT_TRUE((*msg)->write("Subject: after\r\n\r\nx\r\n").ok());
  bool called = false;
  spool_.commit(std::move(msg).value(), envelopeFor("a@example.org"), [&called](Status st) {
    called = true;
    EXPECT_FALSE(st.ok());
  });
  EXPECT_TRUE(called) << "answered at once, not left hanging";
  EXPECT_EQ(listDir(spool_.queueDir()), (std::set<std::string>{kept + ".mail"}));
}

TEST_F(FileSpoolTest, AbandonedMessageLeavesNothing) {
  {
    auto msg = spool_.create();
    ASSERT_TRUE(msg.ok());
    ASSERT_TRUE((*msg)->write("partial data").ok());
    EXPECT_EQ(listDir(spool_.queueDir()), (std::set<std::string>{(*msg)->id() + ".mail.tmp"}));
  }
  EXPECT_TRUE(listDir(spool_.queueDir()).empty());
}

TEST_F(FileSpoolTest, ConcurrentCommitsFromEightThreads) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 40;
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  std::vector<std::vector<std::string>> ids(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto msg = spool_.create();
        if (!msg) {
          ++failed;
          continue;
        }
        ids[static_cast<std::size_t>(t)].push_back((*msg)->id());
        const std::string body = "thread " + std::to_string(t) + " message " + std::to_string(i) + "\r\n";
        if (!(*msg)->write(body).ok()) ++failed;
        Status st = commitAndWait(spool_, std::move(msg).value(), envelopeFor("r@example.org"));
        (st.ok() ? ok : failed)++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(listDir(spool_.queueDir()).size(), static_cast<std::size_t>(kThreads * kPerThread));

  auto recovered = spool_.recover();
  ASSERT_TRUE(recovered.ok());
  ASSERT_EQ(recovered->size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::set<std::string> want;
  for (const auto& v : ids) want.insert(v.begin(), v.end());
  std::set<std::string> got;
  for (const auto& env : *recovered) got.insert(env.id);
  EXPECT_EQ(got, want);
}

TEST_F(FileSpoolTest, CallbackMayCommitAgain) {
  // The callback runs on the committer thread; committing from it must not
  // deadlock.
  auto first = spool_.create();
  auto second = spool_.create();
  ASSERT_TRUE(first.ok() && second.ok());
  std::promise<Status> done;
  auto fut = done.get_future();
  auto second_msg = std::move(second).value();
  spool_.commit(std::move(first).value(), envelopeFor("a@example.org"),
                [&](Status st) {
                  EXPECT_TRUE(st.ok());
                  spool_.commit(std::move(second_msg), envelopeFor("b@example.org"),
                                [&done](Status st2) { done.set_value(std::move(st2)); });
                });
  EXPECT_TRUE(fut.get().ok());
  EXPECT_EQ(listDir(spool_.queueDir()).size(), 2u);
}

TEST_F(FileSpoolTest, DestructorFinishesWaitingCommits) {
  TempDir other;
  std::atomic<int> ok{0};
  constexpr int kCount = 20;
  std::set<std::string> ids;
  {
    FileSpool spool(other.path());
    ASSERT_TRUE(spool.open().ok());
    for (int i = 0; i < kCount; ++i) {
      auto msg = spool.create();
      ASSERT_TRUE(msg.ok());
      ids.insert((*msg)->id());
      ASSERT_TRUE((*msg)->write("x").ok());
      spool.commit(std::move(msg).value(), envelopeFor("a@example.org"), [&ok](Status st) {
        if (st) ++ok;
      });
    }
  }
  EXPECT_EQ(ok.load(), kCount);
  FileSpool again(other.path());
  auto recovered = again.recover();
  ASSERT_TRUE(recovered.ok());
  EXPECT_EQ(recovered->size(), static_cast<std::size_t>(kCount));
}

TEST_F(FileSpoolTest, ContentDeletedUnderneathFailsAndLeavesNothing) {
  auto msg = spool_.create();
  ASSERT_TRUE(msg.ok());
  const std::string id = (*msg)->id();
  ASSERT_TRUE((*msg)->write("some content").ok());
  ASSERT_EQ(::unlink(spool_.incomingPath(id).c_str()), 0);
  Status st = commitAndWait(spool_, std::move(msg).value(), envelopeFor("a@example.org"));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("vanished"), std::string::npos) << st.error().message;
  EXPECT_TRUE(listDir(spool_.queueDir()).empty());
}

TEST_F(FileSpoolTest, FailedCommitDoesNotAffectOthersInBatch) {
  // Queue three commits before the committer can take them (the first
  // callback blocks the committer while the next two are queued), the middle
  // one broken.
  auto a = spool_.create();
  auto b = spool_.create();
  auto c = spool_.create();
  auto blocker = spool_.create();
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && blocker.ok());
  const std::string ida = (*a)->id(), idb = (*b)->id(), idc = (*c)->id();
  for (auto* m : {&a, &b, &c}) ASSERT_TRUE((**m)->write("body").ok());
  ASSERT_EQ(::unlink(spool_.incomingPath(idb).c_str()), 0);

  std::promise<void> release;
  auto released = release.get_future().share();
  spool_.commit(std::move(blocker).value(), envelopeFor("x@example.org"), [released](Status) { released.wait(); });
  std::promise<Status> pa, pb, pc;
  spool_.commit(std::move(a).value(), envelopeFor("a@example.org"), [&](Status st) { pa.set_value(st); });
  spool_.commit(std::move(b).value(), envelopeFor("b@example.org"), [&](Status st) { pb.set_value(st); });
  spool_.commit(std::move(c).value(), envelopeFor("c@example.org"), [&](Status st) { pc.set_value(st); });
  release.set_value();
  EXPECT_TRUE(pa.get_future().get().ok());
  EXPECT_FALSE(pb.get_future().get().ok());
  EXPECT_TRUE(pc.get_future().get().ok());
  const auto files = listDir(spool_.queueDir());
  EXPECT_EQ(files.count(ida + ".mail"), 1u);
  EXPECT_EQ(files.count(idc + ".mail"), 1u);
  EXPECT_EQ(files.count(idb + ".mail"), 0u);
  EXPECT_EQ(files.count(idb + ".mail.tmp"), 0u);
}

TEST_F(FileSpoolTest, WriteErrorIsSticky) {
  // RLIMIT_FSIZE makes write(2) fail with EFBIG past the limit: a real write
  // error without a full file system. SIGXFSZ would kill the process, so it
  // is ignored for the test.
  auto msg = spool_.create();
  ASSERT_TRUE(msg.ok());
  const std::string id = (*msg)->id();
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 16 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  Status big = (*msg)->write(std::string(100 * 1024, 'x'));
  Status after = (*msg)->write("y");
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().sys_errno, EFBIG);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().sys_errno, EFBIG);
  Status st = commitAndWait(spool_, std::move(msg).value(), envelopeFor("a@example.org"));
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(listDir(spool_.queueDir()).empty());
}

TEST_F(FileSpoolTest, UpdateLoadRemove) {
  const std::string id = commitOne("content");
  auto env = spool_.load(id);
  ASSERT_TRUE(env.ok());
  env->attempts = 4;
  env->recipients[0].state = RecipientState::Delivered;
  env->recipients[0].smtp_code = 250;
  ASSERT_TRUE(spool_.update(*env).ok());
  EXPECT_EQ(listDir(spool_.queueDir()), (std::set<std::string>{id + ".env", id + ".mail"}));
  auto again = spool_.load(id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->attempts, 4);
  EXPECT_EQ(again->recipients[0].state, RecipientState::Delivered);
  // The later envelope wins at recovery too; the trailer is left as it was.
  auto recovered = spool_.recover();
  ASSERT_TRUE(recovered.ok());
  ASSERT_EQ(recovered->size(), 1u);
  EXPECT_EQ((*recovered)[0].attempts, 4);
  EXPECT_EQ(readAll(spool_.contentPath(id)).substr(0, 7), "content");

  ASSERT_TRUE(spool_.remove(id).ok());
  EXPECT_TRUE(listDir(spool_.queueDir()).empty());
  EXPECT_FALSE(spool_.load(id).ok());
  EXPECT_FALSE(spool_.update(*env).ok());  // would leave an envelope without content
  EXPECT_TRUE(listDir(spool_.queueDir()).empty());
  EXPECT_TRUE(spool_.remove(id).ok());     // already gone is fine
}

TEST_F(FileSpoolTest, RemovalsAreMadeDurableByTheCommitterBeforeItStops) {
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(commitOne("content " + std::to_string(i)));
  const std::size_t before = spool_.directorySyncs();
  for (const auto& id : ids) ASSERT_TRUE(spool_.remove(id).ok());
  EXPECT_TRUE(listDir(spool_.queueDir()).empty());  // unlinked at once
  spool_.stop();                                     // the pending directory fsync runs first
  const std::size_t syncs = spool_.directorySyncs() - before;
  EXPECT_GE(syncs, 1u);
  EXPECT_LE(syncs, ids.size());  // shared, never more than one per removal
}

TEST_F(FileSpoolTest, RemoveAfterStopSyncsTheDirectoryItself) {
  const std::string id = commitOne("content");
  spool_.stop();
  const std::size_t before = spool_.directorySyncs();
  ASSERT_TRUE(spool_.remove(id).ok());
  EXPECT_EQ(spool_.directorySyncs(), before + 1);
  EXPECT_TRUE(listDir(spool_.queueDir()).empty());
}

TEST_F(FileSpoolTest, RejectsBadIds) {
  EXPECT_FALSE(spool_.load("../../etc/passwd").ok());
  EXPECT_FALSE(spool_.remove("../x").ok());
  Envelope env;
  env.id = "nope";
  EXPECT_FALSE(spool_.update(env).ok());
}

TEST_F(FileSpoolTest, LoadReportsATornTrailer) {
  const std::string id = commitOne("content");
  ASSERT_EQ(::truncate(spool_.contentPath(id).c_str(),
                       static_cast<off_t>(stdfs::file_size(spool_.contentPath(id)) - 3)), 0);
  auto r = spool_.load(id);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(id), std::string::npos);
}

TEST_F(FileSpoolTest, LoadReportsCorruption) {
  const std::string id = commitOne("content");
  ASSERT_TRUE(spool_.update(*spool_.load(id)).ok());
  const auto env_path = spool_.queueDir() / (id + ".env");
  std::string text = readAll(env_path);
  text.resize(text.size() / 2);
  ASSERT_TRUE(fs::writeFileAtomic(env_path, text).ok());
  auto r = spool_.load(id);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(id), std::string::npos);
}

TEST_F(FileSpoolTest, RecoverSortsOutLeftovers) {
  const std::string good1 = commitOne("one");
  const std::string good2 = commitOne("two");
  const std::string torn = commitOne("three");
  const std::string broken_sum = commitOne("four");
  const std::string no_content = commitOne("five");
  const std::string wrong_size = commitOne("six");
  const auto q = spool_.queueDir();
  // good2, broken_sum, no_content and wrong_size have a later envelope.
  for (const auto& id : {good2, broken_sum, no_content, wrong_size}) {
    auto env = spool_.load(id);
    ASSERT_TRUE(env.ok());
    env->attempts = 2;
    if (id == wrong_size) env->size = 5000;
    ASSERT_TRUE(spool_.update(*env).ok());
  }

  // Temporaries of every kind.
  ASSERT_TRUE(fs::writeFileAtomicNoDirSync(q / "x.tmp", "t").ok());
  { std::ofstream(q / (good1 + ".env.tmp.abc123")) << "partial"; }
  { std::ofstream(q / (newQueueId() + ".mail.tmp")) << "partial"; }
  // Content of the older layout that never got an envelope.
  const std::string orphan = newQueueId();
  { std::ofstream(q / (orphan + ".msg")) << "orphan"; }
  // A torn trailer: the end of the file never reached the disk.
  ASSERT_EQ(::truncate(spool_.contentPath(torn).c_str(),
                       static_cast<off_t>(stdfs::file_size(spool_.contentPath(torn)) - 10)), 0);
  // Checksum of the later envelope broken: edit a byte of the JSON.
  std::string text = readAll(q / (broken_sum + ".env"));
  text[text.find("scanner")] = 'S';
  ASSERT_TRUE(fs::writeFileAtomicNoDirSync(q / (broken_sum + ".env"), text).ok());
  // A later envelope whose message is gone.
  ASSERT_TRUE(fs::removeFile(q / (no_content + ".mail")).ok());
  // Too short to hold a trailer at all.
  const std::string stub = newQueueId();
  { std::ofstream(q / (stub + ".mail")) << "x"; }

  auto recovered = spool_.recover();
  ASSERT_TRUE(recovered.ok()) << recovered.error().message;
  ASSERT_EQ(recovered->size(), 2u);
  EXPECT_EQ((*recovered)[0].id, std::min(good1, good2));
  EXPECT_EQ((*recovered)[1].id, std::max(good1, good2));
  for (const auto& env : *recovered) EXPECT_EQ(env.attempts, env.id == good2 ? 2 : 0);

  EXPECT_EQ(listDir(q), (std::set<std::string>{good1 + ".mail", good2 + ".env", good2 + ".mail"}));
  EXPECT_EQ(listDir(spool_.corruptDir()),
            (std::set<std::string>{torn + ".mail", broken_sum + ".env", broken_sum + ".mail",
                                   no_content + ".env", wrong_size + ".env", wrong_size + ".mail",
                                   stub + ".mail"}));
  EXPECT_EQ(readAll(spool_.corruptDir() / (torn + ".mail")).substr(0, 5), "three");

  // Idempotent: a second pass finds the same two and moves nothing.
  auto second = spool_.recover();
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->size(), 2u);
  EXPECT_EQ(listDir(spool_.corruptDir()).size(), 7u);
}

TEST_F(FileSpoolTest, RecoverMovesTheOlderTwoFileLayoutToOneFile) {
  // A queue written by an earlier version: content in `<id>.msg`, envelope
  // only in `<id>.env`.
  const auto q = spool_.queueDir();
  const std::string content = "Subject: queued before the upgrade\r\n\r\nbody\r\n";
  Envelope env = envelopeFor("old@example.org");
  env.id = newQueueId();
  env.size = content.size();
  env.attempts = 3;
  { std::ofstream(q / (env.id + ".msg"), std::ios::binary) << content; }
  ASSERT_TRUE(fs::writeFileAtomic(q / (env.id + ".env"), serialize(env)).ok());

  auto recovered = spool_.recover();
  ASSERT_TRUE(recovered.ok()) << recovered.error().message;
  ASSERT_EQ(recovered->size(), 1u);
  EXPECT_EQ(serialize((*recovered)[0]), serialize(env));
  EXPECT_EQ(listDir(q), (std::set<std::string>{env.id + ".env", env.id + ".mail"}));
  EXPECT_EQ(readAll(spool_.contentPath(env.id)), content);
  auto loaded = spool_.load(env.id);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->attempts, 3);
  ASSERT_TRUE(spool_.remove(env.id).ok());
  EXPECT_TRUE(listDir(q).empty());
}

TEST_F(FileSpoolTest, RecoverKeepsEarlierCorruptFiles) {
  const std::string id = commitOne("one");
  const auto q = spool_.queueDir();
  ASSERT_TRUE(fs::writeFileAtomic(spool_.corruptDir() / (id + ".env"), "older").ok());
  ASSERT_TRUE(fs::writeFileAtomic(q / (id + ".env"), "garbage").ok());
  auto recovered = spool_.recover();
  ASSERT_TRUE(recovered.ok());
  EXPECT_TRUE(recovered->empty());
  EXPECT_EQ(readAll(spool_.corruptDir() / (id + ".env")), "older");
  EXPECT_EQ(readAll(spool_.corruptDir() / (id + ".env.1")), "garbage");
  EXPECT_EQ(readAll(spool_.corruptDir() / (id + ".mail")).substr(0, 3), "one");
}

TEST(FileSpoolRecoverTest, CreatesMissingDirectories) {
  TempDir dir;
  FileSpool spool(dir.path() / "state");
  auto recovered = spool.recover();
  ASSERT_TRUE(recovered.ok()) << recovered.error().message;
  EXPECT_TRUE(recovered->empty());
  EXPECT_TRUE(stdfs::is_directory(dir.path() / "state" / "queue"));
  EXPECT_TRUE(stdfs::is_directory(dir.path() / "state" / "corrupt"));
}

}  // namespace
}  // namespace mb::queue
