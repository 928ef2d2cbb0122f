#include "oauth/refresh_token_store.h"

#include <gtest/gtest.h>
#include <sodium.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "base/durable_file.h"
#include "base/testing/temp_dir.h"

namespace mb::oauth {
namespace {

namespace stdfs = std::filesystem;
using mb::testing::TempDir;

const std::string kToken = "1.AXYZrefresh-token-value_0123456789abcdef";
constexpr const char* kProvider = "graph-main";
constexpr const char* kUser = "Alice.Relay@Contoso.example";

unsigned modeOf(const stdfs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

std::string readAll(const stdfs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void writeAll(const stdfs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << data;
}

std::vector<std::string> listing(const stdfs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : stdfs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

TEST(FileRefreshTokenStore, RoundTrip) {
  TempDir tmp;
  FileRefreshTokenStore store(tmp.path() / "oauth");
  ASSERT_TRUE(store.save(kProvider, kUser, kToken));

  auto loaded = store.load(kProvider, kUser);
  ASSERT_TRUE(loaded) << loaded.error().message;
  ASSERT_TRUE(*loaded);
  EXPECT_EQ(**loaded, kToken);

  // Users compare case-insensitively; providers and users are kept apart.
  auto lower = store.load(kProvider, "alice.relay@contoso.example");
  ASSERT_TRUE(lower && *lower);
  EXPECT_EQ(**lower, kToken);
  auto other_user = store.load(kProvider, "bob@contoso.example");
  ASSERT_TRUE(other_user);
  EXPECT_FALSE(*other_user);
  auto other_provider = store.load("graph-other", kUser);
  ASSERT_TRUE(other_provider);
  EXPECT_FALSE(*other_provider);

  // Replaced, then removed.
  ASSERT_TRUE(store.save(kProvider, kUser, "1.Anext-token"));
  EXPECT_EQ(**store.load(kProvider, kUser), "1.Anext-token");
  ASSERT_TRUE(store.remove(kProvider, kUser));
  auto gone = store.load(kProvider, kUser);
  ASSERT_TRUE(gone);
  EXPECT_FALSE(*gone);
  EXPECT_TRUE(store.remove(kProvider, kUser));  // absent is fine

  // A second store on the same directory (the relay and `oauth login`).
  ASSERT_TRUE(store.save(kProvider, kUser, kToken));
  FileRefreshTokenStore again(tmp.path() / "oauth");
  EXPECT_EQ(**again.load(kProvider, kUser), kToken);

  EXPECT_FALSE(store.save(kProvider, kUser, ""));
}

TEST(FileRefreshTokenStore, AbsentWithoutCreatingAnything) {
  TempDir tmp;
  FileRefreshTokenStore store(tmp.path() / "oauth");
  auto loaded = store.load(kProvider, kUser);
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_FALSE(*loaded);
  EXPECT_FALSE(stdfs::exists(tmp.path() / "oauth"));
}

TEST(FileRefreshTokenStore, FileModesAndLayout) {
  TempDir tmp;
  const auto dir = tmp.path() / "state" / "oauth";
  FileRefreshTokenStore store(dir);
  ASSERT_TRUE(store.save(kProvider, kUser, kToken));
  ASSERT_TRUE(store.save(kProvider, "bob@contoso.example", kToken + "-bob"));

  EXPECT_EQ(modeOf(dir), 0700u);
  EXPECT_EQ(store.keyPath(), dir / "refresh-token.key");
  EXPECT_EQ(modeOf(store.keyPath()), 0600u);
  EXPECT_EQ(stdfs::file_size(store.keyPath()), FileRefreshTokenStore::kKeySize);
  const auto token_file = store.tokenPath(kProvider, kUser);
  EXPECT_EQ(token_file.parent_path(), dir);
  EXPECT_EQ(modeOf(token_file), 0600u);

  // The key, two token files, and no temporary left behind.
  const auto names = listing(dir);
  EXPECT_EQ(names.size(), 3u);
  for (const auto& name : names) {
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << name;
    // No address in the names.
    EXPECT_EQ(name.find("alice"), std::string::npos) << name;
    EXPECT_EQ(name.find("Alice"), std::string::npos) << name;
    EXPECT_EQ(name.find("contoso"), std::string::npos) << name;
    EXPECT_EQ(name.find("bob"), std::string::npos) << name;
  }
  EXPECT_EQ(token_file.filename().string().size(), 64u + 6u);  // hex + ".token"

  // Nothing readable in the file either.
  const std::string content = readAll(token_file);
  EXPECT_EQ(content.find(kToken), std::string::npos);
  EXPECT_EQ(content.find("contoso"), std::string::npos);
  EXPECT_EQ(content.find(kProvider), std::string::npos);
  EXPECT_EQ(content.rfind("MBRT", 0), 0u);

  // The same token saved twice is encrypted under fresh nonces.
  ASSERT_TRUE(store.save(kProvider, kUser, kToken));
  EXPECT_NE(readAll(token_file), content);
  // And the key stays.
  const std::string key = readAll(store.keyPath());
  ASSERT_TRUE(store.save(kProvider, kUser, kToken));
  EXPECT_EQ(readAll(store.keyPath()), key);
}

TEST(FileRefreshTokenStore, TamperedFileIsAnErrorNotACrash) {
  TempDir tmp;
  FileRefreshTokenStore store(tmp.path());
  ASSERT_TRUE(store.save(kProvider, kUser, kToken));
  const auto path = store.tokenPath(kProvider, kUser);
  const std::string good = readAll(path);

  // Every single flipped bit after the header is caught by the MAC.
  for (std::size_t i = 5; i < good.size(); i += 7) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    writeAll(path, bad);
    auto loaded = store.load(kProvider, kUser);
    ASSERT_FALSE(loaded) << "flipped byte " << i;
    EXPECT_EQ(loaded.error().sys_errno, 0);
    EXPECT_NE(loaded.error().message.find("cannot be decrypted"), std::string::npos)
        << loaded.error().message;
    EXPECT_NE(loaded.error().message.find("altered"), std::string::npos);
    EXPECT_NE(loaded.error().message.find("mailbridge oauth login --provider graph-main"),
              std::string::npos)
        << loaded.error().message;
  }

  for (const std::string& bad :
       {std::string(), good.substr(0, 20), "XXXX" + good.substr(4), good.substr(0, good.size() - 1),
        std::string(4096, '\0')}) {
    writeAll(path, bad);
    auto loaded = store.load(kProvider, kUser);
    ASSERT_FALSE(loaded) << bad.size();
    EXPECT_EQ(loaded.error().message.find(kToken), std::string::npos);
  }

  writeAll(path, good);
  EXPECT_EQ(**store.load(kProvider, kUser), kToken);
}

TEST(FileRefreshTokenStore, WrongKey) {
  TempDir tmp;
  FileRefreshTokenStore store(tmp.path() / "a");
  ASSERT_TRUE(store.save(kProvider, kUser, kToken));

  // The file copied to another store, which has a key of its own.
  FileRefreshTokenStore other(tmp.path() / "b");
  ASSERT_TRUE(other.save("unrelated", "x@contoso.example", "1.Aunrelated"));
  stdfs::copy_file(store.tokenPath(kProvider, kUser), other.tokenPath(kProvider, kUser));
  auto loaded = other.load(kProvider, kUser);
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().message.find("another key"), std::string::npos)
      << loaded.error().message;
  EXPECT_EQ(loaded.error().message.find(kToken), std::string::npos);

  // The key file replaced in place.
  std::string key(FileRefreshTokenStore::kKeySize, '\0');
  ::randombytes_buf(key.data(), key.size());
  ASSERT_TRUE(fs::writeFileAtomic(store.keyPath(), key, 0600));
  auto replaced = store.load(kProvider, kUser);
  ASSERT_FALSE(replaced);
  EXPECT_NE(replaced.error().message.find("another key"), std::string::npos);
}

TEST(FileRefreshTokenStore, MissingOrDamagedKey) {
  TempDir tmp;
  FileRefreshTokenStore store(tmp.path());
  ASSERT_TRUE(store.save(kProvider, kUser, kToken));
  const std::string key = readAll(store.keyPath());

  writeAll(store.keyPath(), key.substr(0, 16));
  auto short_key = store.load(kProvider, kUser);
  ASSERT_FALSE(short_key);
  EXPECT_NE(short_key.error().message.find("damaged"), std::string::npos)
      << short_key.error().message;
  // A save does not paper over a damaged key with a new one.
  EXPECT_FALSE(store.save(kProvider, kUser, kToken));

  stdfs::remove(store.keyPath());
  auto missing = store.load(kProvider, kUser);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("key file"), std::string::npos);
  EXPECT_NE(missing.error().message.find("missing"), std::string::npos);
}

TEST(FileRefreshTokenStore, AFileMovedToAnotherUsersNameIsRefused) {
  TempDir tmp;
  FileRefreshTokenStore store(tmp.path());
  ASSERT_TRUE(store.save(kProvider, kUser, kToken));
  ASSERT_TRUE(store.save(kProvider, "bob@contoso.example", "1.Abob-token"));
  stdfs::copy_file(store.tokenPath(kProvider, kUser), store.tokenPath(kProvider, "bob@contoso.example"),
                   stdfs::copy_options::overwrite_existing);
  auto loaded = store.load(kProvider, "bob@contoso.example");
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().message.find("does not belong"), std::string::npos)
      << loaded.error().message;
}

TEST(FileRefreshTokenStore, ConcurrentUse) {
  TempDir tmp;
  // Two stores on one directory, as the relay and `oauth login` would be,
  // both making the key at once: they must end up with the same one.
  FileRefreshTokenStore a(tmp.path() / "oauth");
  FileRefreshTokenStore b(tmp.path() / "oauth");
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      FileRefreshTokenStore& store = t % 2 == 0 ? a : b;
      const std::string user = "user" + std::to_string(t) + "@contoso.example";
      for (int i = 0; i < 20; ++i) {
        const std::string token = "1.Atoken-" + std::to_string(t) + "-" + std::to_string(i);
        if (!store.save(kProvider, user, token)) ++failures;
        auto loaded = store.load(kProvider, user);
        if (!loaded || !*loaded || **loaded != token) ++failures;
        // The other threads' users stay readable throughout.
        auto shared = store.load(kProvider, "user0@contoso.example");
        if (!shared) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < 4; ++t) {
    auto loaded = a.load(kProvider, "user" + std::to_string(t) + "@contoso.example");
    ASSERT_TRUE(loaded && *loaded);
    EXPECT_EQ(**loaded, "1.Atoken-" + std::to_string(t) + "-19");
  }
  EXPECT_EQ(listing(tmp.path() / "oauth").size(), 5u);
}

}  // namespace
}  // namespace mb::oauth
