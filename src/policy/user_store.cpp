#include "policy/user_store.h"

#include <sodium.h>

#include <stdexcept>

#include "base/text.h"

namespace mb::policy {
namespace {

// sodium_init() is itself safe to call repeatedly, but once is enough and
// keeps the result in one place.
bool sodiumReady() {
  static const bool ready = ::sodium_init() >= 0;
  return ready;
}

constexpr std::string_view kPrefix = crypto_pwhash_argon2id_STRPREFIX;

}  // namespace

UserStore::UserStore(std::vector<config::UserConfig> users) {
  if (!sodiumReady()) throw std::runtime_error("libsodium could not be initialised");
  for (auto& u : users) {
    if (Status st = validateHash(u.password_hash); !st) {
      throw std::runtime_error("user '" + printable(u.name, 64) + "': " + st.error().message);
    }
    std::string name = u.name;
    if (users_.count(name) != 0) {
      throw std::runtime_error("user '" + printable(name, 64) + "' is given twice");
    }
    users_.emplace(std::move(name), std::move(u));
  }
  // Without users there is nobody to tell apart from a stranger, and the
  // hash would cost 64 MiB and a tenth of a second at every start and reload.
  if (users_.empty()) return;
  // A random password nobody knows: the hash is there to be verified against
  // for unknown users, at the cost of a real one.
  unsigned char random[32];
  ::randombytes_buf(random, sizeof random);
  auto dummy = hashPassword(std::string_view(reinterpret_cast<const char*>(random), sizeof random));
  ::sodium_memzero(random, sizeof random);
  if (!dummy) throw std::runtime_error("cannot create the dummy hash: " + dummy.error().message);
  dummy_hash_ = std::move(dummy).value();
}

const config::UserConfig* UserStore::find(std::string_view user) const {
  const auto it = users_.find(user);
  return it == users_.end() ? nullptr : &it->second;
}

bool UserStore::verify(std::string_view user, std::string_view password) const {
  const config::UserConfig* u = find(user);
  const std::string& hash = u != nullptr ? u->password_hash : dummy_hash_;
  if (hash.empty()) return false;  // no users at all
  const bool match =
      ::crypto_pwhash_str_verify(hash.c_str(), password.data(), password.size()) == 0;
  return u != nullptr && match;
}

Result<std::string> UserStore::hashPassword(std::string_view password) {
  if (!sodiumReady()) return Error{"libsodium could not be initialised", 0};
  if (password.empty()) return Error{"the password is empty", 0};
  if (password.size() > crypto_pwhash_PASSWD_MAX) return Error{"the password is too long", 0};
  char out[crypto_pwhash_STRBYTES] = {};
  if (::crypto_pwhash_str_alg(
          out, password.data(), password.size(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
          crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return Error{"argon2id hashing failed (out of memory?)", 0};
  }
  return std::string(out);
}

Status UserStore::validateHash(std::string_view hash) {
  if (!sodiumReady()) return Error{"libsodium could not be initialised", 0};
  if (hash.substr(0, kPrefix.size()) != kPrefix) return Error{"not an argon2id hash", 0};
  // libsodium reads a C string of less than crypto_pwhash_STRBYTES.
  if (hash.size() >= crypto_pwhash_STRBYTES || hash.find('\0') != std::string_view::npos) {
    return Error{"not a valid argon2id hash (too long)", 0};
  }
  const std::string text(hash);
  // -1 means the string did not parse; 0 or 1 only say whether its cost
  // matches the one given here.
  if (::crypto_pwhash_argon2id_str_needs_rehash(
          text.c_str(), crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE,
          crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE) == -1) {
    return Error{"not a valid argon2id hash (it does not parse)", 0};
  }
  return {};
}

}  // namespace mb::policy
