#include "queue/envelope.h"

#include <sodium.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/log.h"

namespace mb::queue {
namespace {

using nlohmann::json;

constexpr std::size_t kChecksumBytes = 16;            // BLAKE2b-128
constexpr std::size_t kChecksumHex = kChecksumBytes * 2;
constexpr std::string_view kEndPrefix = "end ";

constexpr std::size_t kIdLength = 20;
constexpr std::size_t kIdTimeChars = 9;               // 62^9 us reaches past the year 2390
constexpr std::size_t kIdRandomChars = kIdLength - kIdTimeChars;
// In ASCII order, so that comparing ids as strings compares their times.
constexpr std::string_view kIdAlphabet =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
static_assert(kIdAlphabet.size() == 62);

void ensureSodium() {
  // sodium_init() is idempotent and thread-safe; the static only saves the
  // call. Without it randombytes is not safe to use, and nothing in the queue
  // can work, so failing here is fatal rather than an error to pass on.
  static const bool ok = sodium_init() >= 0;
  if (!ok) {
    spdlog::critical("libsodium could not be initialised");
    std::abort();
  }
}

std::string checksumHex(std::string_view bytes) {
  ensureSodium();
  std::array<unsigned char, kChecksumBytes> digest{};
  crypto_generichash(digest.data(), digest.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size(), nullptr, 0);
  std::array<char, kChecksumHex + 1> hex{};
  sodium_bin2hex(hex.data(), hex.size(), digest.data(), digest.size());
  return std::string(hex.data(), kChecksumHex);
}

bool isLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

const char* stateName(RecipientState s) {
  switch (s) {
    case RecipientState::Pending: return "pending";
    case RecipientState::Delivered: return "delivered";
    case RecipientState::Failed: return "failed";
  }
  return "pending";
}

std::optional<RecipientState> stateFromName(std::string_view s) {
  if (s == "pending") return RecipientState::Pending;
  if (s == "delivered") return RecipientState::Delivered;
  if (s == "failed") return RecipientState::Failed;
  return std::nullopt;
}

// Field readers: each names the field (with its path, e.g. recipients[2].state)
// in the error, so a broken file in corrupt/ comes with a precise reason.
Error missingField(const std::string& where) { return Error{"field '" + where + "' is missing"}; }
Error badType(const std::string& where, const char* expected) {
  return Error{"field '" + where + "' must be " + expected};
}

Status readString(const json& obj, const char* key, const std::string& prefix, std::string& out) {
  const auto it = obj.find(key);
  if (it == obj.end()) return missingField(prefix + key);
  if (!it->is_string()) return badType(prefix + key, "a string");
  out = it->get<std::string>();
  return {};
}

Status readInt64(const json& obj, const char* key, const std::string& prefix, std::int64_t lo,
                 std::int64_t hi, std::int64_t& out) {
  const auto it = obj.find(key);
  if (it == obj.end()) return missingField(prefix + key);
  if (it->is_number_unsigned()) {
    const auto v = it->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(hi)) return badType(prefix + key, "an integer in range");
    out = static_cast<std::int64_t>(v);
    return {};
  }
  if (it->is_number_integer()) {
    const auto v = it->get<std::int64_t>();
    if (v < lo || v > hi) return badType(prefix + key, "an integer in range");
    out = v;
    return {};
  }
  return badType(prefix + key, "an integer");
}

Status readInt(const json& obj, const char* key, const std::string& prefix, int& out) {
  std::int64_t v = 0;
  if (Status st = readInt64(obj, key, prefix, std::numeric_limits<int>::min(),
                            std::numeric_limits<int>::max(), v);
      !st) {
    return st;
  }
  out = static_cast<int>(v);
  return {};
}

Status readUint64(const json& obj, const char* key, const std::string& prefix, std::uint64_t& out) {
  const auto it = obj.find(key);
  if (it == obj.end()) return missingField(prefix + key);
  if (!it->is_number_unsigned()) return badType(prefix + key, "a non-negative integer");
  out = it->get<std::uint64_t>();
  return {};
}

Status readRecipient(const json& item, std::size_t index, RecipientEntry& out) {
  const std::string prefix = "recipients[" + std::to_string(index) + "].";
  if (!item.is_object()) return Error{"recipients[" + std::to_string(index) + "] must be an object"};
  std::string state;
  Status st = readString(item, "address", prefix, out.address);
  if (st) st = readString(item, "state", prefix, state);
  if (st) st = readInt(item, "smtp_code", prefix, out.smtp_code);
  if (st) st = readString(item, "enhanced", prefix, out.enhanced);
  if (st) st = readString(item, "last_error", prefix, out.last_error);
  if (!st) return st;
  const auto parsed = stateFromName(state);
  if (!parsed) return Error{"field '" + prefix + "state' has unknown value '" + state + "'"};
  out.state = *parsed;
  return {};
}

Status readFields(const json& obj, Envelope& env) {
  const std::string top;
  Status st = readString(obj, "id", top, env.id);
  if (st) st = readString(obj, "sender", top, env.sender);
  if (st) st = readString(obj, "client_address", top, env.client_address);
  if (st) st = readString(obj, "helo", top, env.helo);
  if (st) st = readString(obj, "auth_user", top, env.auth_user);
  if (st) st = readString(obj, "listener", top, env.listener);
  if (st) {
    st = readInt64(obj, "arrival", top, std::numeric_limits<std::int64_t>::min(),
                   std::numeric_limits<std::int64_t>::max(), env.arrival);
  }
  if (st) st = readUint64(obj, "size", top, env.size);
  if (st) st = readInt(obj, "attempts", top, env.attempts);
  if (st) {
    st = readInt64(obj, "next_attempt", top, std::numeric_limits<std::int64_t>::min(),
                   std::numeric_limits<std::int64_t>::max(), env.next_attempt);
  }
  if (st) st = readString(obj, "last_error", top, env.last_error);
  if (st) st = readString(obj, "route", top, env.route);
  if (!st) return st;
  // Added after the first files were written; absent means not held.
  if (const auto hit = obj.find("held"); hit != obj.end()) {
    if (!hit->is_boolean()) return badType("held", "true or false");
    env.held = hit->get<bool>();
  }
  // Also later; absent means the sender (or the From header) decides.
  if (const auto mit = obj.find("mailbox"); mit != obj.end()) {
    if (!mit->is_string()) return badType("mailbox", "a string");
    env.mailbox = mit->get<std::string>();
  }

  if (!isValidQueueId(env.id)) return Error{"field 'id' is not a valid queue id"};

  const auto rit = obj.find("recipients");
  if (rit == obj.end()) return missingField("recipients");
  if (!rit->is_array()) return badType("recipients", "an array");
  env.recipients.clear();
  env.recipients.reserve(rit->size());
  std::size_t index = 0;
  for (const auto& item : *rit) {
    RecipientEntry entry;
    if (Status rst = readRecipient(item, index, entry); !rst) return rst;
    env.recipients.push_back(std::move(entry));
    ++index;
  }
  return {};
}

// Microseconds since the epoch, strictly increasing within the process, so
// that ids made in one process sort in the order they were made even when
// several fall in the same microsecond or the wall clock steps back.
std::uint64_t uniqueMicros() {
  static std::atomic<std::uint64_t> last{0};
  const auto now = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  std::uint64_t want = now.count() > 0 ? static_cast<std::uint64_t>(now.count()) : 0;
  std::uint64_t prev = last.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t next = want > prev ? want : prev + 1;
    if (last.compare_exchange_weak(prev, next, std::memory_order_relaxed)) return next;
  }
}

}  // namespace

