#include "cli/terminal.h"

#include <sodium.h>
#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <iostream>

namespace mb::cli {
namespace {

// The terminal settings to put back if the user interrupts a prompt, which
// would otherwise leave the shell without echo.
struct termios g_saved_termios;
volatile std::sig_atomic_t g_echo_off = 0;

extern "C" void restoreEchoAndDie(int sig) {
  if (g_echo_off != 0) ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_termios);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

bool prepareHiddenInput() {
  if (::isatty(STDIN_FILENO) == 0 || ::tcgetattr(STDIN_FILENO, &g_saved_termios) != 0) return false;
  std::signal(SIGINT, restoreEchoAndDie);
  std::signal(SIGTERM, restoreEchoAndDie);
  std::signal(SIGHUP, restoreEchoAndDie);
  return true;
}

std::optional<std::string> promptHidden(const char* prompt) {
  std::cerr << prompt << std::flush;
  struct termios quiet = g_saved_termios;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ICANON;
  g_echo_off = 1;
  ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  auto line = readLine();
  ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &g_saved_termios);
  g_echo_off = 0;
  std::cerr << '\n';
  return line;
}

std::optional<std::string> readLine() {
  std::string line;
  if (!std::getline(std::cin, line) && line.empty()) return std::nullopt;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

void wipe(std::string& s) {
  if (!s.empty()) ::sodium_memzero(s.data(), s.size());
  s.clear();
}

}  // namespace mb::cli
