#include "admin/http_auth.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <array>
#include <chrono>
#include <optional>
#include <set>
#include <string>

#include "base/clock.h"

namespace mb::admin {
namespace {

using namespace std::chrono_literals;

SessionStore::Options options(std::chrono::seconds idle, std::chrono::seconds max_age,
                              std::size_t max_sessions) {
  SessionStore::Options o;
  o.idle_timeout = idle;
  o.max_age = max_age;
  o.max_sessions = max_sessions;
  return o;
}

bool isBase64Url(const std::string& s) {
  for (char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// --- SessionStore ---

TEST(SessionStoreTest, IdsAndCsrfTokensAreDistinct43CharBase64Url) {
  ManualClock clock;
  SessionStore store(clock, options(30min, 12h, 1000));
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    const auto s = store.create();
    EXPECT_EQ(s.id.size(), 43u);
    EXPECT_EQ(s.csrf.size(), 43u);
    EXPECT_TRUE(isBase64Url(s.id)) << s.id;
    EXPECT_TRUE(isBase64Url(s.csrf)) << s.csrf;
    EXPECT_TRUE(seen.insert(s.id).second) << "repeated " << s.id;
    EXPECT_TRUE(seen.insert(s.csrf).second) << "repeated " << s.csrf;
  }
  EXPECT_EQ(store.size(), 50u);
}

TEST(SessionStoreTest, FindAfterCreateReturnsTheSameSession) {
  ManualClock clock;
  SessionStore store(clock, options(30min, 12h, 1000));
  const auto a = store.create();
  const auto b = store.create();
  const auto found = store.find(a.id);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, a.id);
  EXPECT_EQ(found->csrf, a.csrf);
  const auto found_b = store.find(b.id);
  ASSERT_TRUE(found_b.has_value());
  EXPECT_EQ(found_b->csrf, b.csrf);
  EXPECT_FALSE(store.find("").has_value());
  EXPECT_FALSE(store.find("no-such-session").has_value());
  EXPECT_FALSE(store.find(a.id.substr(0, 42)).has_value());
}

TEST(SessionStoreTest, IdleTimeoutEndsASessionAndUseResetsIt) {
  ManualClock clock;
  SessionStore store(clock, options(10min, 12h, 1000));
  const auto s = store.create();
  clock.advance(10min - 1s);
  ASSERT_TRUE(store.find(s.id).has_value());  // resets the idle timer
  clock.advance(10min - 1s);
  ASSERT_TRUE(store.find(s.id).has_value());
  clock.advance(10min);  // exactly the idle timeout: over
  EXPECT_FALSE(store.find(s.id).has_value());
  EXPECT_EQ(store.size(), 0u);
  clock.advance(-10min);  // gone for good, not merely hidden
  EXPECT_FALSE(store.find(s.id).has_value());
}

TEST(SessionStoreTest, IdleSessionsAreNotCounted) {
  ManualClock clock;
  SessionStore store(clock, options(10min, 12h, 1000));
  (void)store.create();
  clock.advance(5min);
  (void)store.create();
  EXPECT_EQ(store.size(), 2u);
  clock.advance(5min);
  EXPECT_EQ(store.size(), 1u);
  clock.advance(5min);
  EXPECT_EQ(store.size(), 0u);
}

TEST(SessionStoreTest, MaxAgeEndsASessionInSpiteOfUse) {
  ManualClock clock;
  SessionStore store(clock, options(10min, 1h, 1000));
  const auto s = store.create();
  for (int i = 0; i < 11; ++i) {
    clock.advance(5min);
    ASSERT_TRUE(store.find(s.id).has_value()) << i;
  }
  clock.advance(5min - 1s);  // 59:59 after creation
  ASSERT_TRUE(store.find(s.id).has_value());
  clock.advance(1s);  // exactly max_age
  EXPECT_FALSE(store.find(s.id).has_value());
  EXPECT_EQ(store.size(), 0u);
}

TEST(SessionStoreTest, CapDropsTheLeastRecentlyUsed) {
  ManualClock clock;
  SessionStore store(clock, options(30min, 12h, 3));
  const auto a = store.create();
  clock.advance(1s);
  const auto b = store.create();
  clock.advance(1s);
  const auto c = store.create();
  clock.advance(1s);
  ASSERT_TRUE(store.find(a.id).has_value());  // b is now the least recently used
  clock.advance(1s);
  const auto d = store.create();
  EXPECT_EQ(store.size(), 3u);
  EXPECT_FALSE(store.find(b.id).has_value());
  clock.advance(1s);
  EXPECT_TRUE(store.find(c.id).has_value());
  clock.advance(1s);
  EXPECT_TRUE(store.find(a.id).has_value());
  clock.advance(1s);
  EXPECT_TRUE(store.find(d.id).has_value());
  // Use order now c, a, d: c goes next, then a.
  clock.advance(1s);
  const auto e = store.create();
  EXPECT_EQ(store.size(), 3u);
  EXPECT_FALSE(store.find(c.id).has_value());
  clock.advance(1s);
  const auto f = store.create();
  EXPECT_EQ(store.size(), 3u);
  EXPECT_FALSE(store.find(a.id).has_value());
  EXPECT_TRUE(store.find(d.id).has_value());
  EXPECT_TRUE(store.find(e.id).has_value());
  EXPECT_TRUE(store.find(f.id).has_value());
}

TEST(SessionStoreTest, ExpiredSessionsGoBeforeLiveOnesAreDropped) {
  ManualClock clock;
  SessionStore store(clock, options(30min, 1h, 2));
  const auto a = store.create();
  clock.advance(20min);
  const auto b = store.create();
  clock.advance(5min);
  ASSERT_TRUE(store.find(a.id).has_value());
  clock.advance(20min);
  ASSERT_TRUE(store.find(b.id).has_value());
  clock.advance(5min);
  ASSERT_TRUE(store.find(a.id).has_value());  // a: used last, but 50 min old
  clock.advance(10min);
  // a has reached max_age; b, though least recently used, is live and stays.
  const auto c = store.create();
  EXPECT_EQ(store.size(), 2u);
  EXPECT_FALSE(store.find(a.id).has_value());
  EXPECT_TRUE(store.find(b.id).has_value());
  EXPECT_TRUE(store.find(c.id).has_value());
}

TEST(SessionStoreTest, ZeroCapStillKeepsTheNewestSession) {
  ManualClock clock;
  SessionStore store(clock, options(30min, 12h, 0));
  const auto a = store.create();
  clock.advance(1s);
  const auto b = store.create();
  EXPECT_EQ(store.size(), 1u);
  EXPECT_FALSE(store.find(a.id).has_value());
  EXPECT_TRUE(store.find(b.id).has_value());
}

TEST(SessionStoreTest, RemoveAndClear) {
  ManualClock clock;
  SessionStore store(clock, options(30min, 12h, 1000));
  const auto a = store.create();
  const auto b = store.create();
  const auto c = store.create();
  store.remove(b.id);
  store.remove("no-such-session");
  EXPECT_EQ(store.size(), 2u);
  EXPECT_TRUE(store.find(a.id).has_value());
  EXPECT_FALSE(store.find(b.id).has_value());
  EXPECT_TRUE(store.find(c.id).has_value());
  store.clear();
  EXPECT_EQ(store.size(), 0u);
  EXPECT_FALSE(store.find(a.id).has_value());
  EXPECT_FALSE(store.find(c.id).has_value());
  const auto d = store.create();
  EXPECT_TRUE(store.find(d.id).has_value());
  EXPECT_EQ(store.size(), 1u);
}

// --- constantTimeEqual ---

TEST(ConstantTimeEqualTest, ComparesWholeStrings) {
  EXPECT_TRUE(constantTimeEqual("", ""));
  EXPECT_TRUE(constantTimeEqual("token-123", "token-123"));
  EXPECT_FALSE(constantTimeEqual("token-123", "token-124"));
  EXPECT_FALSE(constantTimeEqual("token-123", "token-12"));
  EXPECT_FALSE(constantTimeEqual("token-12", "token-123"));
  EXPECT_FALSE(constantTimeEqual("", "x"));
  EXPECT_FALSE(constantTimeEqual("Token-123", "token-123"));
  const std::string with_nul("ab\0c", 4);
  EXPECT_TRUE(constantTimeEqual(with_nul, std::string("ab\0c", 4)));
  EXPECT_FALSE(constantTimeEqual(with_nul, std::string("ab\0d", 4)));
  EXPECT_FALSE(constantTimeEqual(with_nul, "ab"));
}

// --- verifyPassword ---

class PasswordTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_GE(::sodium_init(), 0);
    std::array<char, crypto_pwhash_STRBYTES> out{};
    const std::string password = "correct horse battery staple";
    ASSERT_EQ(::crypto_pwhash_str(out.data(), password.data(), password.size(),
                                  crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN),
              0);
    hash_ = new std::string(out.data());
  }
  static void TearDownTestSuite() {
    delete hash_;
    hash_ = nullptr;
  }
  static const std::string& hash() { return *hash_; }

