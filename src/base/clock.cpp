#include "base/clock.h"

namespace mb {

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

}  // namespace mb
