#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string_view>

#include "base/result.h"

namespace mb::log {

enum class Format { Text, Json };

/// Sets up the process-wide logger (spdlog's default logger, to stderr, so
/// that systemd's journal or the terminal gets it). level is one of trace,
/// debug, info, warn, error, critical, off; an unknown level is rejected by
/// the configuration loader before this is called. Call once, at start-up;
/// logging itself is thread-safe.
void init(std::string_view level, Format format);

/// A daily log file besides stderr: `path` with the local date before its
/// extension (mailbridge.log → mailbridge_2026-05-04.log), a new file at
/// each local midnight. `retention_days` as purgeLogFiles() takes it.
struct LogFile {
  std::filesystem::path path;
  int retention_days = 30;
};

/// init() with a log file as well. Fails, with the logger writing to stderr
/// only, when the file cannot be opened (its directory is created if needed).
Status init(std::string_view level, Format format, const LogFile& file);

/// Deletes the daily files of `path` (`<stem>_YYYY-MM-DD<ext>` in its
/// directory) whose date lies more than `retention_days` days before the
/// local date of `now`; other files are never touched. `retention_days` 0
/// (keep forever) or below deletes nothing. Returns how many were deleted;
/// one that cannot be deleted ends the pass with an error naming it.
Result<std::size_t> purgeLogFiles(const std::filesystem::path& path, int retention_days,
                                  std::chrono::system_clock::time_point now);

/// Changes the level of the logger that init() set up (configuration
/// reload). Safe while other threads log: the level is atomic, whereas
/// replacing the logger would not be.
void setLevel(std::string_view level);

}  // namespace mb::log