  static inline std::string* hash_ = nullptr;
};

TEST_F(PasswordTest, RightPasswordMatches) {
  ASSERT_EQ(hash().rfind("$argon2id$", 0), 0u) << hash();
  EXPECT_TRUE(verifyPassword(hash(), "correct horse battery staple"));
}

TEST_F(PasswordTest, WrongPasswordsDoNotMatch) {
  EXPECT_FALSE(verifyPassword(hash(), "correct horse battery stapl"));
  EXPECT_FALSE(verifyPassword(hash(), "correct horse battery staple "));
  EXPECT_FALSE(verifyPassword(hash(), "Correct horse battery staple"));
  EXPECT_FALSE(verifyPassword(hash(), std::string("correct horse battery staple\0", 29)));
}

TEST_F(PasswordTest, EmptyPasswordNeverMatches) {
  std::array<char, crypto_pwhash_STRBYTES> out{};
  ASSERT_EQ(::crypto_pwhash_str(out.data(), "", 0, crypto_pwhash_OPSLIMIT_MIN,
                                crypto_pwhash_MEMLIMIT_MIN),
            0);
  EXPECT_FALSE(verifyPassword(out.data(), ""));
  EXPECT_FALSE(verifyPassword(hash(), ""));
}

TEST_F(PasswordTest, GarbageAndForeignHashesAreRejected) {
  const std::string password = "correct horse battery staple";
  EXPECT_FALSE(verifyPassword("", password));
  EXPECT_FALSE(verifyPassword("not a hash", password));
  EXPECT_FALSE(verifyPassword("$argon2id$", password));
  EXPECT_FALSE(verifyPassword("$argon2id$v=19$junk", password));
  EXPECT_FALSE(verifyPassword(hash().substr(0, hash().size() - 4), password));
  EXPECT_FALSE(verifyPassword(hash() + std::string("\0", 1), password));
  EXPECT_FALSE(verifyPassword(hash() + std::string(crypto_pwhash_STRBYTES, 'A'), password));
  EXPECT_FALSE(verifyPassword(password, password));

  // An argon2i hash of the right password: libsodium would accept it, we do not.
  std::array<char, crypto_pwhash_argon2i_STRBYTES> argon2i{};
  ASSERT_EQ(::crypto_pwhash_argon2i_str(argon2i.data(), password.data(), password.size(),
                                        crypto_pwhash_argon2i_OPSLIMIT_MIN,
                                        crypto_pwhash_argon2i_MEMLIMIT_MIN),
            0);
  ASSERT_EQ(::crypto_pwhash_str_verify(argon2i.data(), password.data(), password.size()), 0);
  EXPECT_FALSE(verifyPassword(argon2i.data(), password));
}

