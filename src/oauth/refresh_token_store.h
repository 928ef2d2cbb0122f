#pragma once

#include <array>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace mb::oauth {

/// RefreshTokenStore: where the refresh token of a delegated (per-user)
/// provider lives between runs, one per (provider name, user). The
/// EntraRefreshTokenGrant reads it before each refresh and writes the rotated
/// token back; `mailbridge oauth login` writes the first one (device code or
/// password grant). Users are compared case-insensitively (ASCII).
///
/// A refresh token is a credential: implementations never put it in an
/// Error message or a log line.
///
/// Threading: every member may be called from any number of threads at once.
class RefreshTokenStore {
 public:
  virtual ~RefreshTokenStore() = default;

  /// The stored token; nullopt when none is stored. An Error when one is
  /// stored but cannot be read or trusted (I/O error: sys_errno set; altered
  /// file or another key: sys_errno 0).
  virtual Result<std::optional<std::string>> load(std::string_view provider,
                                                  std::string_view user) = 0;

  /// Stores `refresh_token`, replacing any earlier one, durably: after
  /// success a crash leaves the new token, after failure the old one.
  virtual Status save(std::string_view provider, std::string_view user,
                      std::string_view refresh_token) = 0;

  /// Forgets the token (logout); absent is not an error.
  virtual Status remove(std::string_view provider, std::string_view user) = 0;
};

/// FileRefreshTokenStore: a RefreshTokenStore in one directory (the relay
/// passes `<state_dir>/oauth`), shared by the relay and the `mailbridge
/// oauth` commands.
///
/// Layout:
///   refresh-token.key       32 random bytes, mode 0600, made on the first save
///   <64 hex>.token          one per (provider, user), mode 0600
/// The directory is created with mode 0700. A token file is
///   "MBRT" 0x01 | 24-byte nonce | crypto_secretbox_easy(JSON)
/// (XSalsa20-Poly1305, libsodium), the JSON holding provider, user and token:
/// load() checks that they are the ones asked for, so a file renamed onto
/// another user's name is refused. The file name is a BLAKE2b hash of
/// (provider, lower-cased user) under a fixed key, so listing the directory
/// shows no addresses; it is deliberately not keyed with the secret key,
/// so that a token file under another key is reported as such instead of
/// looking absent. (Whoever may list a 0700 directory may read the key too.)
///
/// Files are written through fs::writeFileAtomic (temporary, fsync, rename,
/// fsync of the directory). The key file is made with link(2) from a
/// complete temporary, so a relay and an `oauth login` starting at once
/// agree on one key.
///
/// Threading: one mutex around every operation; other processes are kept
/// consistent by the atomic renames.
class FileRefreshTokenStore final : public RefreshTokenStore {
 public:
  explicit FileRefreshTokenStore(std::filesystem::path dir);

  // RefreshTokenStore
  Result<std::optional<std::string>> load(std::string_view provider,
                                          std::string_view user) override;
  Status save(std::string_view provider, std::string_view user,
              std::string_view refresh_token) override;
  Status remove(std::string_view provider, std::string_view user) override;

  const std::filesystem::path& directory() const { return dir_; }
  std::filesystem::path keyPath() const;
  /// Where the token of (provider, user) is or would be.
  std::filesystem::path tokenPath(std::string_view provider, std::string_view user) const;

  static constexpr std::size_t kKeySize = 32;

 private:
  using Key = std::array<unsigned char, kKeySize>;

  // Both with mutex_ held. loadKey: nullopt when there is no key file.
  Result<std::optional<Key>> loadKey();
  Result<Key> loadOrCreateKey();

  const std::filesystem::path dir_;
  std::mutex mutex_;
};

}  // namespace mb::oauth
