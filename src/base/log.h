#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace mb::log {

enum class Format { Text, Json };

/// Sets up the process-wide logger (spdlog's default logger, to stderr, so
/// that systemd's journal or the terminal gets it). level is one of trace,
/// debug, info, warn, error, critical, off; an unknown level is rejected by
/// the configuration loader before this is called. Call once at start-up
/// (and again on reload); logging itself is thread-safe.
void init(std::string_view level, Format format);

}  // namespace mb::log
