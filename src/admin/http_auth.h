#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"

namespace mb::admin {

/// The pieces of the admin HTTP server's authentication that need no
/// network: sessions with their CSRF tokens, the checks of a password and of
/// an API token, and the parsing of the Cookie and Authorization headers.
/// Brute-force protection of the login is policy::AuthGuard's job.

/// SessionStore: the signed-in browsers. A session is a random 256-bit id
/// (the cookie's value, 43 characters of base64url) with its own random CSRF
/// token (likewise), which every state-changing request must echo in the
/// X-CSRF-Token header. A session ends after `idle_timeout` without use,
/// `max_age` after it began, or on remove(). At most `max_sessions` live at
/// once: beyond, the least recently used is dropped.
///
/// Time from the injected Clock (steadyNow). Thread-safe (one mutex).
class SessionStore {
 public:
  struct Options {
    std::chrono::seconds idle_timeout{30 * 60};
    std::chrono::seconds max_age{12 * 3600};
    std::size_t max_sessions = 1000;
  };
  struct Session {
    std::string id;
    std::string csrf;
  };

  SessionStore(const Clock& clock, Options options);
  SessionStore(const SessionStore&) = delete;
  SessionStore& operator=(const SessionStore&) = delete;

  /// A new session (ids from libsodium's randombytes_buf).
  Session create();

  /// The session `id` names, when it is live; using it resets its idle
  /// timer. (A map lookup's timing tells nothing useful about a 256-bit
  /// random id, so no constant-time search is needed.)
  std::optional<Session> find(std::string_view id);

  void remove(std::string_view id);
  void clear();
  std::size_t size() const;

 private:
  struct Entry {
    std::string csrf;
    Clock::SteadyTime created;
    Clock::SteadyTime last_used;
  };
  // Drops every expired session: O(n), so only create() sweeps; find()
  // checks the one entry it looks at and size() counts only live ones.
  void pruneLocked(Clock::SteadyTime now);

  const Clock& clock_;
  const Options options_;
  mutable std::mutex mutex_;
  std::map<std::string, Entry, std::less<>> sessions_;
};

/// True when `a` and `b` are equal, in time that does not depend on where
/// they differ (both are hashed with crypto_generichash, then the digests
/// compared with sodium_memcmp). For API tokens and CSRF tokens.
bool constantTimeEqual(std::string_view a, std::string_view b);

/// True when `password` matches the argon2id `hash` (crypto_pwhash_str
/// format). Slow (about 0.1 s, 64 MiB) on purpose: call it off the I/O
/// thread. False for an empty password, for a hash that is not argon2id
/// (libsodium would also take argon2i) and for one libsodium cannot parse.
bool verifyPassword(std::string_view hash, std::string_view password);

/// The value of cookie `name` in a Cookie request header
/// ("a=1; mb_session=XYZ; b=2" → "XYZ"), or nullopt. Names match exactly;
/// surrounding blanks are ignored; the first occurrence wins.
std::optional<std::string> cookieValue(std::string_view cookie_header, std::string_view name);

/// The token of an "Authorization: Bearer TOKEN" header value (scheme
/// case-insensitive, RFC 6750 §2.1), or nullopt for any other scheme or an
/// empty token.
std::optional<std::string> bearerToken(std::string_view authorization);

/// The Set-Cookie header value for a session: HttpOnly, SameSite=Strict,
/// Path=/, Max-Age of the session's max_age, and Secure when `secure` (the
/// admin server speaks TLS). An empty `id` gives the value that deletes the
/// cookie (Max-Age=0).
std::string sessionCookie(std::string_view name, std::string_view id, std::chrono::seconds max_age,
                          bool secure);

}  // namespace mb::admin
