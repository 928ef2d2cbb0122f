#include "oauth/refresh_token_store.h"

#include <fcntl.h>
#include <sodium.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <utility>

#include "base/durable_file.h"
#include "base/text.h"
#include "oauth/credential_scrub.h"

namespace mb::oauth {
namespace {

using json = nlohmann::json;

constexpr std::string_view kKeyFile = "refresh-token.key";
constexpr std::string_view kTokenSuffix = ".token";
constexpr std::string_view kMagic = "MBRT\x01";
// Not a secret: it only keeps these hashes apart from any other BLAKE2b use.
constexpr std::string_view kNameKey = "mailbridge/oauth/refresh-token/1";
static_assert(kNameKey.size() >= crypto_generichash_KEYBYTES_MIN);

bool sodiumReady() {
  static const bool ready = ::sodium_init() >= 0;
  return ready;
}

std::string hex(const unsigned char* data, std::size_t len) {
  std::string out(len * 2 + 1, '\0');
  ::sodium_bin2hex(out.data(), out.size(), data, len);
  out.pop_back();
  return out;
}

std::string describe(std::string_view provider, std::string_view user) {
  return "provider '" + printable(provider, 64) + "', user " + printable(user, 254);
}

std::string loginHint(std::string_view provider) {
  return "sign in again with `mailbridge oauth login --provider " + printable(provider, 64) + "`";
}

}  // namespace

FileRefreshTokenStore::FileRefreshTokenStore(std::filesystem::path dir) : dir_(std::move(dir)) {}

std::filesystem::path FileRefreshTokenStore::keyPath() const {
  return dir_ / kKeyFile;
}

std::filesystem::path FileRefreshTokenStore::tokenPath(std::string_view provider,
                                                       std::string_view user) const {
  (void)sodiumReady();  // BLAKE2b picks its implementation there
  // Length-prefixed, so that no (provider, user) pair can spell another.
  std::string input = std::to_string(provider.size()) + ":";
  input += provider;
  input += asciiLower(user);
  unsigned char digest[32];
  ::crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(input.data()),
                       input.size(), reinterpret_cast<const unsigned char*>(kNameKey.data()),
                       kNameKey.size());
  std::string name = hex(digest, sizeof digest);
  name += kTokenSuffix;
  return dir_ / name;
}

Result<std::optional<FileRefreshTokenStore::Key>> FileRefreshTokenStore::loadKey() {
  const auto path = keyPath();
  auto data = fs::readFile(path);
  if (!data) {
    if (data.error().sys_errno == ENOENT) return std::optional<Key>();
    return data.error();
  }
  if (data->size() != kKeySize) {
    const std::size_t size = data->size();
    wipe(*data);
    return Error{"the refresh token key file " + path.string() + " is damaged (" +
                 std::to_string(size) + " bytes, expected " + std::to_string(kKeySize) + ")"};
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    spdlog::warn("oauth: the refresh token key file {} can be read by others (mode {:o}); "
                 "chmod 600 it",
                 path.string(), st.st_mode & 07777);
  }
  Key key{};
  std::copy(data->begin(), data->end(), reinterpret_cast<char*>(key.data()));
  wipe(*data);
  return std::optional<Key>(key);
}