// --- cookieValue ---

TEST(CookieValueTest, FindsTheNamedCookie) {
  EXPECT_EQ(cookieValue("a=1; mb_session=XYZ; b=2", "mb_session"),
            std::optional<std::string>("XYZ"));
  EXPECT_EQ(cookieValue("mb_session=XYZ", "mb_session"), std::optional<std::string>("XYZ"));
  EXPECT_EQ(cookieValue("a=1; b=2", "b"), std::optional<std::string>("2"));
  EXPECT_EQ(cookieValue("a=1; b=2", "a"), std::optional<std::string>("1"));
}

TEST(CookieValueTest, ToleratesBlanks) {
  EXPECT_EQ(cookieValue("  a = 1 ;mb_session =  XYZ\t;b=2", "mb_session"),
            std::optional<std::string>("XYZ"));
  EXPECT_EQ(cookieValue("a=1;mb_session=XYZ;", "mb_session"), std::optional<std::string>("XYZ"));
  EXPECT_EQ(cookieValue(";; ;mb_session=XYZ", "mb_session"), std::optional<std::string>("XYZ"));
}

TEST(CookieValueTest, FirstOccurrenceWins) {
  EXPECT_EQ(cookieValue("mb_session=first; mb_session=second", "mb_session"),
            std::optional<std::string>("first"));
  EXPECT_EQ(cookieValue("mb_session=; mb_session=second", "mb_session"),
            std::optional<std::string>(""));
}

