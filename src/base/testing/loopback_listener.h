#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace mb::testing {

/// LoopbackListener: a listening TCP socket on 127.0.0.1, on a port the
/// kernel chose, for the fake servers of unit tests. close() (also run by
/// the destructor) shuts it down, so that an accept() blocked on it in
/// another thread returns -1. For unit tests only.
class LoopbackListener {
 public:
  explicit LoopbackListener(int backlog) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || ::listen(fd_, backlog) != 0) {
      const int err = errno;
      ::close(fd_);
      throw std::system_error(err, std::generic_category(), "listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
  }
  ~LoopbackListener() { close(); }
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;

  int fd() const { return fd_; }
  std::uint16_t port() const { return port_; }

  /// Idempotent. fd() keeps its value, so that a thread may go on reading
  /// it while another closes.
  void close() {
    if (closed_) return;
    closed_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
  bool closed_ = false;
};

}  // namespace mb::testing
