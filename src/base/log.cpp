#include "base/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/daily_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <time.h>

#include <charconv>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace mb::log {
namespace {

// Escapes the message for a JSON string; a message from a client must not be
// able to close the string and add fields.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr char kHex[] = "0123456789abcdef";
    for (char ch : std::string_view(msg.payload.data(), msg.payload.size())) {
      const auto c = static_cast<unsigned char>(ch);
      switch (c) {
        case '"':
          dest.append(std::string_view("\\\""));
          break;
        case '\\':
          dest.append(std::string_view("\\\\"));
          break;
        case '\n':
          dest.append(std::string_view("\\n"));
          break;
        case '\r':
          dest.append(std::string_view("\\r"));
          break;
        case '\t':
          dest.append(std::string_view("\\t"));
          break;
        default:
          if (c < 0x20) {
            const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
            dest.append(esc, esc + sizeof esc);
          } else {
            dest.push_back(ch);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

std::unique_ptr<spdlog::formatter> makeFormatter(Format format) {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (format == Format::Json) {
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":"%*"})");
  } else {
    formatter->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
  }
  return formatter;
}

void install(std::vector<spdlog::sink_ptr> sinks, std::string_view level, Format format) {
  auto logger = std::make_shared<spdlog::logger>("mailbridge", sinks.begin(), sinks.end());
  logger->set_formatter(makeFormatter(format));
  logger->set_level(spdlog::level::from_str(std::string(level)));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

// Days since 1970-01-01 of a proleptic Gregorian date.
std::int64_t daysFromCivil(int y, unsigned m, unsigned d) {
  using namespace std::chrono;
  return sys_days(year(y) / month(m) / day(d)).time_since_epoch().count();
}

// The date in "<stem>_YYYY-MM-DD<ext>", as days since the epoch.
std::optional<std::int64_t> fileDay(std::string_view name, std::string_view stem,
                                    std::string_view ext) {
  if (name.size() != stem.size() + 11 + ext.size()) return std::nullopt;
  if (name.substr(0, stem.size()) != stem || name.substr(name.size() - ext.size()) != ext)
    return std::nullopt;
  const std::string_view date = name.substr(stem.size() + 1, 10);
  if (name[stem.size()] != '_' || date[4] != '-' || date[7] != '-') return std::nullopt;
  auto field = [&](std::size_t pos, std::size_t len, int& out) {
    const auto [p, ec] = std::from_chars(date.data() + pos, date.data() + pos + len, out);
    return ec == std::errc() && p == date.data() + pos + len;
  };
  int y = 0, m = 0, d = 0;
  if (!field(0, 4, y) || !field(5, 2, m) || !field(8, 2, d) || m < 1 || m > 12 || d < 1 || d > 31) {
    return std::nullopt;
  }
  return daysFromCivil(y, static_cast<unsigned>(m), static_cast<unsigned>(d));
}

}  // namespace

Status init(std::string_view level, Format format, const LogFile& file) {
  std::vector<spdlog::sink_ptr> sinks{std::make_shared<spdlog::sinks::stderr_sink_mt>()};
  std::string problem;
  std::error_code ec;
  if (!file.path.parent_path().empty())
    std::filesystem::create_directories(file.path.parent_path(), ec);
  try {
    sinks.push_back(std::make_shared<spdlog::sinks::daily_file_sink_mt>(file.path.string(), 0, 0));
  } catch (const std::exception& e) {
    problem = e.what();
  }
  install(std::move(sinks), level, format);
  if (!problem.empty())
    return Error{"cannot open the log file " + file.path.string() + ": " + problem};
  return {};
}

Result<std::size_t> purgeLogFiles(const std::filesystem::path& path, int retention_days,
                                  std::chrono::system_clock::time_point now) {
  if (retention_days <= 0) return std::size_t{0};
  const time_t t = std::chrono::system_clock::to_time_t(now);
  tm local{};
  ::localtime_r(&t, &local);
  const std::int64_t today =
      daysFromCivil(local.tm_year + 1900, static_cast<unsigned>(local.tm_mon + 1),
                    static_cast<unsigned>(local.tm_mday));
  const std::string stem = path.stem().string();
  const std::string ext = path.extension().string();
  const std::filesystem::path dir =
      path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  std::size_t deleted = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const auto day = fileDay(entry.path().filename().string(), stem, ext);
    if (!day || today - *day <= retention_days) continue;
    std::error_code rm;
    if (!entry.is_regular_file(rm)) continue;
    if (!std::filesystem::remove(entry.path(), rm) && rm) {
      return Error{"cannot delete the old log file " + entry.path().string() + ": " + rm.message()};
    }
    ++deleted;
  }
  if (ec) return Error{"cannot list " + dir.string() + ": " + ec.message()};
  return deleted;
}

void setLevel(std::string_view level) {
  spdlog::default_logger()->set_level(spdlog::level::from_str(std::string(level)));
}

void init(std::string_view level, Format format) {
  install({std::make_shared<spdlog::sinks::stderr_sink_mt>()}, level, format);
}

}  // namespace mb::log
