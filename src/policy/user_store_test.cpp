#include "policy/user_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace mb::policy {
namespace {

constexpr const char* kPassword = "correct horse battery staple";

// One real hash for the whole binary: each costs about 0.1 s and 64 MiB.
const std::string& knownHash() {
  static const std::string hash = [] {
    auto h = UserStore::hashPassword(kPassword);
    if (!h) throw std::runtime_error(h.error().message);
    return std::move(h).value();
  }();
  return hash;
}

config::UserConfig user(std::string name, std::string hash) {
  config::UserConfig u;
  u.name = std::move(name);
  u.password_hash = std::move(hash);
  return u;
}

// One store for the tests that only read (its construction hashes once too).
const UserStore& store() {
  static const UserStore s({user("scanner", knownHash()), user("Printer", knownHash())});
  return s;
}

TEST(UserStore, HashIsArgon2idWithTheInteractiveCost) {
  const std::string& h = knownHash();
  EXPECT_EQ(h.rfind("$argon2id$v=19$m=65536,t=2,p=1$", 0), 0u) << h;
  EXPECT_TRUE(UserStore::validateHash(h).ok());
}

TEST(UserStore, EmptyPasswordIsNotHashed) {
  auto h = UserStore::hashPassword("");
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.error().message, "the password is empty");
}

TEST(UserStore, FindIsExactAndCaseSensitive) {
  ASSERT_NE(store().find("scanner"), nullptr);
  EXPECT_EQ(store().find("scanner")->name, "scanner");
  EXPECT_NE(store().find("Printer"), nullptr);
  EXPECT_EQ(store().find("printer"), nullptr);
  EXPECT_EQ(store().find("Scanner"), nullptr);
  EXPECT_EQ(store().find("scan"), nullptr);
  EXPECT_EQ(store().find(""), nullptr);
  EXPECT_EQ(store().size(), 2u);
  EXPECT_FALSE(store().empty());
}

TEST(UserStore, Verify) {
  EXPECT_TRUE(store().verify("scanner", kPassword));
  EXPECT_FALSE(store().verify("scanner", "correct horse battery stapler"));
  EXPECT_FALSE(store().verify("scanner", ""));
  EXPECT_FALSE(store().verify("SCANNER", kPassword));
  EXPECT_FALSE(store().verify("nobody", kPassword));
}

TEST(UserStore, WithoutUsersNothingVerifiesAndNoHashIsMade) {
  const auto start = std::chrono::steady_clock::now();
  const UserStore none({});
  EXPECT_TRUE(none.empty());
  EXPECT_FALSE(none.verify("scanner", kPassword));
  EXPECT_FALSE(none.verify("", ""));
  // No argon2 hash at start (a tenth of a second and 64 MiB each): well under one.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
}

TEST(UserStore, VerifyFromSeveralThreads) {
  bool a = false;
  bool b = false;
  std::thread t1([&] { a = store().verify("scanner", kPassword); });
  std::thread t2([&] { b = store().verify("Printer", "wrong"); });
  t1.join();
  t2.join();
  EXPECT_TRUE(a);
  EXPECT_FALSE(b);
}

// An unknown user must cost about as much as a wrong password, or the time
// tells which names exist. The minimum of a few runs filters out scheduling
// noise; the bound is loose so that a busy machine cannot fail it.
TEST(UserStore, UnknownUserTakesAsLongAsAWrongPassword) {
  using Clock = std::chrono::steady_clock;
  auto fastest = [](auto&& fn) {
    Clock::duration best = Clock::duration::max();
    for (int i = 0; i < 3; ++i) {
      const auto start = Clock::now();
      fn();
      best = std::min(best, Clock::now() - start);
    }
    return best;
  };
  const auto wrong = fastest([] { EXPECT_FALSE(store().verify("scanner", "wrong")); });
  const auto unknown = fastest([] { EXPECT_FALSE(store().verify("nobody", "wrong")); });
  EXPECT_GE(unknown * 2, wrong)
      << "unknown: " << std::chrono::duration_cast<std::chrono::milliseconds>(unknown).count()
      << " ms, wrong password: "
      << std::chrono::duration_cast<std::chrono::milliseconds>(wrong).count() << " ms";
}

TEST(UserStore, ValidateHashRejects) {
  auto message = [](std::string_view h) {
    Status st = UserStore::validateHash(h);
    EXPECT_FALSE(st.ok()) << h;
    return st.ok() ? std::string() : st.error().message;
  };
  EXPECT_EQ(message(""), "not an argon2id hash");
  EXPECT_EQ(message("secret"), "not an argon2id hash");
  EXPECT_EQ(message("$2y$10$abcdefghijklmnopqrstuu5Yq5t7rZ3Yg1uKxQ3x2E7CmR3I1c9a"),
            "not an argon2id hash");
  // argon2i is a different algorithm, even with the same format.
  std::string argon2i = knownHash();
  argon2i.replace(0, 10, "$argon2i$");
  EXPECT_EQ(message(argon2i), "not an argon2id hash");
  EXPECT_NE(message("$argon2id$junk").find("does not parse"), std::string::npos);
  EXPECT_NE(message(knownHash().substr(0, knownHash().size() - 10)).find("does not parse"),
            std::string::npos);
  std::string bad_cost = knownHash();
  bad_cost.replace(bad_cost.find("m=65536"), 7, "m=x");
  EXPECT_NE(message(bad_cost).find("does not parse"), std::string::npos);
  EXPECT_NE(message(knownHash() + std::string(200, 'A')).find("too long"), std::string::npos);
  EXPECT_NE(message(std::string("$argon2id$\0x", 12)).find("argon2id"), std::string::npos);
}

TEST(UserStore, ConstructionRefusesBadUsers) {
  EXPECT_THROW(UserStore({user("a", "plain")}), std::runtime_error);
  EXPECT_THROW(UserStore({user("a", knownHash()), user("a", knownHash())}), std::runtime_error);
}

}  // namespace
}  // namespace mb::policy
