#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "config/config.h"

namespace mb::policy {

/// UserStore: the SMTP AUTH accounts (config::UserConfig, from `auth.users`
/// and the users file) and the check of a password against a user's argon2id
/// hash, through libsodium's crypto_pwhash_str_verify.
///
/// verify() is deliberately slow (about 0.1 s and 64 MiB with the
/// "interactive" limits) and blocking: run it on a WorkerPool
/// (base/worker_pool.h) sized by auth.max_parallel_verifications, never on
/// the I/O thread. Brute-force counting is AuthGuard's job (auth_guard.h).
/// For a user that does not exist, verify() checks the password against a
/// dummy hash made at construction with the same cost, so that the time
/// taken does not tell which user names exist. A store without users makes
/// none (no name exists to be told apart) and answers false at once.
///
/// Immutable after construction: find() and verify() are safe from any
/// thread at once. Construction (which hashes once) is for start-up and
/// reload, and throws std::runtime_error when libsodium cannot start or a
/// user is invalid (the loader rejects those first).
class UserStore {
 public:
  explicit UserStore(std::vector<config::UserConfig> users);

  /// The user with exactly this name (case-sensitive), or nullptr.
  const config::UserConfig* find(std::string_view user) const;

  /// True when `user` exists and `password` matches its hash. Blocking.
  bool verify(std::string_view user, std::string_view password) const;

  std::size_t size() const { return users_.size(); }
  bool empty() const { return users_.empty(); }

  /// An argon2id hash of `password` in the crypto_pwhash_str format
  /// ("$argon2id$v=19$m=65536,t=2,p=1$..."), with libsodium's
  /// OPSLIMIT_INTERACTIVE / MEMLIMIT_INTERACTIVE. Fails on an empty
  /// password and when the memory cannot be had.
  static Result<std::string> hashPassword(std::string_view password);

  /// Checks that `hash` is an argon2id hash that libsodium can parse
  /// (whatever its cost parameters). The error message is safe to show.
  static Status validateHash(std::string_view hash);

 private:
  std::map<std::string, config::UserConfig, std::less<>> users_;
  std::string dummy_hash_;
};

}  // namespace mb::policy
