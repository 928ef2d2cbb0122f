#pragma once

// What the admin module's request handling shares (for its .cpp files
// only; it brings nlohmann/json along).

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "base/text.h"

namespace mb::admin {

// ordered_json keeps the fields in the order written, so replies read as
// id, sender, recipients ... rather than alphabetically.
using Json = nlohmann::ordered_json;

// Text from a queue or the mail log (addresses, provider errors) may hold
// bytes that are not UTF-8; dump() would throw on them, so they are replaced.
inline std::string dumpJson(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// {"ok":true, ...fields}.
inline std::string okReply(Json fields) {
  Json reply = Json::object();
  reply["ok"] = true;
  for (auto& [key, value] : fields.items()) reply[key] = std::move(value);
  return dumpJson(reply);
}

// Request text echoed into a reply (and a terminal), quoted and limited.
inline std::string inQuotes(std::string_view text) {
  return "'" + printable(text, 64) + "'";
}

}  // namespace mb::admin
