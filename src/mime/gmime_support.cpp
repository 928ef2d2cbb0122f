#include "mime/gmime_support.h"

#include <mutex>

namespace mb::mime::detail {

void ensureGMime() {
  static std::once_flag once;
  std::call_once(once, [] { g_mime_init(); });
}

}  // namespace mb::mime::detail
