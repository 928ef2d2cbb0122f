#include "policy/auth_guard.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace mb::policy {
namespace {

// Real user names are at most 256 bytes (the loader's limit), so a longer
// name never matches a user and sharing its counter with others is harmless.
constexpr std::size_t kMaxKeyLength = 256;

std::string_view capped(std::string_view s) {
  return s.substr(0, kMaxKeyLength);
}

}  // namespace

// ---- Table ----------------------------------------------------------------

AuthGuard::Entry* AuthGuard::Table::find(std::string_view key) {
  const auto it = index_.find(key);
  return it == index_.end() ? nullptr : &it->second->entry;
}

AuthGuard::Entry& AuthGuard::Table::touch(std::string_view key, Time now, std::size_t max_entries) {
  if (const auto it = index_.find(key); it != index_.end()) {
    order_.splice(order_.end(), order_, it->second);
    it->second->touched = now;
    return it->second->entry;
  }
  while (!order_.empty() && index_.size() >= std::max<std::size_t>(max_entries, 1)) {
    index_.erase(order_.front().key);
    order_.pop_front();
  }
  order_.push_back(Node{std::string(key), now, Entry{}});
  const auto node = std::prev(order_.end());
  index_.emplace(node->key, node);
  return node->entry;
}

void AuthGuard::Table::erase(std::string_view key) {
  const auto it = index_.find(key);
  if (it == index_.end()) return;
  const auto node = it->second;
  index_.erase(it);
  order_.erase(node);
}

void AuthGuard::Table::pruneUntil(Time cutoff) {
  while (!order_.empty() && order_.front().touched <= cutoff) {
    index_.erase(order_.front().key);
    order_.pop_front();
  }
}

// ---- AuthGuard ------------------------------------------------------------

AuthGuard::AuthGuard(Params params, const Clock& clock) : clock_(clock), limits_(params) {}

void AuthGuard::setParams(Params params) {
  std::lock_guard lock(mutex_);
  limits_ = params;
}

std::string AuthGuard::clientKey(std::string_view ip) {
  std::string text(capped(ip));
  if (text.find(':') == std::string::npos) return text;
  std::array<unsigned char, 16> bin{};
  if (::inet_pton(AF_INET6, text.c_str(), bin.data()) != 1) return text;
  char out[INET6_ADDRSTRLEN] = {};
  static constexpr std::array<unsigned char, 12> kMapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(kMapped.begin(), kMapped.end(), bin.begin())) {
    if (::inet_ntop(AF_INET, bin.data() + 12, out, sizeof out) == nullptr) return text;
    return out;
  }
  std::fill(bin.begin() + 8, bin.end(), 0);
  if (::inet_ntop(AF_INET6, bin.data(), out, sizeof out) == nullptr) return text;
  return std::string(out) + "/64";
}

void AuthGuard::prune(Time now) {
  // An entry's newest failure is its last touch; once that is older than the
  // window (and, for clients, than a lockout it may have started), the entry
  // says nothing any more.
  clients_.pruneUntil(now - std::max(limits_.window, limits_.lockout));
  users_.pruneUntil(now - limits_.window);
}

void AuthGuard::countFailure(Entry& e, Time now, std::chrono::seconds window, std::size_t limit) {
  e.failures.push_back(now);
  while (!e.failures.empty() && e.failures.front() <= now - window) e.failures.pop_front();
  // Reaching the limit is all that matters, so older ones need not be kept.
  while (e.failures.size() > std::max<std::size_t>(limit, 1)) e.failures.pop_front();
}

bool AuthGuard::locked(std::string_view ip) {
  const std::string key = clientKey(ip);
  std::lock_guard lock(mutex_);
  const Time now = clock_.steadyNow();
  prune(now);
  const Entry* e = clients_.find(key);
  return e != nullptr && now < e->locked_until;
}

AuthGuard::Verdict AuthGuard::recordFailure(std::string_view ip, std::string_view user) {
  const std::string key = clientKey(ip);
  std::lock_guard lock(mutex_);
  const Time now = clock_.steadyNow();
  prune(now);
  Entry& client = clients_.touch(key, now, limits_.max_entries);
  countFailure(client, now, limits_.window, limits_.max_failures_per_ip);
  Entry& named = users_.touch(capped(user), now, limits_.max_entries);
  countFailure(named, now, limits_.window, limits_.max_failures_per_user);
  if (client.failures.size() >= limits_.max_failures_per_ip ||
      named.failures.size() >= limits_.max_failures_per_user) {
    client.locked_until = now + limits_.lockout;
    return Verdict::LockOut;
  }
  return Verdict::Continue;
}

void AuthGuard::recordSuccess(std::string_view /*ip*/, std::string_view user) {
  std::lock_guard lock(mutex_);
  users_.erase(capped(user));
}

std::size_t AuthGuard::trackedClients() const {
  std::lock_guard lock(mutex_);
  return clients_.size();
}

std::size_t AuthGuard::trackedUsers() const {
  std::lock_guard lock(mutex_);
  return users_.size();
}

}  // namespace mb::policy
