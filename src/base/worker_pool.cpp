#include "base/worker_pool.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <utility>

namespace mb {

void nameThisThread(std::string_view name) {
  char buf[16] = {};  // the kernel's limit, with the terminating zero
  name.copy(buf, sizeof buf - 1);
  (void)::pthread_setname_np(::pthread_self(), buf);
}

WorkerPool::WorkerPool(std::size_t threads, std::size_t max_queued, std::string name)
    : thread_count_(threads == 0 ? 1 : threads), max_queued_(max_queued), name_(std::move(name)) {
  threads_.reserve(thread_count_);
  for (std::size_t i = 0; i < thread_count_; ++i) {
    threads_.emplace_back([this] {
      nameThisThread(name_);
      work();
    });
  }
}

WorkerPool::~WorkerPool() {
  stop();
}

bool WorkerPool::submit(std::function<void()> task) {
  if (!task) return false;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || tasks_.size() >= max_queued_) return false;
    tasks_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

void WorkerPool::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  std::lock_guard join_lock(join_mutex_);
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

std::size_t WorkerPool::queued() const {
  std::lock_guard lock(mutex_);
  return tasks_.size();
}

std::size_t WorkerPool::running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

void WorkerPool::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
    // Stopping drains: a queued task usually owes someone an answer (an
    // AUTH reply), so it still runs.
    if (tasks_.empty()) return;
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    ++running_;
    lock.unlock();
    try {
      task();
    } catch (const std::exception& e) {
      spdlog::error("worker pool: a task threw: {}", e.what());
    } catch (...) {
      spdlog::error("worker pool: a task threw a non-standard exception");
    }
    // Destroy the callable outside the lock: its captures may be heavy.
    task = nullptr;
    lock.lock();
    --running_;
  }
}

}  // namespace mb
