#pragma once

#include <optional>
#include <string>

namespace mb::cli {

/// Reading secrets (passwords) from the terminal or standard input, for the
/// commands that ask for one (hash-password, oauth login --password).
///
/// Not thread-safe: one prompt at a time, on the main thread.

/// True when standard input is a terminal whose settings could be saved;
/// then installs handlers that put echo back if the user interrupts a
/// prompt (SIGINT, SIGTERM, SIGHUP).
bool prepareHiddenInput();

/// Prompts on standard error and reads a line with echo turned off (after
/// prepareHiddenInput() returned true).
std::optional<std::string> promptHidden(const char* prompt);

/// One line from standard input, without its line end (LF or CRLF);
/// nullopt at end of input before any character.
std::optional<std::string> readLine();

/// Overwrites and empties `s`.
void wipe(std::string& s);

}  // namespace mb::cli
