#pragma once

// The one way to include Boost.Asio in this project. Boost 1.74's
// awaitable.hpp uses std::exchange without including <utility>; with clang,
// coroutine support must be switched on by hand (see CMakeLists.txt).
// Include this only from .cpp files and from headers that are themselves
// included only by .cpp files of net/, server/ and app/.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace mb::net {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
}  // namespace mb::net
