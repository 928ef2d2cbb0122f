#include "admin/http_auth.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <utility>

namespace mb::admin {
namespace {

// sodium_init() picks the fastest implementations and seeds the generator; it
// must run once before anything else of libsodium, from any thread.
bool sodiumReady() {
  static const bool ready = ::sodium_init() >= 0;
  return ready;
}

constexpr std::size_t kRandomBytes = 32;

// 256 random bits, base64url without padding: 43 characters that need no
// quoting in a cookie or a header.
std::string randomToken() {
  std::array<unsigned char, kRandomBytes> bytes{};
  ::randombytes_buf(bytes.data(), bytes.size());
  std::array<char,
             sodium_base64_ENCODED_LEN(kRandomBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)>
      text{};
  ::sodium_bin2base64(text.data(), text.size(), bytes.data(), bytes.size(),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  ::sodium_memzero(bytes.data(), bytes.size());
  return std::string(text.data());
}

// A session is dead from the instant either limit is reached, so that the
// cookie's Max-Age and the server agree on the last usable second.
bool expired(const SessionStore::Options& options, Clock::SteadyTime created,
             Clock::SteadyTime last_used, Clock::SteadyTime now) {
  return now - last_used >= options.idle_timeout || now - created >= options.max_age;
}

bool isBlank(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trimBlanks(std::string_view s) {
  while (!s.empty() && isBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && isBlank(s.back())) s.remove_suffix(1);
  return s;
}

char asciiLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return asciiLower(x) == asciiLower(y);
         });
}

// crypto_generichash wants a non-null pointer only when there are bytes.
const unsigned char* bytesOf(std::string_view s) {
  static const unsigned char kNothing = 0;
  return s.empty() ? &kNothing : reinterpret_cast<const unsigned char*>(s.data());
}

constexpr std::string_view kArgon2idPrefix = "$argon2id$";

}  // namespace

SessionStore::SessionStore(const Clock& clock, Options options) : clock_(clock), options_(options) {
  // Start-up, not a request path: without a working libsodium there are no
  // safe session ids to hand out.
  if (!sodiumReady()) throw std::runtime_error("libsodium failed to initialise");
}

SessionStore::Session SessionStore::create() {
  const auto now = clock_.steadyNow();
  std::lock_guard lock(mutex_);
  pruneLocked(now);
  while (!sessions_.empty() && sessions_.size() >= options_.max_sessions) {
    auto oldest = std::min_element(
        sessions_.begin(), sessions_.end(),
        [](const auto& a, const auto& b) { return a.second.last_used < b.second.last_used; });
    sessions_.erase(oldest);
  }
  // A collision of 256-bit random ids does not happen; the loop only makes
  // sure an existing session could never be handed to a second browser.
  for (;;) {
    auto id = randomToken();
    auto [it, inserted] = sessions_.try_emplace(id, Entry{randomToken(), now, now});
    if (inserted) return Session{it->first, it->second.csrf};
  }
}

std::optional<SessionStore::Session> SessionStore::find(std::string_view id) {
  const auto now = clock_.steadyNow();
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  if (expired(options_, it->second.created, it->second.last_used, now)) {
    sessions_.erase(it);
    return std::nullopt;
  }
  it->second.last_used = now;
  return Session{it->first, it->second.csrf};
}

void SessionStore::remove(std::string_view id) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it != sessions_.end()) sessions_.erase(it);
}

void SessionStore::clear() {
  std::lock_guard lock(mutex_);
  sessions_.clear();
}

std::size_t SessionStore::size() const {
  const auto now = clock_.steadyNow();
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(
      std::count_if(sessions_.begin(), sessions_.end(), [&](const auto& kv) {
        return !expired(options_, kv.second.created, kv.second.last_used, now);
      }));
}

