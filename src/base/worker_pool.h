#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace mb {

/// Names the calling thread for ps -L, top -H and /proc/<pid>/task/*/comm
/// (at most 15 bytes are kept), so an operator can tell which part of the
/// relay uses the CPU.
void nameThisThread(std::string_view name);

/// WorkerPool: a fixed number of threads that run submitted tasks in the
/// order they were submitted. It exists to take blocking, expensive work off
/// the I/O thread and to bound how much of it runs at once: argon2id password
/// verification (policy/user_store.h) needs 64 MiB per call, so the number
/// of threads is the bound on that memory, and `max_queued` bounds the tasks
/// waiting for a thread.
///
/// A task hands its result back by itself (e.g. by posting to the I/O
/// context); the pool knows nothing about the caller. Tasks must not throw:
/// an exception that escapes one is logged and dropped so the thread lives on.
///
/// Threading: submit() and stop() may be called from any thread, except that
/// stop() (and the destructor) must not be called from inside a task, since
/// it joins the workers. After stop() began, submit() returns false.
class WorkerPool {
 public:
  static constexpr std::size_t kUnbounded = std::numeric_limits<std::size_t>::max();

  /// Starts `threads` workers (at least one), each named `name` (see
  /// nameThisThread). `max_queued` is how many tasks may wait for a free
  /// worker before submit() refuses more.
  explicit WorkerPool(std::size_t threads, std::size_t max_queued = kUnbounded,
                      std::string name = "mb-worker");
  ~WorkerPool();  // stop()

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Queues `task`; false (and the task is destroyed unrun) once stop() has
  /// begun, when `max_queued` tasks are already waiting, or for an empty
  /// function.
  bool submit(std::function<void()> task);

  /// Refuses new tasks, runs the ones already queued, and joins the
  /// workers. Idempotent; concurrent callers all return after the join.
  void stop();

  std::size_t threadCount() const { return thread_count_; }
  /// Tasks waiting for a worker (not counting the running ones).
  std::size_t queued() const;
  /// Tasks being run right now.
  std::size_t running() const;

 private:
  void work();

  const std::size_t thread_count_;
  const std::size_t max_queued_;
  const std::string name_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  std::size_t running_ = 0;
  bool stopping_ = false;

  std::mutex join_mutex_;  // serialises the joins of concurrent stop() calls
  std::vector<std::thread> threads_;
};

}  // namespace mb
