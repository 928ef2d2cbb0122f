#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "http/http_client.h"

namespace mb::http::testing {

/// FakeHttpClient: an http::HttpClient for unit tests. Records every request
/// and answers with queued outcomes in order (then with the fallback, by
/// default a 500). hold() makes perform() wait, after recording the request,
/// until release(): for single-flight tests. No network.
/// Threading: safe from any number of threads, as the interface demands.
class FakeHttpClient final : public http::HttpClient {
 public:
  void push(http::Outcome outcome) {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(outcome));
  }
  void pushResponse(long status, std::string body,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::Response r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    push(std::move(r));
  }
  void setFallback(http::Outcome outcome) {
    std::lock_guard lock(mutex_);
    fallback_ = std::move(outcome);
  }

  void hold() {
    std::lock_guard lock(mutex_);
    held_ = true;
  }
  void release() {
    std::lock_guard lock(mutex_);
    held_ = false;
    changed_.notify_all();
  }
  /// Waits (at most 10 s) until `n` requests have arrived.
  bool waitForRequests(std::size_t n) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, std::chrono::seconds(10), [&] { return requests_.size() >= n; });
  }

  std::vector<http::Request> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  std::size_t requestCount() const {
    std::lock_guard lock(mutex_);
    return requests_.size();
  }

  /// Answered like perform(), on the caller's thread before returning, and
  /// counted apart: tests see which way a request went.
  void start(http::Request request, Completion done) override {
    {
      std::lock_guard lock(mutex_);
      ++started_;
    }
    done(perform(request));
  }
  std::size_t startedCount() const {
    std::lock_guard lock(mutex_);
    return started_;
  }

  http::Outcome perform(const http::Request& request) override {
    std::unique_lock lock(mutex_);
    requests_.push_back(request);
    changed_.notify_all();
    changed_.wait(lock, [&] { return !held_; });
    if (queue_.empty()) return fallback_;
    http::Outcome out = std::move(queue_.front());
    queue_.pop_front();
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<http::Outcome> queue_;
  std::vector<http::Request> requests_;
  http::Outcome fallback_ = http::Response{500, {}, "fake: no response queued"};
  bool held_ = false;
  std::size_t started_ = 0;
};

}  // namespace mb::http::testing
