#pragma once

#include <functional>

#include "base/clock.h"
#include "config/config.h"

namespace mb::app {

/// App: the composition root. Builds every module from the configuration in
/// dependency order (spool → recovery → providers → router → queue manager →
/// SMTP server), runs until SIGTERM or SIGINT, then stops them in reverse:
/// no new connections, sessions finish or get 421 4.3.2, deliveries in flight
/// finish, the spool's last commits complete. Only this class knows every
/// module (see DESIGN.md).
/// SIGHUP reads the configuration again through the Reloader and applies
/// what can change while running (see docs/operations.md); an invalid file
/// is logged and the running configuration stays.
///
/// Threading: run() blocks the calling thread, which becomes the SMTP I/O
/// thread; the spool and the queue manager have their own threads.
class App {
 public:
  /// Loads the configuration again (throws config::ConfigError). Empty for a
  /// configuration that has no file behind it: SIGHUP then reloads only the
  /// TLS certificate.
  using Reloader = std::function<config::Config()>;

  explicit App(config::Config config, Clock& clock = SystemClock::instance(), Reloader reload = {});

  /// Returns the process exit code: 0 after a clean stop, 1 when start-up
  /// failed (the reason is logged).
  int run();

 private:
  config::Config config_;
  Clock& clock_;
  Reloader reload_;
};

}  // namespace mb::app
