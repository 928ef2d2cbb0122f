#include "base/worker_pool.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace mb {
namespace {

using namespace std::chrono_literals;

// A gate that tasks wait at until the test opens it.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mutex_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return open_; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }
  // Waits (bounded) until `n` tasks stand at the gate.
  bool waitForWaiting(int n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 10s, [&] { return waiting_ >= n; });
  }
  int waiting() {
    std::lock_guard lock(mutex_);
    return waiting_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int waiting_ = 0;
  bool open_ = false;
};

TEST(WorkerPool, RunsEveryTask) {
  std::atomic<int> done{0};
  {
    WorkerPool pool(3);
    EXPECT_EQ(pool.threadCount(), 3u);
    for (int i = 0; i < 100; ++i) EXPECT_TRUE(pool.submit([&] { ++done; }));
    pool.stop();
  }
  EXPECT_EQ(done.load(), 100);
}

TEST(WorkerPool, NoMoreThanThreadCountRunAtOnce) {
  WorkerPool pool(2);
  Gate gate;
  std::atomic<int> done{0};
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(pool.submit([&] {
      gate.wait();
      ++done;
    }));
  }
  ASSERT_TRUE(gate.waitForWaiting(2));
  // Give a third task the chance to start, were the bound broken.
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(gate.waiting(), 2);
  EXPECT_EQ(pool.running(), 2u);
  EXPECT_EQ(pool.queued(), 3u);
  gate.open();
  pool.stop();
  EXPECT_EQ(done.load(), 5);
  EXPECT_EQ(pool.running(), 0u);
  EXPECT_EQ(pool.queued(), 0u);
}

TEST(WorkerPool, StopDrainsTheQueueThenRefuses) {
  WorkerPool pool(1);
  Gate gate;
  std::atomic<int> done{0};
  ASSERT_TRUE(pool.submit([&] { gate.wait(); }));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.submit([&] { ++done; }));
  ASSERT_TRUE(gate.waitForWaiting(1));
  std::thread stopper([&] { pool.stop(); });
  // stop() has begun once submit() refuses; the queued tasks still run.
  while (pool.submit([] {})) std::this_thread::sleep_for(1ms);
  gate.open();
  stopper.join();
  EXPECT_EQ(done.load(), 3);
  EXPECT_FALSE(pool.submit([&] { ++done; }));
  pool.stop();  // idempotent
  EXPECT_EQ(done.load(), 3);
}

TEST(WorkerPool, QueueBound) {
  WorkerPool pool(1, 2);
  Gate gate;
  ASSERT_TRUE(pool.submit([&] { gate.wait(); }));
  ASSERT_TRUE(gate.waitForWaiting(1));
  EXPECT_TRUE(pool.submit([] {}));
  EXPECT_TRUE(pool.submit([] {}));
  EXPECT_FALSE(pool.submit([] {}));  // two already wait
  gate.open();
  pool.stop();
}

TEST(WorkerPool, EmptyTaskIsRefused) {
  WorkerPool pool(1);
  EXPECT_FALSE(pool.submit(std::function<void()>()));
}

std::string threadName() {
  char buf[16] = {};
  pthread_getname_np(pthread_self(), buf, sizeof buf);
  return buf;
}

TEST(WorkerPool, WorkersCarryThePoolsName) {
  WorkerPool pool(1, WorkerPool::kUnbounded, "mb-test-pool-with-a-long-name");
  std::promise<std::string> name;
  ASSERT_TRUE(pool.submit([&name] { name.set_value(threadName()); }));
  EXPECT_EQ(name.get_future().get(), "mb-test-pool-wi");  // the kernel keeps 15 bytes
}

TEST(WorkerPool, ZeroThreadsMeansOne) {
  WorkerPool pool(0);
  EXPECT_EQ(pool.threadCount(), 1u);
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool.submit([&] { ran = true; }));
  pool.stop();
  EXPECT_TRUE(ran.load());
}

TEST(WorkerPool, ThrowingTaskDoesNotKillTheWorker) {
  WorkerPool pool(1);
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool.submit([] { throw std::runtime_error("boom"); }));
  ASSERT_TRUE(pool.submit([&] { ran = true; }));
  pool.stop();
  EXPECT_TRUE(ran.load());
}

TEST(WorkerPool, ConcurrentStopsAllReturnAfterTheJoin) {
  WorkerPool pool(2);
  std::atomic<int> done{0};
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(pool.submit([&] {
      std::this_thread::sleep_for(1ms);
      ++done;
    }));
  }
  std::thread a([&] { pool.stop(); });
  std::thread b([&] { pool.stop(); });
  a.join();
  b.join();
  EXPECT_EQ(done.load(), 20);
}

}  // namespace
}  // namespace mb
