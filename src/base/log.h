#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace mb::log {

enum class Format { Text, Json };

/// Sets up the process-wide logger (spdlog's default logger, to stderr, so
/// that systemd's journal or the terminal gets it). level is one of trace,
/// debug, info, warn, error, critical, off; an unknown level is rejected by
/// the configuration loader before this is called. Call once, at start-up;
/// logging itself is thread-safe.
void init(std::string_view level, Format format);

/// Changes the level of the logger that init() set up (configuration
/// reload). Safe while other threads log: the level is atomic, whereas
/// replacing the logger would not be.
void setLevel(std::string_view level);

}  // namespace mb::log
