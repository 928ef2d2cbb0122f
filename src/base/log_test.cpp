#include "base/log.h"

#include <gtest/gtest.h>
#include <time.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace mb::log {
namespace {

namespace fs = std::filesystem;

// Noon, local time, on the given day: what "today" is for the purge.
std::chrono::system_clock::time_point localNoon(int y, int m, int d) {
  tm t{};
  t.tm_year = y - 1900;
  t.tm_mon = m - 1;
  t.tm_mday = d;
  t.tm_hour = 12;
  t.tm_isdst = -1;
  return std::chrono::system_clock::from_time_t(::mktime(&t));
}

class PurgeLogFilesTest : public ::testing::Test {
 protected:
  PurgeLogFilesTest() {
    dir_ = fs::temp_directory_path() /
           ("mb-logpurge-" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~PurgeLogFilesTest() override { fs::remove_all(dir_); }

  void touch(const std::string& name) { std::ofstream(dir_ / name) << "x\n"; }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
};

TEST_F(PurgeLogFilesTest, DeletesDailyFilesOlderThanTheRetention) {
  for (const char* n :
       {"mailbridge_2026-11-01.log", "mailbridge_2026-11-24.log", "mailbridge_2026-11-25.log",
        "mailbridge_2026-12-02.log", "mailbridge.log", "other_2020-01-01.log",
        "mailbridge_2020-01-01.log.gz", "mailbridge_2020-13-01.log", "mailbridge_20x0-01-01.log"}) {
    touch(n);
  }
  auto n = purgeLogFiles(dir_ / "mailbridge.log", 7, localNoon(2026, 12, 2));
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, 2u);  // 11-01 and 11-24 (8 days before 12-02); 11-25 is 7 days old and stays
  EXPECT_EQ(names(),
            (std::vector<std::string>{"mailbridge.log", "mailbridge_2020-01-01.log.gz",
                                      "mailbridge_2020-13-01.log", "mailbridge_2026-11-25.log",
                                      "mailbridge_2026-12-02.log", "mailbridge_20x0-01-01.log",
                                      "other_2020-01-01.log"}));
}

TEST_F(PurgeLogFilesTest, ZeroAndMinusOneKeepEverything) {
  touch("mailbridge_2000-01-01.log");
  EXPECT_EQ(*purgeLogFiles(dir_ / "mailbridge.log", 0, localNoon(2026, 12, 2)), 0u);
  EXPECT_EQ(*purgeLogFiles(dir_ / "mailbridge.log", -1, localNoon(2026, 12, 2)), 0u);
  EXPECT_EQ(names(), std::vector<std::string>{"mailbridge_2000-01-01.log"});
}

TEST_F(PurgeLogFilesTest, AcrossAYearEnd) {
  touch("relay_2025-12-30.txt");
  touch("relay_2025-12-31.txt");
  EXPECT_EQ(*purgeLogFiles(dir_ / "relay.txt", 1, localNoon(2026, 1, 1)), 1u);
  EXPECT_EQ(names(), std::vector<std::string>{"relay_2025-12-31.txt"});
}

TEST_F(PurgeLogFilesTest, AMissingDirectoryIsAnError) {
  EXPECT_FALSE(purgeLogFiles(dir_ / "nope" / "mailbridge.log", 3, localNoon(2026, 12, 2)));
}

}  // namespace
}  // namespace mb::log
