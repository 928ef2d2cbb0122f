#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace mb::cli {

/// RouteCommand: which provider and which sending mailbox a message would
/// get, from the configuration file, without a running relay.
///
///   mailbridge route --from A --to B [--to C ...] [--user U] [--listener L] --config FILE
///
/// Applies the `senders:` rules to A (as MAIL FROM, for user U) and then
/// `routes:` (first match, else the first provider). Exit codes: 0 routed,
/// 1 the sender would be refused, 2 usage or configuration error.
class RouteCommand {
 public:
  explicit RouteCommand(CLI::App& parent);
  RouteCommand(const RouteCommand&) = delete;
  RouteCommand& operator=(const RouteCommand&) = delete;

  bool parsed() const { return route_->parsed(); }
  int run();

 private:
  CLI::App* route_ = nullptr;
  std::string from_;
  std::vector<std::string> to_;
  std::string user_;
  std::string listener_;
  std::string config_path_;
};

}  // namespace mb::cli
