#pragma once

#include <string>
#include <string_view>

#include "config/config.h"

namespace mb::tracker {

/// What the tracker writes for an address or a subject, by the privacy
/// settings of `tracker:`: "***" when they are not to be stored, a masked
/// form with `masking: partial`, else the text as it is. Masking works on
/// UTF-8 characters, never cutting one in half; invalid UTF-8 counts byte
/// by byte.
///
/// A value; any thread.
class Privacy {
 public:
  explicit Privacy(const config::TrackerConfig& config);

  std::string address(std::string_view address) const;
  std::string subject(std::string_view subject) const;

  static constexpr std::string_view kHidden = "***";
  static constexpr std::size_t kSubjectChars = 15;

 private:
  bool store_addresses_;
  bool store_subject_;
  bool partial_;
};

/// "mail@example.com" → "m**l@e*****e.com": the local part and every
/// domain label but the last keep their first and last character. Words of
/// one or two characters keep only their first ("a" → "*", "ab" → "a*").
std::string maskAddress(std::string_view address);

/// The first kSubjectChars characters and "…"; shorter subjects unchanged.
std::string maskSubject(std::string_view subject);

}  // namespace mb::tracker