// A full sweep costs O(n), so it runs only on create(), which follows a
// (slow, rate-limited) sign-in; find() checks the one entry it looks at.
void SessionStore::pruneLocked(Clock::SteadyTime now) {
  std::erase_if(sessions_, [&](const auto& kv) {
    return expired(options_, kv.second.created, kv.second.last_used, now);
  });
}

bool constantTimeEqual(std::string_view a, std::string_view b) {
  (void)sodiumReady();
  // Hashing first makes the comparison independent of the lengths as well:
  // sodium_memcmp needs two buffers of the same size.
  std::array<unsigned char, crypto_generichash_BYTES> da{};
  std::array<unsigned char, crypto_generichash_BYTES> db{};
  if (::crypto_generichash(da.data(), da.size(), bytesOf(a), a.size(), nullptr, 0) != 0 ||
      ::crypto_generichash(db.data(), db.size(), bytesOf(b), b.size(), nullptr, 0) != 0) {
    return false;
  }
  return ::sodium_memcmp(da.data(), db.data(), da.size()) == 0;
}

bool verifyPassword(std::string_view hash, std::string_view password) {
  if (password.empty() || !sodiumReady()) return false;
  // Only argon2id: libsodium would also accept argon2i strings, which the
  // configuration never produces.
  if (!hash.starts_with(kArgon2idPrefix)) return false;
  // libsodium reads the hash as a C string inside a crypto_pwhash_STRBYTES
  // buffer: a longer hash, or one with a NUL inside (which would be cut
  // short), is not a hash it wrote.
  if (hash.size() >= crypto_pwhash_STRBYTES || hash.find('\0') != std::string_view::npos) {
    return false;
  }
  if (password.size() > crypto_pwhash_PASSWD_MAX) return false;
  std::array<char, crypto_pwhash_STRBYTES> str{};
  std::copy(hash.begin(), hash.end(), str.begin());
  return ::crypto_pwhash_str_verify(str.data(), password.data(), password.size()) == 0;
}

std::optional<std::string> cookieValue(std::string_view cookie_header, std::string_view name) {
  if (name.empty()) return std::nullopt;
  while (!cookie_header.empty()) {
    const auto semi = cookie_header.find(';');
    const auto pair = cookie_header.substr(0, semi);
    cookie_header =
        semi == std::string_view::npos ? std::string_view{} : cookie_header.substr(semi + 1);
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos) continue;  // not a cookie-pair (RFC 6265 §5.2)
    if (trimBlanks(pair.substr(0, eq)) != name) continue;
    auto value = trimBlanks(pair.substr(eq + 1));
    // RFC 6265 §4.1.1: cookie-value may be wrapped in DQUOTEs, which are not
    // part of the value.
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return std::string(value);
  }
  return std::nullopt;
}

std::optional<std::string> bearerToken(std::string_view authorization) {
  constexpr std::string_view kScheme = "Bearer";
  auto value = trimBlanks(authorization);
  if (value.size() <= kScheme.size() ||
      !equalsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return std::nullopt;
  }
  auto rest = value.substr(kScheme.size());
  // RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token.
  if (rest.front() != ' ') return std::nullopt;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty()) return std::nullopt;
  // A token is one run of visible ASCII; anything else (a second word, a
  // control character) is not a bearer credential.
  for (char c : rest) {
    if (c < '!' || c > '~') return std::nullopt;
  }
  return std::string(rest);
}

std::string sessionCookie(std::string_view name, std::string_view id, std::chrono::seconds max_age,
                          bool secure) {
  std::string out;
  out.reserve(name.size() + id.size() + 80);
  out.append(name);
  out.push_back('=');
  out.append(id);
  out.append("; Path=/; Max-Age=");
  const auto seconds = id.empty() ? 0 : std::max<std::chrono::seconds::rep>(max_age.count(), 0);
  out.append(std::to_string(seconds));
  out.append("; HttpOnly; SameSite=Strict");
  if (secure) out.append("; Secure");
  return out;
}

}  // namespace mb::admin