Result<FileRefreshTokenStore::Key> FileRefreshTokenStore::loadOrCreateKey() {
  if (Status st = fs::makeDirectories(dir_, 0700); !st) return st.error();
  auto existing = loadKey();
  if (!existing) return existing.error();
  if (*existing) {
    Key found = **existing;
    ::sodium_memzero((*existing)->data(), kKeySize);
    return found;
  }

  Key key{};
  ::randombytes_buf(key.data(), key.size());
  const auto path = keyPath();
  unsigned char suffix[8];
  ::randombytes_buf(suffix, sizeof suffix);
  auto tmp = path;
  tmp += ".tmp." + hex(suffix, sizeof suffix);

  auto writer = fs::FileWriter::create(tmp, 0600);
  if (!writer) return writer.error();
  Status st = writer->write(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
  if (st) st = writer->sync();
  if (st) st = writer->close();
  if (!st) {
    ::unlink(tmp.c_str());
    return st.error();
  }
  // link(2) fails when the name exists: of two processes making a key at
  // once, one wins and the other uses the winner's key.
  const int linked = ::link(tmp.c_str(), path.c_str());
  const int link_errno = errno;
  ::unlink(tmp.c_str());
  if (linked != 0) {
    ::sodium_memzero(key.data(), key.size());
    if (link_errno != EEXIST) return Error::fromErrno("link " + path.string(), link_errno);
    auto theirs = loadKey();
    if (!theirs) return theirs.error();
    if (!*theirs) return Error{"the refresh token key file " + path.string() + " vanished"};
    Key found = **theirs;
    ::sodium_memzero((*theirs)->data(), kKeySize);
    return found;
  }
  if (Status synced = fs::syncDirectory(dir_); !synced) return synced.error();
  spdlog::info("oauth: created the refresh token key {}", path.string());
  return key;
}

Result<std::optional<std::string>> FileRefreshTokenStore::load(std::string_view provider,
                                                               std::string_view user) {
  if (!sodiumReady()) return Error{"libsodium could not be initialised"};
  std::lock_guard lock(mutex_);
  const auto path = tokenPath(provider, user);
  auto data = fs::readFile(path);
  if (!data) {
    if (data.error().sys_errno == ENOENT) return std::optional<std::string>();
    return data.error();
  }
  auto key = loadKey();
  if (!key) return key.error();
  if (!*key) {
    return Error{"the refresh token of " + describe(provider, user) + " (" + path.string() +
                 ") cannot be read: the key file " + keyPath().string() + " is missing; " +
                 loginHint(provider)};
  }

  const std::string& file = *data;
  constexpr std::size_t kOverhead = kMagic.size() + crypto_secretbox_NONCEBYTES;
  if (file.size() < kOverhead + crypto_secretbox_MACBYTES ||
      std::string_view(file).substr(0, kMagic.size()) != kMagic) {
    ::sodium_memzero((*key)->data(), kKeySize);
    return Error{"the refresh token file " + path.string() + " of " + describe(provider, user) +
                 " is not in the expected format (damaged?); " + loginHint(provider)};
  }
  const auto* nonce = reinterpret_cast<const unsigned char*>(file.data() + kMagic.size());
  const auto* cipher = reinterpret_cast<const unsigned char*>(file.data() + kOverhead);
  const std::size_t cipher_len = file.size() - kOverhead;
  std::string plain(cipher_len - crypto_secretbox_MACBYTES, '\0');
  const int opened = ::crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(plain.data()),
                                                  cipher, cipher_len, nonce, (*key)->data());
  ::sodium_memzero((*key)->data(), kKeySize);
  if (opened != 0) {
    return Error{"the refresh token file " + path.string() + " of " + describe(provider, user) +
                 " cannot be decrypted: it was altered, or written under another key than " +
                 keyPath().string() + "; " + loginHint(provider)};
  }

  const json doc = json::parse(plain, nullptr, /*allow_exceptions=*/false);
  wipe(plain);
  const auto field = [&doc](const char* name) -> std::string {
    if (!doc.is_object()) return {};
    const auto it = doc.find(name);
    return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::string token = field("refresh_token");
  if (token.empty()) {
    return Error{"the refresh token file " + path.string() + " of " + describe(provider, user) +
                 " holds no token; " + loginHint(provider)};
  }
  if (field("provider") != provider || field("user") != asciiLower(user)) {
    wipe(token);
    return Error{"the refresh token file " + path.string() + " does not belong to " +
                 describe(provider, user) + " (copied or renamed?); " + loginHint(provider)};
  }
  return std::optional<std::string>(std::move(token));
}

Status FileRefreshTokenStore::save(std::string_view provider, std::string_view user,
                                   std::string_view refresh_token) {
  if (!sodiumReady()) return Error{"libsodium could not be initialised"};
  if (refresh_token.empty()) return Error{"refusing to store an empty refresh token"};
  std::lock_guard lock(mutex_);
  auto key = loadOrCreateKey();
  if (!key) return key.error();

  json doc = {{"v", 1},
              {"provider", std::string(provider)},
              {"user", asciiLower(user)},
              {"refresh_token", std::string(refresh_token)}};
  std::string plain = doc.dump(-1, ' ', false, json::error_handler_t::replace);
  if (auto it = doc.find("refresh_token"); it != doc.end()) {
    wipe(it->get_ref<std::string&>());
  }

  std::string file(kMagic);
  file.resize(kMagic.size() + crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES +
              plain.size());
  auto* nonce = reinterpret_cast<unsigned char*>(file.data() + kMagic.size());
  ::randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
  ::crypto_secretbox_easy(nonce + crypto_secretbox_NONCEBYTES,
                          reinterpret_cast<const unsigned char*>(plain.data()), plain.size(), nonce,
                          key->data());
  ::sodium_memzero(key->data(), kKeySize);
  wipe(plain);

  const auto path = tokenPath(provider, user);
  if (Status st = fs::writeFileAtomic(path, file, 0600); !st) {
    return Error{"cannot store the refresh token of " + describe(provider, user) + ": " +
                     st.error().message,
                 st.error().sys_errno};
  }
  return {};
}

Status FileRefreshTokenStore::remove(std::string_view provider, std::string_view user) {
  std::lock_guard lock(mutex_);
  const auto path = tokenPath(provider, user);
  if (Status st = fs::removeFile(path); !st) return st;
  if (::access(dir_.c_str(), F_OK) != 0) return {};
  return fs::syncDirectory(dir_);
}

}  // namespace mb::oauth
