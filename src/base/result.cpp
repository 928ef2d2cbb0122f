#include "base/result.h"

#include <cstring>

namespace mb {

Error Error::fromErrno(std::string what, int err) {
  what += ": ";
  what += std::strerror(err);
  return Error{std::move(what), err};
}

}  // namespace mb