bool Envelope::allRecipientsDone() const {
  for (const auto& r : recipients) {
    if (r.state == RecipientState::Pending) return false;
  }
  return true;
}

std::vector<std::size_t> Envelope::pendingRecipients() const {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < recipients.size(); ++i) {
    if (recipients[i].state == RecipientState::Pending) out.push_back(i);
  }
  return out;
}

std::string serialize(const Envelope& env) {
  // Built member by member: a json initializer list copies every element
  // (and every nested one) once more, which made this the costliest step of
  // a commit after the fsyncs. The keys come out sorted either way.
  json obj = json::object();
  obj["version"] = Envelope::kVersion;
  obj["id"] = env.id;
  obj["sender"] = env.sender;
  json& recipients = obj["recipients"] = json::array();
  for (const auto& r : env.recipients) {
    json& entry = recipients.emplace_back(json::object());
    entry["address"] = r.address;
    entry["state"] = stateName(r.state);
    entry["smtp_code"] = r.smtp_code;
    entry["enhanced"] = r.enhanced;
    entry["last_error"] = r.last_error;
  }
  obj["client_address"] = env.client_address;
  obj["helo"] = env.helo;
  obj["auth_user"] = env.auth_user;
  obj["listener"] = env.listener;
  obj["arrival"] = env.arrival;
  obj["size"] = env.size;
  obj["attempts"] = env.attempts;
  obj["next_attempt"] = env.next_attempt;
  obj["last_error"] = env.last_error;
  obj["route"] = env.route;
  obj["held"] = env.held;
  if (!env.mailbox.empty()) obj["mailbox"] = env.mailbox;
  // Client-supplied text (HELO, addresses) may not be valid UTF-8; the
  // default handler would throw, so invalid sequences become U+FFFD instead.
  // dump() without indentation keeps the object on one line, which is what
  // lets parse() find the end line by searching for "\nend ".
  std::string out = obj.dump(-1, ' ', false, json::error_handler_t::replace);
  out += '\n';
  const std::string sum = checksumHex(out);
  out += kEndPrefix;
  out += sum;
  out += '\n';
  return out;
}