TEST(CookieValueTest, StripsQuotes) {
  EXPECT_EQ(cookieValue("mb_session=\"XYZ\"", "mb_session"), std::optional<std::string>("XYZ"));
  EXPECT_EQ(cookieValue("mb_session= \"XYZ\" ; a=1", "mb_session"),
            std::optional<std::string>("XYZ"));
  EXPECT_EQ(cookieValue("mb_session=\"\"", "mb_session"), std::optional<std::string>(""));
  // A lone quote is not a quoted value.
  EXPECT_EQ(cookieValue("mb_session=\"", "mb_session"), std::optional<std::string>("\""));
  EXPECT_EQ(cookieValue("mb_session=\"XYZ", "mb_session"), std::optional<std::string>("\"XYZ"));
}

TEST(CookieValueTest, ValueMayContainEquals) {
  EXPECT_EQ(cookieValue("t=a=b==; mb_session=x", "t"), std::optional<std::string>("a=b=="));
}

TEST(CookieValueTest, NamesMatchExactly) {
  EXPECT_EQ(cookieValue("", "mb_session"), std::nullopt);
  EXPECT_EQ(cookieValue("a=1; b=2", "mb_session"), std::nullopt);
  EXPECT_EQ(cookieValue("MB_SESSION=XYZ", "mb_session"), std::nullopt);
  EXPECT_EQ(cookieValue("mb_session_old=XYZ", "mb_session"), std::nullopt);
  EXPECT_EQ(cookieValue("xmb_session=XYZ", "mb_session"), std::nullopt);
  EXPECT_EQ(cookieValue("mb_session", "mb_session"), std::nullopt);  // no '='
  EXPECT_EQ(cookieValue("mb_session; mb_session=XYZ", "mb_session"),
            std::optional<std::string>("XYZ"));
  EXPECT_EQ(cookieValue("a=1; =XYZ", ""), std::nullopt);
}

TEST(CookieValueTest, EmptyValue) {
  EXPECT_EQ(cookieValue("mb_session=", "mb_session"), std::optional<std::string>(""));
  EXPECT_EQ(cookieValue("mb_session=  ; a=1", "mb_session"), std::optional<std::string>(""));
}

