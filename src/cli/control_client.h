#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace mb::cli {

/// The running daemon's control socket for the commands that talk to it
/// (queue, log, status): `socket_path` when given, else
/// `<server.state_dir>/control.sock` of the configuration at `config_path`
/// (read without its secrets). On a problem, says so on stderr, prefixed
/// with `command`, and returns nullopt (a usage error, exit code 2).
std::optional<std::filesystem::path> controlSocket(const std::string& command,
                                                   const std::string& config_path,
                                                   const std::string& socket_path);

/// Now, in unix seconds, for "due now" and "2h ago".
std::int64_t nowSeconds();

}  // namespace mb::cli
