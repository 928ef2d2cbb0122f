#pragma once

// The one way to include Boost.Asio in this project. Boost 1.74's
// awaitable.hpp uses std::exchange without including <utility>; with clang,
// coroutine support must be switched on by hand (see CMakeLists.txt).
// Asio's SSL layer comes with it: TLS is part of net/, and asio::ssl needs
// OpenSSL's headers and libraries (mb_net links OpenSSL::SSL).
// Include this only from .cpp files and from headers that are themselves
// included only by .cpp files of net/, server/ and app/.
// <utility> must come first, hence:
// clang-format off
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
// clang-format on

namespace mb::net {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
}  // namespace mb::net