// --- bearerToken ---

TEST(BearerTokenTest, ExtractsTheToken) {
  EXPECT_EQ(bearerToken("Bearer abc.DEF-123_~+/="), std::optional<std::string>("abc.DEF-123_~+/="));
  EXPECT_EQ(bearerToken("bearer abc"), std::optional<std::string>("abc"));
  EXPECT_EQ(bearerToken("BEARER abc"), std::optional<std::string>("abc"));
  EXPECT_EQ(bearerToken("BeArEr abc"), std::optional<std::string>("abc"));
  EXPECT_EQ(bearerToken("Bearer    abc"), std::optional<std::string>("abc"));
  EXPECT_EQ(bearerToken("Bearer abc  \t "), std::optional<std::string>("abc"));
  EXPECT_EQ(bearerToken("  Bearer abc"), std::optional<std::string>("abc"));
}

TEST(BearerTokenTest, RejectsOtherSchemesAndEmptyTokens) {
  EXPECT_EQ(bearerToken(""), std::nullopt);
  EXPECT_EQ(bearerToken("Bearer"), std::nullopt);
  EXPECT_EQ(bearerToken("Bearer "), std::nullopt);
  EXPECT_EQ(bearerToken("Bearer     "), std::nullopt);
  EXPECT_EQ(bearerToken("Bearer \t"), std::nullopt);
  EXPECT_EQ(bearerToken("Bearerabc"), std::nullopt);
  EXPECT_EQ(bearerToken("Bearer\tabc"), std::nullopt);
  EXPECT_EQ(bearerToken("Basic dXNlcjpwYXNz"), std::nullopt);
  EXPECT_EQ(bearerToken("Bear abc"), std::nullopt);
  EXPECT_EQ(bearerToken("Bearers abc"), std::nullopt);
  EXPECT_EQ(bearerToken("Token abc"), std::nullopt);
  EXPECT_EQ(bearerToken("abc"), std::nullopt);
}

TEST(BearerTokenTest, RejectsTokensThatAreNotOneWord) {
  EXPECT_EQ(bearerToken("Bearer abc def"), std::nullopt);
  EXPECT_EQ(bearerToken("Bearer abc\tdef"), std::nullopt);
  EXPECT_EQ(bearerToken(std::string("Bearer abc\0def", 14)), std::nullopt);
  EXPECT_EQ(bearerToken("Bearer abc\r\n"), std::nullopt);
}

// --- sessionCookie ---

TEST(SessionCookieTest, SetsTheSession) {
  EXPECT_EQ(sessionCookie("mb_session", "ID123", 12h, false),
            "mb_session=ID123; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict");
  EXPECT_EQ(sessionCookie("mb_session", "ID123", 12h, true),
            "mb_session=ID123; Path=/; Max-Age=43200; HttpOnly; SameSite=Strict; Secure");
  EXPECT_EQ(sessionCookie("other", "x", 90s, false),
            "other=x; Path=/; Max-Age=90; HttpOnly; SameSite=Strict");
}

TEST(SessionCookieTest, EmptyIdDeletesTheCookie) {
  EXPECT_EQ(sessionCookie("mb_session", "", 12h, false),
            "mb_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
  EXPECT_EQ(sessionCookie("mb_session", "", 12h, true),
            "mb_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure");
}

TEST(SessionCookieTest, RoundTripsThroughCookieValue) {
  ManualClock clock;
  SessionStore store(clock, options(30min, 12h, 10));
  const auto s = store.create();
  const auto set_cookie = sessionCookie("mb_session", s.id, 12h, true);
  // The browser sends back the name=value part only.
  const auto pair = set_cookie.substr(0, set_cookie.find(';'));
  const auto id = cookieValue("theme=dark; " + pair, "mb_session");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(*id, s.id);
  EXPECT_TRUE(store.find(*id).has_value());
}

}  // namespace
}  // namespace mb::admin