Result<Envelope> parse(std::string_view text) {
  // JSON strings escape newlines, so the first "\nend " is the end line.
  const std::size_t marker = text.find(std::string("\n").append(kEndPrefix));
  if (marker == std::string_view::npos) return Error{"envelope has no end line (torn or truncated file)"};
  const std::size_t line_start = marker + 1;
  const std::size_t line_end = text.find('\n', line_start);
  if (line_end == std::string_view::npos) return Error{"envelope end line is incomplete (truncated file)"};
  const std::string_view line = text.substr(line_start, line_end - line_start);
  const std::string_view hex = line.substr(kEndPrefix.size());
  if (hex.size() != kChecksumHex || !isLowerHex(hex)) {
    return Error{"envelope end line is garbled: '" + std::string(line.substr(0, 80)) + "'"};
  }
  if (line_end + 1 != text.size()) {
    return Error{"envelope has " + std::to_string(text.size() - line_end - 1) +
                 " trailing bytes after the end line"};
  }
  const std::string_view body = text.substr(0, line_start);
  const std::string computed = checksumHex(body);
  if (computed != hex) {
    return Error{"envelope checksum mismatch (stored " + std::string(hex) + ", computed " + computed + ")"};
  }

  const json obj = json::parse(body, nullptr, false);
  if (obj.is_discarded()) return Error{"envelope is not valid JSON"};
  if (!obj.is_object()) return Error{"envelope is not a JSON object"};
  const auto vit = obj.find("version");
  if (vit == obj.end()) return Error{"envelope has no version field"};
  if (!vit->is_number_integer()) return Error{"envelope version is not an integer"};
  if (vit->is_number_unsigned() ? vit->get<std::uint64_t>() != Envelope::kVersion
                                : vit->get<std::int64_t>() != Envelope::kVersion) {
    return Error{"unknown envelope version " + vit->dump() + " (this build reads version " +
                 std::to_string(Envelope::kVersion) + ")"};
  }
  Envelope env;
  if (Status st = readFields(obj, env); !st) return Error{"envelope " + st.error().message};
  return env;
}

std::string newQueueId() {
  ensureSodium();
  std::string id(kIdLength, '0');
  std::uint64_t t = uniqueMicros();
  for (std::size_t i = kIdTimeChars; i-- > 0;) {
    id[i] = kIdAlphabet[t % kIdAlphabet.size()];
    t /= kIdAlphabet.size();
  }
  // Rejection sampling keeps the random characters uniform: 248 = 4 * 62.
  constexpr unsigned kLimit = 248;
  std::array<unsigned char, 32> pool{};
  std::size_t used = pool.size();
  for (std::size_t i = kIdTimeChars; i < kIdLength;) {
    if (used == pool.size()) {
      randombytes_buf(pool.data(), pool.size());
      used = 0;
    }
    const unsigned b = pool[used++];
    if (b >= kLimit) continue;
    id[i++] = kIdAlphabet[b % kIdAlphabet.size()];
  }
  return id;
}

bool isValidQueueId(std::string_view id) {
  if (id.size() != kIdLength) return false;
  for (char c : id) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    if (!ok) return false;
  }
  return true;
}

}  // namespace mb::queue
