#pragma once

#include <string>
#include <utility>
#include <variant>

namespace mb {

/// An error on a data path: a message for the log and, where it came from the
/// operating system, the errno value so callers can tell ENOSPC from EIO.
/// Never holds secrets; the text may reach a log line but not an SMTP client.
struct Error {
  std::string message;
  int sys_errno = 0;

  static Error fromErrno(std::string what, int err);
};

/// BasicResult<T, E>: a value or an error of type E. The one implementation
/// behind Result<T> (errors as Error) and the token grants' GrantResult<T>
/// (errors as oauth::TokenFailure). Not thread-safe beyond a value type.
template <typename T, typename E>
class [[nodiscard]] BasicResult {
 public:
  BasicResult(T value) : v_(std::move(value)) {}   // NOLINT(google-explicit-constructor)
  BasicResult(E error) : v_(std::move(error)) {}   // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const E& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

/// Result<T>: a value or an Error. Used instead of exceptions on per-connection
/// and per-delivery paths (see DESIGN.md).
template <typename T>
class [[nodiscard]] Result : public BasicResult<T, Error> {
 public:
  using BasicResult<T, Error>::BasicResult;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace mb
