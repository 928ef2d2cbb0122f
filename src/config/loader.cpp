#include "config/loader.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <map>
#include <optional>
#include <utility>

#include "base/durable_file.h"
#include "base/text.h"
#include "base/units.h"
#include "config/yaml_support.h"
#include "policy/network_list.h"
#include "policy/recipient_policy.h"
#include "policy/sender_policy.h"
#include "policy/user_store.h"

namespace mb::config {
namespace {

using Keys = std::vector<std::string_view>;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kGiB = 1024 * 1024 * 1024;
// No configured duration needs more than a year, and capping here keeps
// "1000000w" from overflowing a timer deadline later on.
constexpr milliseconds kMaxDuration = std::chrono::hours(24 * 365);
constexpr std::string_view kAddressExample = "HOST:PORT such as 127.0.0.1:2525 or [::1]:2525";
constexpr std::string_view kDefaultListenerAddress = "127.0.0.1:2525";

std::string joinNames(const Keys& keys) {
  std::string out;
  for (const auto& k : keys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

// Optimal string alignment distance: Levenshtein plus adjacent transposition,
// because "max_mesasge_size" is one slip of the fingers, not two.
std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The known key that `key` was probably meant to be: a case-insensitive match,
// else the nearest within edit distance 2; empty when none is that close.
std::string_view closestKey(std::string_view key, const Keys& known) {
  for (const auto& k : known) {
    if (iequals(k, key)) return k;
  }
  const std::string lower = asciiLower(key);
  std::string_view best;
  std::size_t best_distance = 3;
  for (const auto& k : known) {
    const std::size_t dist = editDistance(lower, k);
    if (dist < best_distance) {
      best = k;
      best_distance = dist;
    }
  }
  return best;
}

const char* kindOf(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "nothing";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "a scalar";
}

std::string inQuotes(std::string_view text) {
  return "'" + printable(text, 80) + "'";
}

std::string indexKey(std::string_view path, std::size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

struct Field {
  YAML::Node key;
  YAML::Node value;
  YAML::Mark mark() const { return entryMark(key, value); }
};

/// The entries of one YAML mapping, checked against the keys it may hold:
/// unknown, duplicate and non-scalar keys become issues as the map is read.
/// Reports through the LoadContext it is given; single-threaded, one load.
class Fields {
 public:
  Fields(LoadContext& ctx, const YAML::Node& map, std::string path, const Keys& known)
      : ctx_(ctx), path_(std::move(path)), map_(map) {
    if (!map.IsMap()) return;
    std::map<std::string, int, std::less<>> first_line;
    // Range-for keeps each entry alive for the body; it->first would name a
    // temporary that yaml-cpp's iterator proxy destroys at once.
    for (const auto& entry : map) {
      const YAML::Node& k = entry.first;
      if (!k.IsScalar()) {
        ctx_.add(k, path_, "keys must be plain names, got " + std::string(kindOf(k)));
        continue;
      }
      const std::string& name = k.Scalar();
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        const std::string_view guess = closestKey(name, known);
        if (guess.empty()) {
          ctx_.add(k, joinKey(path_, name), "unknown key; valid keys are: " + joinNames(known));
        } else {
          ctx_.add(k, joinKey(path_, name),
                   "unknown key; did you mean '" + std::string(guess) + "'?");
          guessed_.emplace_back(guess);
        }
        continue;
      }
      if (auto seen = first_line.find(name); seen != first_line.end()) {
        ctx_.add(k, joinKey(path_, name),
                 "duplicate key; already given on line " + std::to_string(seen->second));
        continue;
      }
      first_line.emplace(name, k.Mark().line + 1);
      fields_.emplace_back(name, Field{k, entry.second});
    }
  }

  const Field* find(std::string_view name) const {
    for (const auto& [n, f] : fields_) {
      if (n == name) return &f;
    }
    return nullptr;
  }
  std::string keyOf(std::string_view name) const { return joinKey(path_, name); }
  const std::string& path() const { return path_; }
  const YAML::Node& node() const { return map_; }
  LoadContext& ctx() const { return ctx_; }

  /// Reports a required key that is absent, at the map itself — unless a
  /// misspelling of it was reported already, which says it better.
  void missing(std::string_view name, const std::string& message) const {
    if (!wasGuessed(name)) ctx_.add(map_, keyOf(name), message);
  }
  bool wasGuessed(std::string_view name) const {
    return std::find(guessed_.begin(), guessed_.end(), name) != guessed_.end();
  }

  /// A problem with the value of `name`, placed at that value.
  void bad(std::string_view name, std::string message) const {
    const Field* f = find(name);
    ctx_.add(f != nullptr ? f->mark() : map_.Mark(), keyOf(name), std::move(message));
  }

 private:
  LoadContext& ctx_;
  std::string path_;
  YAML::Node map_;
  std::vector<std::pair<std::string, Field>> fields_;
  std::vector<std::string> guessed_;  // known keys suggested for unknown ones
};

// ---- typed values ---------------------------------------------------------
// Each reader returns nothing when the key is absent or its value is bad (the
// latter recorded as an issue), so callers keep the default and go on.

std::optional<std::string> readScalar(const Fields& f, std::string_view name,
                                      std::string_view expected) {
  const Field* fld = f.find(name);
  if (fld == nullptr) return std::nullopt;
  if (!fld->value.IsScalar()) {
    f.bad(name, "expected " + std::string(expected) + ", got " + kindOf(fld->value));
    return std::nullopt;
  }
  return fld->value.Scalar();
}

std::optional<std::string> readString(const Fields& f, std::string_view name,
                                      std::string_view expected) {
  auto s = readScalar(f, name, expected);
  if (s && s->empty()) {
    f.bad(name, "expected " + std::string(expected) + ", got an empty string");
    return std::nullopt;
  }
  return s;
}

// An integer from `min` to `max`; `forms` replaces the plain "an integer
// from MIN to MAX" in messages where the values mean different things.
std::optional<std::int64_t> readInt(const Fields& f, std::string_view name, std::int64_t min,
                                    std::int64_t max, std::string_view forms = {}) {
  const std::string expected =
      forms.empty() ? "an integer from " + std::to_string(min) + " to " + std::to_string(max)
                    : std::string(forms);
  auto s = readScalar(f, name, expected);
  if (!s) return std::nullopt;
  std::int64_t v = 0;
  const char* end = s->data() + s->size();
  const auto [ptr, ec] = std::from_chars(s->data(), end, v);
  if (ec == std::errc::result_out_of_range) {
    f.bad(name, "expected " + expected + ", got " + inQuotes(*s) + " (too large)");
    return std::nullopt;
  }
  if (ec != std::errc() || ptr != end || s->empty()) {
    f.bad(name, "expected " + expected + ", got " + inQuotes(*s));
    return std::nullopt;
  }
  if (v < min || v > max) {
    f.bad(name, "expected " + expected + ", got " + std::to_string(v));
    return std::nullopt;
  }
  return v;
}

std::optional<std::uint64_t> readSize(const Fields& f, std::string_view name, std::uint64_t min,
                                      std::uint64_t max,
                                      std::string_view expected = "a size such as 25MB",
                                      std::string_view suffix = "") {
  auto s = readScalar(f, name, expected);
  if (!s) return std::nullopt;
  // A rate may say what it is ("500B/s"); the number is the same.
  std::string_view text = *s;
  if (!suffix.empty() && text.size() > suffix.size() &&
      text.substr(text.size() - suffix.size()) == suffix) {
    text.remove_suffix(suffix.size());
  }
  auto size = parseSize(text);
  if (!size) {
    f.bad(name, "expected " + std::string(expected) + ", got " + inQuotes(*s) + " (" +
                    size.error().message + ")");
    return std::nullopt;
  }
  if (*size < min || *size > max) {
    f.bad(name, "expected a size from " + formatSize(min) + " to " + formatSize(max) + ", got " +
                    formatSize(*size));
    return std::nullopt;
  }
  return *size;
}

// "2027-06-30" → unix seconds of that day's midnight UTC.
std::optional<std::int64_t> parseDate(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  tm t{};
  const std::string s(text);
  const char* end = ::strptime(s.c_str(), "%Y-%m-%d", &t);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const time_t v = ::timegm(&t);
  if (v <= 0) return std::nullopt;
  return static_cast<std::int64_t>(v);
}

// A duration from `min` to `max`; in whole seconds unless `whole_seconds` is
// false (only for the few keys that need finer steps).
std::optional<milliseconds> readDuration(const Fields& f, std::string_view name, milliseconds min,
                                         milliseconds max, bool whole_seconds) {
  constexpr std::string_view kExpected = "a duration such as 90s, 5m or 1h30m";
  auto s = readScalar(f, name, kExpected);
  if (!s) return std::nullopt;
  auto d = parseDuration(*s);
  if (!d) {
    f.bad(name, "expected " + std::string(kExpected) + ", got " + inQuotes(*s) + " (" +
                    d.error().message + ")");
    return std::nullopt;
  }
  if (*d < min || *d > max) {
    f.bad(name, "expected a duration from " + formatDuration(min) + " to " + formatDuration(max) +
                    ", got " + formatDuration(*d));
    return std::nullopt;
  }
  if (whole_seconds && d->count() % 1000 != 0) {
    f.bad(name, "expected whole seconds, got " + formatDuration(*d));
    return std::nullopt;
  }
  return *d;
}

std::optional<seconds> readSeconds(const Fields& f, std::string_view name, seconds min) {
  auto d = readDuration(f, name, min, kMaxDuration, true);
  if (!d) return std::nullopt;
  return std::chrono::duration_cast<seconds>(*d);
}

std::optional<bool> readBool(const Fields& f, std::string_view name) {
  const Field* fld = f.find(name);
  if (fld == nullptr) return std::nullopt;
  bool b = false;
  // yaml-cpp's own reading: true/false, yes/no, on/off, y/n in the usual cases.
  if (!fld->value.IsScalar() || !YAML::convert<bool>::decode(fld->value, b)) {
    f.bad(name, "expected true or false, got " + (fld->value.IsScalar()
                                                      ? inQuotes(fld->value.Scalar())
                                                      : std::string(kindOf(fld->value))));
    return std::nullopt;
  }
  return b;
}

template <typename E>
using Choices = std::vector<std::pair<std::string_view, E>>;

template <typename E>
std::optional<E> readChoice(const Fields& f, std::string_view name, const Choices<E>& choices) {
  Keys names;
  for (const auto& c : choices) names.push_back(c.first);
  const std::string expected = "one of: " + joinNames(names);
  auto s = readScalar(f, name, expected);
  if (!s) return std::nullopt;
  for (const auto& [text, value] : choices) {
    if (iequals(text, *s)) return value;
  }
  f.bad(name, "expected " + expected + "; got " + inQuotes(*s));
  return std::nullopt;
}

std::optional<std::filesystem::path> readPath(const Fields& f, std::string_view name) {
  auto s = readString(f, name, "a path");
  if (!s) return std::nullopt;
  return f.ctx().resolvePath(*s);
}

// ---- sections -------------------------------------------------------------

// The mapping under `name` in `parent`, or nothing when absent, null (an
// empty section is allowed) or of the wrong type (reported).
std::optional<Fields> openSection(const Fields& parent, std::string_view name, const Keys& known) {
  const Field* fld = parent.find(name);
  const YAML::Node empty;
  if (fld == nullptr) return std::nullopt;
  if (fld->value.IsNull()) return Fields(parent.ctx(), empty, parent.keyOf(name), known);
  if (!fld->value.IsMap()) {
    parent.bad(name, "expected a mapping with the keys " + joinNames(known) + ", got " +
                         kindOf(fld->value));
    return std::nullopt;
  }
  return Fields(parent.ctx(), fld->value, parent.keyOf(name), known);
}

// The list under `name`, or nothing when absent or not a list (reported).
std::optional<YAML::Node> openList(const Fields& parent, std::string_view name,
                                   std::string_view what) {
  const Field* fld = parent.find(name);
  if (fld == nullptr) return std::nullopt;
  if (!fld->value.IsSequence()) {
    parent.bad(name, "expected a list of " + std::string(what) + ", got " + kindOf(fld->value));
    return std::nullopt;
  }
  return fld->value;
}

std::string defaultHostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

// Host names as they may appear in EHLO and Received: letters, digits, '-',
// '.', and '_' (seen on real machines), or an address literal in brackets.
bool isHostname(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  if (h.front() == '[') return h.size() > 2 && h.back() == ']';
  if (h.front() == '.' || h.front() == '-') return false;
  return std::all_of(h.begin(), h.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
  });
}

void readServer(const Fields& top, ServerConfig& out) {
  auto f = openSection(top, "server", {"hostname", "state_dir"});
  if (f) {
    if (auto h = readString(*f, "hostname", "a host name such as mail.example.com")) {
      if (isHostname(*h)) {
        out.hostname = *h;
      } else {
        f->bad("hostname", "expected a host name such as mail.example.com, got " + inQuotes(*h));
      }
    }
    if (auto p = readPath(*f, "state_dir")) out.state_dir = *p;
  }
  if (out.hostname.empty()) out.hostname = defaultHostname();
}

struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};

Result<HostPort> parseHostPort(std::string_view text) {
  auto fail = [](std::string m) { return Error{std::move(m), 0}; };
  std::string_view host;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return fail("missing ']' after the IPv6 address");
    host = text.substr(1, close - 1);
    rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return fail("missing ':PORT' after ']'");
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("missing ':PORT'");
    host = text.substr(0, colon);
    rest = text.substr(colon);
    if (host.find(':') != std::string_view::npos) {
      return fail("an IPv6 address needs brackets, e.g. [::1]:2525");
    }
  }
  const std::string_view port_text = rest.substr(1);
  unsigned port = 0;
  const auto [ptr, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || ptr != port_text.data() + port_text.size() ||
      port > 65535) {
    return fail("the port must be a number from 0 to 65535");
  }

  HostPort hp;
  hp.port = static_cast<std::uint16_t>(port);
  const bool v6 = text.front() == '[';
  std::string h(host);
  if (!v6 && iequals(h, "localhost")) h = "127.0.0.1";
  // Normalise through inet_ntop so that "[::1]" and "[0::1]" compare equal
  // in the duplicate check.
  unsigned char bin[16];
  char norm[INET6_ADDRSTRLEN] = {};
  const int family = v6 ? AF_INET6 : AF_INET;
  if (::inet_pton(family, h.c_str(), bin) != 1 ||
      ::inet_ntop(family, bin, norm, sizeof norm) == nullptr) {
    return fail(v6 ? inQuotes(host) + " is not an IPv6 address"
                   : inQuotes(host) +
                         " is not an IPv4 address or localhost (host names are not "
                         "resolved)");
  }
  hp.host = norm;
  return hp;
}

void readListeners(const Fields& top, std::vector<ListenerConfig>& out) {
  const Field* fld = top.find("listeners");
  if (fld == nullptr) {
    ListenerConfig l;
    l.name = std::string(kDefaultListenerAddress);
    out.push_back(std::move(l));
    return;
  }
  auto list = openList(top, "listeners", "listeners ('- address: HOST:PORT')");
  if (!list) return;
  if (list->size() == 0) {
    top.bad("listeners", "at least one listener is required");
    return;
  }
  std::map<std::string, std::string, std::less<>> names;      // name -> listeners[i]
  std::map<std::string, std::string, std::less<>> addresses;  // host:port -> listeners[i]
  const YAML::Node& seq = *list;
  for (std::size_t i = 0; i < seq.size(); ++i) {
    const YAML::Node item = seq[i];
    const std::string path = indexKey("listeners", i);
    if (!item.IsMap()) {
      top.ctx().add(
          item, path,
          std::string("expected a mapping with address, name, tls and auth, got ") + kindOf(item));
      continue;
    }
    Fields f(top.ctx(), item, path, {"name", "address", "tls", "auth", "allow_plaintext_auth"});
    ListenerConfig l;
    bool ok = true;

    std::string address_text;
    if (auto a = readString(f, "address", kAddressExample)) {
      auto hp = parseHostPort(*a);
      if (hp) {
        address_text = *a;
        l.host = hp->host;
        l.port = hp->port;
      } else {
        f.bad("address", hp.error().message + "; expected " + std::string(kAddressExample));
        ok = false;
      }
    } else {
      ok = false;
      if (f.find("address") == nullptr) {
        f.missing("address", "required; expected " + std::string(kAddressExample));
      }
    }

    const bool named = f.find("name") != nullptr;
    if (auto n = readString(f, "name", "a listener name")) {
      l.name = *n;
    } else if (named) {
      ok = false;
    } else {
      l.name = address_text;
    }

    const auto tls = readChoice<TlsMode>(f, "tls",
                                         {{"none", TlsMode::None},
                                          {"starttls", TlsMode::StartTls},
                                          {"implicit", TlsMode::Implicit}});
    if (tls) l.tls = *tls;
    const auto auth = readChoice<AuthPolicy>(f, "auth",
                                             {{"none", AuthPolicy::None},
                                              {"optional", AuthPolicy::Optional},
                                              {"required", AuthPolicy::Required}});
    if (auth) l.auth = *auth;
    const auto plaintext = readBool(f, "allow_plaintext_auth");
    if (plaintext) l.allow_plaintext_auth = *plaintext;
    // AUTH is offered only under TLS unless plaintext is allowed, so on such
    // a listener "required" would refuse every client. Judged only when the
    // keys involved read cleanly, so that a typo is not reported twice.
    auto clean = [&f](bool read, std::string_view key) {
      return read || (f.find(key) == nullptr && !f.wasGuessed(key));
    };
    const bool tls_clean = clean(tls.has_value(), "tls");
    const bool plaintext_clean = clean(plaintext.has_value(), "allow_plaintext_auth");
    if (auth == AuthPolicy::Required && l.tls == TlsMode::None && !l.allow_plaintext_auth &&
        tls_clean && plaintext_clean) {
      f.bad("auth",
            "clients could never authenticate: AUTH is only offered under TLS; use tls: "
            "starttls, or allow_plaintext_auth: true on a trusted network");
    }
    if (!ok) continue;

    // Port 0 asks the kernel for any free port, so two such listeners do
    // not collide.
    bool address_clash = false;
    if (l.port != 0) {
      const std::string where = l.host + "|" + std::to_string(l.port);
      if (auto it = addresses.find(where); it != addresses.end()) {
        f.bad("address", "duplicate listener address; " + it->second + " listens there too");
        address_clash = true;
      } else {
        addresses.emplace(where, path);
      }
    }
    if (auto it = names.find(l.name); it != names.end()) {
      // A name taken from a clashing address has been reported already.
      if (named) {
        f.bad("name",
              "duplicate listener name " + inQuotes(l.name) + "; " + it->second + " uses it too");
      } else if (!address_clash) {
        f.bad("address", "duplicate listener name " + inQuotes(l.name) +
                             " (taken from the address); " + it->second +
                             " uses it too; give each listener a name");
      }
    } else {
      names.emplace(l.name, path);
    }
    out.push_back(std::move(l));
  }
}

void readSmtp(const Fields& top, SmtpConfig& out) {
  auto f = openSection(top, "smtp",
                       {"max_message_size", "max_recipients", "max_connections", "idle_timeout",
                        "data_timeout", "bare_lf", "max_line_length", "long_lines",
                        "max_connections_per_ip", "min_data_rate", "greeting_delay", "max_errors",
                        "wait_for_delivery"});
  if (!f) return;
  if (auto v = readSize(*f, "max_message_size", kKiB, kGiB)) out.max_message_size = *v;
  if (auto v = readInt(*f, "max_recipients", 1, 100000)) {
    out.max_recipients = static_cast<std::size_t>(*v);
  }
  if (auto v = readInt(*f, "max_connections", 1, 100000)) {
    out.max_connections = static_cast<std::size_t>(*v);
  }
  if (auto v = readSeconds(*f, "idle_timeout", seconds(1))) out.idle_timeout = *v;
  if (auto v = readSeconds(*f, "data_timeout", seconds(1))) out.data_timeout = *v;
  if (auto v = readChoice<BareLfPolicy>(
          *f, "bare_lf",
          {{"normalize", BareLfPolicy::Normalize}, {"reject", BareLfPolicy::Reject}})) {
    out.bare_lf = *v;
  }
  // 78 is the shortest line RFC 5322 §2.1.1 asks senders to keep to; below
  // that ordinary mail would be refused.
  if (auto v = readInt(*f, "max_line_length", 78, 100000)) {
    out.max_line_length = static_cast<std::size_t>(*v);
  }
  if (auto v = readChoice<LongLinePolicy>(
          *f, "long_lines",
          {{"reject", LongLinePolicy::Reject}, {"accept", LongLinePolicy::Accept}})) {
    out.long_lines = *v;
  }
  if (auto v = readInt(*f, "max_connections_per_ip", 1, 100000)) {
    out.max_connections_per_ip = static_cast<std::size_t>(*v);
  }
  if (auto v = readSize(*f, "min_data_rate", 0, kGiB,
                        "a rate in bytes per second such as 500B or 1KB, or 0 (off)", "/s")) {
    out.min_data_rate = *v;
  }
  // Sub-second steps matter here: a delay is about catching clients that
  // talk first, and every millisecond of it is paid by honest ones.
  if (auto v =
          readDuration(*f, "greeting_delay", milliseconds(0), std::chrono::seconds(30), false)) {
    out.greeting_delay = *v;
  }
  if (auto v = readInt(*f, "max_errors", 1, 1000)) out.max_errors = static_cast<std::size_t>(*v);
  // Clients give the reply to the final dot 10 minutes (RFC 5321
  // §4.5.3.2.6), many devices far less; 5 minutes is more than any first
  // attempt should take.
  if (auto v = readDuration(*f, "wait_for_delivery", milliseconds(0), std::chrono::minutes(5), false)) {
    out.wait_for_delivery = *v;
  }
}

// open(2) instead of reading: a certificate path that names a FIFO or a
// device must not hang or fill the loader.
Status checkReadableFile(const std::filesystem::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return Error::fromErrno("open " + p.string(), errno);
  struct stat st {};
  const int rc = ::fstat(fd, &st);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Error::fromErrno("stat " + p.string(), err);
  if (S_ISDIR(st.st_mode)) return Error::fromErrno("open " + p.string(), EISDIR);
  if (!S_ISREG(st.st_mode)) return Error{p.string() + " is not a regular file", 0};
  return {};
}

void readTls(const Fields& top, TlsConfig& out) {
  const auto password = secretKeyNames("pkcs12_password");
  auto f = openSection(
      top, "tls", {"cert_file", "key_file", "pkcs12_file", password[0], password[1], password[2]});
  if (!f) return;
  auto given = [&f](std::string_view key) { return f->find(key) != nullptr; };
  auto meant = [&f, &given](std::string_view key) { return given(key) || f->wasGuessed(key); };

  auto readTlsFile = [&f](std::string_view key) -> std::optional<std::filesystem::path> {
    auto p = readPath(*f, key);
    if (!p) return std::nullopt;
    if (Status st = checkReadableFile(*p); !st) {
      f->bad(key, "cannot read the file: " + st.error().message);
      return std::nullopt;
    }
    return p;
  };
  const auto cert = readTlsFile("cert_file");
  const auto key = readTlsFile("key_file");
  const auto pkcs12 = readTlsFile("pkcs12_file");

  if (given("cert_file") && given("pkcs12_file")) {
    f->bad("pkcs12_file",
           "cert_file and pkcs12_file exclude each other; give a PEM certificate (cert_file, "
           "key_file) or a PKCS#12 file, not both");
  } else if (given("key_file") && !meant("cert_file")) {
    f->bad("key_file", std::string("key_file needs cert_file") +
                           (given("pkcs12_file") ? "; a PKCS#12 file holds its key itself" : ""));
  }

  std::string password_key;
  for (const auto& k : password) {
    if (given(k)) password_key = k;
  }
  if (!password_key.empty() && !meant("pkcs12_file")) {
    f->bad(password_key, password_key + " needs pkcs12_file");
  } else if (given("pkcs12_file")) {
    if (auto secret = resolveSecret(f->ctx(), f->node(), f->path(), "pkcs12_password", false)) {
      out.pkcs12_password = std::move(*secret);
    }
  }

  if (cert) {
    out.cert_file = *cert;
    out.key_file = key ? *key : *cert;
  }
  if (pkcs12) out.pkcs12_file = *pkcs12;
}

// A list of strings under `name`, each checked by `validate` (whose error
// message becomes the issue, at the entry). Nothing when absent or when any
// entry is bad, so that a half-read list never replaces the default.
std::optional<std::vector<std::string>> readList(const Fields& f, std::string_view name,
                                                 std::string_view items, std::string_view item,
                                                 Status (*validate)(std::string_view)) {
  auto list = openList(f, name, items);
  if (!list) return std::nullopt;
  std::vector<std::string> out;
  bool ok = true;
  const YAML::Node& seq = *list;
  for (std::size_t i = 0; i < seq.size(); ++i) {
    const YAML::Node entry = seq[i];
    const std::string key = indexKey(f.keyOf(name), i);
    if (!entry.IsScalar()) {
      f.ctx().add(entry, key, "expected " + std::string(item) + ", got " + kindOf(entry));
      ok = false;
      continue;
    }
    if (Status st = validate(entry.Scalar()); !st) {
      f.ctx().add(entry, key, st.error().message);
      ok = false;
      continue;
    }
    out.push_back(entry.Scalar());
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::vector<std::string>> readNetworks(const Fields& f, std::string_view name) {
  return readList(f, name, "networks such as 192.0.2.0/24", "a network such as 192.0.2.0/24",
                  &policy::NetworkList::validate);
}

std::optional<std::vector<std::string>> readSenderPatterns(const Fields& f, std::string_view name) {
  return readList(f, name, "sender addresses or @domains such as scanner@example.com",
                  "an address or @domain such as scanner@example.com",
                  &policy::SenderPolicy::validatePattern);
}

std::optional<std::vector<std::string>> readRecipientPatterns(const Fields& f, std::string_view name) {
  return readList(f, name, "recipient addresses or @domains such as nobody@example.com",
                  "an address or @domain such as nobody@example.com", &policy::SenderPolicy::validatePattern);
}

std::optional<std::vector<std::string>> readDomains(const Fields& f, std::string_view name) {
  return readList(f, name, "domains such as example.com", "a domain such as example.com",
                  &policy::RecipientPolicy::validateDomain);
}

// A whole address (override, default, sender_override).
std::optional<std::string> readAddress(const Fields& f, std::string_view name) {
  auto a = readString(f, name, "an address such as noreply@example.com");
  if (!a) return std::nullopt;
  if (Status st = policy::SenderPolicy::validateAddress(*a); !st) {
    f.bad(name, st.error().message);
    return std::nullopt;
  }
  return a;
}

void readAccess(const Fields& top, AccessConfig& out) {
  auto f = openSection(top, "access", {"allowed_networks", "anonymous_networks", "open_relay"});
  if (!f) return;
  if (auto v = readNetworks(*f, "allowed_networks")) out.allowed_networks = std::move(*v);
  if (auto v = readNetworks(*f, "anonymous_networks")) out.anonymous_networks = std::move(*v);
  if (auto v = readBool(*f, "open_relay")) out.open_relay = *v;
}

// ---- auth -----------------------------------------------------------------

constexpr std::string_view kHashHint = "create one with `mailbridge hash-password`";
constexpr std::size_t kMaxUserName = 256;

// Printable ASCII without spaces: the name travels base64-encoded in AUTH
// and into log lines, where anything else only causes trouble.
bool isUserName(std::string_view n) {
  return !n.empty() && n.size() <= kMaxUserName &&
         std::all_of(n.begin(), n.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Where each user name was first given, for the duplicate check across the
// configuration and the users file.
struct UserOrigin {
  std::string where;  // "auth.users[0]", or "entry [0]" in a users file
  std::string file;
};
using UserOrigins = std::map<std::string, UserOrigin, std::less<>>;

// The user entries of `seq`; `path` is "auth.users" in the configuration and
// "" in a users file (whose top level is the list itself).
void readUsers(LoadContext& ctx, const YAML::Node& seq, std::string_view path, UserOrigins& origins,
               std::vector<UserConfig>& out) {
  for (std::size_t i = 0; i < seq.size(); ++i) {
    const YAML::Node item = seq[i];
    const std::string item_path = indexKey(path, i);
    if (!item.IsMap()) {
      ctx.add(item, item_path,
              std::string("expected a mapping with name and password_hash, got ") + kindOf(item));
      continue;
    }
    Fields f(ctx, item, item_path,
             {"name", "password_hash", "allowed_senders", "allowed_recipient_domains",
              "sender_override"});
    UserConfig u;
    bool ok = true;

    if (auto n = readString(f, "name", "a user name")) {
      if (!isUserName(*n)) {
        f.bad("name",
              "expected a user name of printable ASCII characters without spaces, at most 256, "
              "got " +
                  inQuotes(*n));
        ok = false;
      } else if (auto it = origins.find(*n); it != origins.end()) {
        std::string where = it->second.where;
        if (it->second.file != ctx.file()) where += " in " + it->second.file;
        f.bad("name", "duplicate user name " + inQuotes(*n) + "; " + where + " has it too");
        ok = false;
      } else {
        origins.emplace(*n,
                        UserOrigin{path.empty() ? "entry " + item_path : item_path, ctx.file()});
        u.name = *n;
      }
    } else {
      ok = false;
      if (f.find("name") == nullptr) {
        f.missing("name", "required; the user name that clients give to AUTH");
      }
    }

    // Never quote this value: a plain password pasted here by mistake must
    // not end up in a message.
    if (auto h = readString(f, "password_hash", "an argon2id hash")) {
      if (Status st = policy::UserStore::validateHash(*h); !st) {
        f.bad("password_hash", st.error().message + "; " + std::string(kHashHint));
        ok = false;
      } else {
        u.password_hash = *h;
      }
    } else {
      ok = false;
      if (f.find("password_hash") == nullptr) {
        f.missing("password_hash", "required; " + std::string(kHashHint));
      }
    }

    if (auto v = readSenderPatterns(f, "allowed_senders")) u.allowed_senders = std::move(*v);
    if (auto v = readDomains(f, "allowed_recipient_domains")) {
      u.allowed_recipient_domains = std::move(*v);
    }
    if (auto v = readAddress(f, "sender_override")) u.sender_override = std::move(*v);
    if (ok) out.push_back(std::move(u));
  }
}

// The users file: a YAML list of users with the same keys as auth.users. Its
// issues carry its own name and lines.
void readUsersFile(const Fields& auth, const std::filesystem::path& file, UserOrigins& origins,
                   std::vector<UserConfig>& out) {
  Status readable = checkReadableFile(file);
  auto text = readable ? fs::readFile(file) : Result<std::string>(readable.error());
  if (!text) {
    auth.bad("users_file", "cannot read the users file: " + text.error().message);
    return;
  }
  LoadContext ctx(file.string(), file.parent_path());
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(*text);
  } catch (const YAML::Exception& e) {
    ctx.add(e.mark, "", "YAML syntax error: " + e.msg);
  }
  if (docs.size() > 1) {
    ctx.add(docs[1], "", "only one YAML document is allowed; remove the second '---'");
  }
  if (!docs.empty() && !docs.front().IsNull()) {
    const YAML::Node& root = docs.front();
    if (root.IsSequence()) {
      readUsers(ctx, root, "", origins, out);
    } else {
      ctx.add(root, "",
              std::string("expected a list of users ('- name: ...'), got ") + kindOf(root));
    }
  }
  auth.ctx().addIssues(ctx.takeIssues());
}

void readAuth(const Fields& top, AuthConfig& out) {
  auto f = openSection(top, "auth",
                       {"users", "users_file", "max_failures_per_ip", "max_failures_per_user",
                        "failure_window", "lockout", "max_parallel_verifications"});
  if (!f) return;
  UserOrigins origins;
  if (auto list = openList(*f, "users", "users ('- name: ...')")) {
    readUsers(f->ctx(), *list, f->keyOf("users"), origins, out.users);
  }
  if (auto p = readPath(*f, "users_file")) {
    out.users_file = *p;
    if (f->ctx().readSecrets()) readUsersFile(*f, *p, origins, out.users);
  }
  if (auto v = readInt(*f, "max_failures_per_ip", 1, 1000)) {
    out.max_failures_per_ip = static_cast<std::size_t>(*v);
  }
  if (auto v = readInt(*f, "max_failures_per_user", 1, 1000)) {
    out.max_failures_per_user = static_cast<std::size_t>(*v);
  }
  if (auto v = readSeconds(*f, "failure_window", seconds(1))) out.failure_window = *v;
  if (auto v = readSeconds(*f, "lockout", seconds(1))) out.lockout = *v;
  if (auto v = readInt(*f, "max_parallel_verifications", 1, 64)) {
    out.max_parallel_verifications = static_cast<std::size_t>(*v);
  }
}

void readSenders(const Fields& top, SenderConfig& out) {
  auto f = openSection(top, "senders", {"allowed", "override", "default", "use_from_header"});
  if (!f) return;
  if (auto v = readBool(*f, "use_from_header")) out.use_from_header = *v;
  if (auto v = readSenderPatterns(*f, "allowed")) out.allowed = std::move(*v);
  if (auto v = readAddress(*f, "override")) out.override_address = std::move(*v);
  if (auto v = readAddress(*f, "default")) out.default_address = std::move(*v);
}

void readRecipients(const Fields& top, RecipientConfig& out) {
  auto f = openSection(top, "recipients", {"allowed_domains"});
  if (!f) return;
  if (auto v = readDomains(*f, "allowed_domains")) out.allowed_domains = std::move(*v);
}

void readQueue(const Fields& top, QueueConfig& out) {
  auto f = openSection(top, "queue",
                       {"retry_delay", "max_retry_delay", "max_in_flight", "max_lifetime",
                        "max_in_flight_per_mailbox", "max_per_minute_per_mailbox",
                        "breaker_failures", "breaker_cooldown", "bounce_to", "admin_address", "bounce_from",
                        "min_free_space"});
  if (!f) return;
  const auto retry = readSeconds(*f, "retry_delay", seconds(1));
  const auto max_retry = readSeconds(*f, "max_retry_delay", seconds(1));
  if (retry) out.retry_delay = *retry;
  if (max_retry) out.max_retry_delay = *max_retry;
  if ((retry || max_retry) && out.max_retry_delay < out.retry_delay) {
    const milliseconds r = out.retry_delay;
    const milliseconds m = out.max_retry_delay;
    if (max_retry) {
      f->bad("max_retry_delay",
             "must be at least retry_delay (" + formatDuration(r) + "), got " + formatDuration(m));
    } else {
      f->bad("retry_delay", "must not exceed max_retry_delay (" + formatDuration(m) +
                                " by default); raise max_retry_delay as well");
    }
  }
  if (auto v = readInt(*f, "max_in_flight", 1, 1000)) {
    out.max_in_flight = static_cast<std::size_t>(*v);
  }
  if (auto v = readSeconds(*f, "max_lifetime", seconds(60))) out.max_lifetime = *v;
  if (auto v = readInt(*f, "max_in_flight_per_mailbox", 1, 1000)) {
    out.max_in_flight_per_mailbox = static_cast<std::size_t>(*v);
  }
  if (auto v = readInt(*f, "max_per_minute_per_mailbox", 0, 100000)) {
    out.max_per_minute_per_mailbox = static_cast<std::size_t>(*v);
  }
  if (auto v = readInt(*f, "breaker_failures", 0, 1000)) {
    out.breaker_failures = static_cast<std::size_t>(*v);
  }
  if (auto v = readSeconds(*f, "breaker_cooldown", seconds(1))) out.breaker_cooldown = *v;
  if (auto v = readChoice<BounceTo>(*f, "bounce_to",
                                    {{"sender", BounceTo::Sender},
                                     {"admin", BounceTo::Admin},
                                     {"both", BounceTo::Both},
                                     {"none", BounceTo::None}})) {
    out.bounce_to = *v;
  }
  if (auto a = readAddress(*f, "admin_address")) out.admin_address = *a;
  if (auto a = readAddress(*f, "bounce_from")) out.bounce_from = *a;
  if (auto v = readSize(*f, "min_free_space", 0, kGiB * 1024 * 1024,
                        "a size such as 2GB, or 0 (never refuse)")) {
    out.min_free_space = *v;
  }
  if ((out.bounce_to == BounceTo::Admin || out.bounce_to == BounceTo::Both) &&
      out.admin_address.empty()) {
    f->bad("bounce_to", "admin and both need queue.admin_address (who receives the bounces)");
  }
}

bool isProviderName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// A path to a file Mailbridge must be able to read (checked unless the
// loader reads no secrets); nullopt, with `ok` false, when it cannot.
std::optional<std::filesystem::path> readReadableFile(const Fields& f, std::string_view key, bool& ok) {
  auto path = readPath(f, key);
  if (!path) return std::nullopt;
  if (f.ctx().readSecrets()) {
    if (Status st = checkReadableFile(*path); !st) {
      f.bad(key, "cannot read the file: " + st.error().message);
      ok = false;
      return std::nullopt;
    }
  }
  return path;
}

// ca_file, proxy and timeout, which every HTTP API provider has.
void readHttpSettings(const Fields& f, ProviderConfig& p, bool& ok) {
  if (auto path = readReadableFile(f, "ca_file", ok)) p.ca_file = *path;
  if (auto v = readString(f, "proxy", "a proxy URL such as http://proxy.example:3128")) p.proxy = *v;
  if (auto v = readSeconds(f, "timeout", std::chrono::seconds(5))) p.timeout = *v;
}

// The keys of a graph provider besides name and type. Keys are views: the
// secret key spellings live as long as the program.
Keys graphKeys() {
  static const auto secret = secretKeyNames("client_secret");
  static const auto password = secretKeyNames("pkcs12_password");
  Keys keys{"auth_mode", "user", "tenant_id", "client_id", "cert_file", "key_file", "pkcs12_file", "cloud",
            "login_endpoint", "graph_endpoint", "ca_file", "proxy", "timeout", "save_to_sent",
            "client_secret_expires"};
  keys.insert(keys.end(), secret.begin(), secret.end());
  keys.insert(keys.end(), password.begin(), password.end());
  return keys;
}

// An https URL without a trailing slash or a path ("https://host[:port]").
std::optional<std::string> readEndpoint(const Fields& f, std::string_view name) {
  auto s = readString(f, name, "an https URL such as https://graph.microsoft.com");
  if (!s) return std::nullopt;
  std::string url = *s;
  while (!url.empty() && url.back() == '/') url.pop_back();
  const bool https = url.rfind("https://", 0) == 0 && url.size() > 8;
  if (!https || url.find('/', 8) != std::string::npos || url.find_first_of(" ?#") != std::string::npos) {
    f.bad(name, "expected an https URL of a host without a path, such as https://graph.microsoft.com; got " +
                    inQuotes(*s));
    return std::nullopt;
  }
  return url;
}

// The login host of an Entra ID cloud.
std::string loginEndpointOf(Cloud cloud) {
  switch (cloud) {
    case Cloud::Global:
      return "https://login.microsoftonline.com";
    case Cloud::UsGov:
    case Cloud::UsGovDod:
      return "https://login.microsoftonline.us";
    case Cloud::China:
      return "https://login.chinacloudapi.cn";
  }
  return "https://login.microsoftonline.com";
}

// The Microsoft Graph host of an Entra ID cloud.
std::string graphEndpointOf(Cloud cloud) {
  switch (cloud) {
    case Cloud::Global:
      return "https://graph.microsoft.com";
    case Cloud::UsGov:
      return "https://graph.microsoft.us";
    case Cloud::UsGovDod:
      return "https://dod-graph.microsoft.us";
    case Cloud::China:
      return "https://microsoftgraph.chinacloudapi.cn";
  }
  return "https://graph.microsoft.com";
}

// The Entra ID sign-in of a graph provider, and of an smtp provider with
// oauth: entra: tenant_id, client_id, auth_mode and user, the client secret
// or certificate, cloud and login_endpoint (default: the cloud's). `type`
// names the provider type in messages; auth_mode user_password (SMTP AUTH
// passwords checked against Entra ID) only where `user_password` allows it.
void readEntraSignIn(const Fields& f, ProviderConfig& p, bool& ok, std::string_view type,
                     bool user_password) {
  auto given = [&f](std::string_view key) { return f.find(key) != nullptr; };
  const std::string required = "required for type " + std::string(type) + ": ";
  for (const char* key : {"tenant_id", "client_id"}) {
    if (auto v = readString(f, key, "an id")) {
      if (v->find_first_of(" /?#") != std::string::npos) {
        f.bad(key, std::string("expected a GUID or a domain name, got ") + inQuotes(*v));
        ok = false;
      } else {
        (std::string_view(key) == "tenant_id" ? p.tenant_id : p.client_id) = *v;
      }
    } else {
      ok = false;
      if (!given(key)) {
        f.missing(key, required + "the app registration's " +
                           (std::string_view(key) == "tenant_id" ? "directory (tenant) ID"
                                                                 : "application (client) ID"));
      }
    }
  }

  auto readFile = [&f, &ok](std::string_view key) { return readReadableFile(f, key, ok); };
  const Choices<GraphAuthMode> modes{{"app", GraphAuthMode::App},
                                     {"refresh_token", GraphAuthMode::RefreshToken},
                                     {"user_password", GraphAuthMode::UserPassword}};
  if (auto m = readChoice(f, "auth_mode", modes)) {
    p.auth_mode = *m;
    if (*m == GraphAuthMode::UserPassword && !user_password) {
      f.bad("auth_mode", "user_password is only for type graph; type " + std::string(type) +
                             " signs in with app or refresh_token");
      ok = false;
    }
  }
  const bool delegated = p.auth_mode != GraphAuthMode::App;
  if (p.auth_mode == GraphAuthMode::RefreshToken) {
    if (auto u = readAddress(f, "user")) {
      p.user = std::move(*u);
    } else if (!given("user")) {
      f.missing("user", "required for auth_mode refresh_token: the account that signs in with "
                        "`mailbridge oauth login`");
      ok = false;
    } else {
      ok = false;
    }
  } else if (given("user")) {
    f.bad("user", p.auth_mode == GraphAuthMode::App
                      ? "only for auth_mode refresh_token; app-only sign-in has no user"
                      : "only for auth_mode refresh_token; with user_password the SMTP AUTH user signs in");
    ok = false;
  }

  const auto secret_keys = secretKeyNames("client_secret");
  const bool has_secret = std::any_of(secret_keys.begin(), secret_keys.end(),
                                      [&given](const std::string& k) { return given(k); });
  const bool has_cert = given("cert_file") || given("pkcs12_file");
  if (delegated && has_cert) {
    f.bad(given("cert_file") ? "cert_file" : "pkcs12_file",
          std::string("delegated sign-in (auth_mode ") +
              (user_password ? "refresh_token, user_password" : "refresh_token") +
              ") uses a client secret or a public client, not a certificate");
    ok = false;
  } else if (given("key_file") && !has_cert) {
    f.bad("key_file", "key_file needs cert_file (the certificate it belongs to)");
    ok = false;
  } else if (has_secret && has_cert) {
    f.bad(given("cert_file") ? "cert_file" : "pkcs12_file",
          "give a client secret or a certificate, not both");
    ok = false;
  } else if (has_secret) {
    if (auto s = resolveSecret(f.ctx(), f.node(), f.path(), "client_secret", true)) {
      p.client_secret = std::move(*s);
    } else {
      ok = false;
    }
  } else if (has_cert) {
    if (given("cert_file") && given("pkcs12_file")) {
      f.bad("pkcs12_file", "cert_file and pkcs12_file exclude each other");
      ok = false;
    } else if (given("key_file") && !given("cert_file")) {
      f.bad("key_file", "key_file needs cert_file; a PKCS#12 file holds its key itself");
      ok = false;
    }
    if (auto c = readFile("cert_file")) p.cert_file = *c;
    if (auto k = readFile("key_file")) p.key_file = *k;
    if (p.key_file.empty()) p.key_file = p.cert_file;
    if (auto c = readFile("pkcs12_file")) {
      p.pkcs12_file = *c;
      if (auto s = resolveSecret(f.ctx(), f.node(), f.path(), "pkcs12_password", false)) {
        p.pkcs12_password = std::move(*s);
      }
    }
  } else if (!delegated) {
    f.missing("client_secret",
              required + "client_secret (or client_secret_file, "
                         "client_secret_credential), or a certificate (cert_file and key_file, or pkcs12_file)");
    ok = false;
  }
  if (given("client_secret_expires") && !has_secret) {
    f.bad("client_secret_expires", "only with a client secret (a certificate's expiry is read from it)");
    ok = false;
  } else if (auto d = readString(f, "client_secret_expires", "a date such as 2027-06-30")) {
    if (auto t = parseDate(*d)) {
      p.client_secret_expires = *t;
    } else {
      f.bad("client_secret_expires", "expected a date such as 2027-06-30 (the secret's expiry in the Entra portal), got " +
                                         inQuotes(*d));
      ok = false;
    }
  }

  const Choices<Cloud> clouds{{"global", Cloud::Global},
                              {"usgov", Cloud::UsGov},
                              {"usgov-dod", Cloud::UsGovDod},
                              {"china", Cloud::China}};
  if (auto c = readChoice(f, "cloud", clouds)) p.cloud = *c;
  p.login_endpoint = loginEndpointOf(p.cloud);
  if (auto e = readEndpoint(f, "login_endpoint")) p.login_endpoint = *e;
}

void readGraphProvider(const Fields& f, ProviderConfig& p, bool& ok) {
  readEntraSignIn(f, p, ok, "graph", true);
  const bool delegated = p.auth_mode != GraphAuthMode::App;
  p.graph_endpoint = graphEndpointOf(p.cloud);
  p.scope = delegated ? p.graph_endpoint + "/Mail.Send " + p.graph_endpoint + "/Mail.ReadWrite offline_access"
                      : p.graph_endpoint + "/.default";
  if (auto e = readEndpoint(f, "graph_endpoint")) p.graph_endpoint = *e;
  readHttpSettings(f, p, ok);
  if (auto v = readBool(f, "save_to_sent")) p.save_to_sent = *v;
}

// The keys of a gmail provider besides name and type.
Keys gmailKeys() {
  return {"service_account_file", "token_uri", "api_endpoint", "ca_file", "proxy", "timeout"};
}

// token_uri: another token endpoint than the service account key file's.
void readTokenUri(const Fields& f, ProviderConfig& p, bool& ok) {
  if (auto s = readString(f, "token_uri", "an https URL such as https://oauth2.googleapis.com/token")) {
    if (s->rfind("https://", 0) != 0 || s->size() <= 8 || s->find_first_of(" \t") != std::string::npos) {
      f.bad("token_uri", "expected an https URL such as https://oauth2.googleapis.com/token; got " + inQuotes(*s));
      ok = false;
    } else {
      p.token_uri = *s;
    }
  }
}

// service_account_file, required for `what` ("type gmail").
void readServiceAccountFile(const Fields& f, ProviderConfig& p, bool& ok, const std::string& what) {
  if (auto path = readReadableFile(f, "service_account_file", ok)) {
    p.service_account_file = *path;
  } else {
    ok = false;
    if (f.find("service_account_file") == nullptr) {
      f.missing("service_account_file", "required for " + what +
                                            ": the JSON key file of the service account with domain-wide "
                                            "delegation");
    }
  }
}

void readGmailProvider(const Fields& f, ProviderConfig& p, bool& ok) {
  readServiceAccountFile(f, p, ok, "type gmail");
  p.api_endpoint = "https://gmail.googleapis.com";
  if (auto e = readEndpoint(f, "api_endpoint")) p.api_endpoint = *e;
  readTokenUri(f, p, ok);
  p.scope = "https://www.googleapis.com/auth/gmail.send";
  readHttpSettings(f, p, ok);
}

// The Entra ID keys of an smtp provider with oauth: entra.
Keys smtpEntraKeys() {
  static const auto secret = secretKeyNames("client_secret");
  static const auto password = secretKeyNames("pkcs12_password");
  Keys keys{"tenant_id", "client_id", "cert_file", "key_file", "pkcs12_file", "cloud", "login_endpoint",
            "auth_mode", "user", "client_secret_expires"};
  keys.insert(keys.end(), secret.begin(), secret.end());
  keys.insert(keys.end(), password.begin(), password.end());
  return keys;
}

// The Google keys of an smtp provider with oauth: google.
Keys smtpGoogleKeys() { return {"service_account_file", "token_uri"}; }

// The keys of an smtp provider besides name and type.
Keys smtpKeys() {
  static const auto password = secretKeyNames("password");
  Keys keys{"host",     "port",    "tls",     "helo_name",       "auth",
            "username", "oauth",   "ca_file", "timeout",         "max_connections",
            "max_messages_per_connection", "idle_timeout"};
  keys.insert(keys.end(), password.begin(), password.end());
  for (const Keys& more : {smtpEntraKeys(), smtpGoogleKeys()}) keys.insert(keys.end(), more.begin(), more.end());
  return keys;
}

constexpr std::string_view kUpstreamHostExample = "a host name such as smtp.office365.com";

// The host of an smtp provider: a DNS name, an IPv4 address, or an IPv6
// address with or without brackets (kept without them).
Result<std::string> parseUpstreamHost(std::string_view text) {
  auto fail = [&text](std::string_view why) {
    return Error{"expected " + std::string(kUpstreamHostExample) + " or an IP address" + std::string(why) +
                     ", got " + inQuotes(text),
                 0};
  };
  if (text.find("://") != std::string_view::npos) return fail(" without a scheme");
  std::string_view inner = text;
  const bool bracketed = text.size() > 2 && text.front() == '[' && text.back() == ']';
  if (bracketed) inner = text.substr(1, text.size() - 2);
  if (inner.find(':') != std::string_view::npos) {
    const std::string v6(inner);
    unsigned char bin[16];
    if (::inet_pton(AF_INET6, v6.c_str(), bin) == 1) return v6;
    return fail(" without a port (set port: separately)");
  }
  if (bracketed) return fail(" (brackets only around an IPv6 address)");
  const bool name_chars = std::all_of(inner.begin(), inner.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
  });
  if (!name_chars || inner.empty() || inner.size() > 253 || inner.front() == '.' || inner.front() == '-' ||
      inner.back() == '.' || inner.back() == '-' || inner.find("..") != std::string_view::npos) {
    return fail("");
  }
  return std::string(inner);
}

// localhost, 127.0.0.0/8 or ::1: a host that plaintext never leaves the
// machine for.
bool isLoopbackHost(const std::string& host) {
  if (iequals(host, "localhost")) return true;
  unsigned char bin[16] = {};
  if (::inet_pton(AF_INET, host.c_str(), bin) == 1) return bin[0] == 127;
  if (::inet_pton(AF_INET6, host.c_str(), bin) == 1) {
    static constexpr unsigned char kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::equal(std::begin(bin), std::end(bin), std::begin(kLoopback));
  }
  return false;
}

// An EHLO argument: a domain name or an address literal ([192.0.2.1],
// [IPv6:2001:db8::1]).
bool isHeloName(std::string_view h) {
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') {
    std::string inner(h.substr(1, h.size() - 2));
    unsigned char bin[16];
    if (inner.size() > 5 && iequals(std::string_view(inner).substr(0, 5), "IPv6:")) {
      return ::inet_pton(AF_INET6, inner.c_str() + 5, bin) == 1;
    }
    return ::inet_pton(AF_INET, inner.c_str(), bin) == 1;
  }
  return isHostname(h) && h.front() != '[' && h.back() != '.' && h.back() != '-' &&
         h.find("..") == std::string_view::npos;
}

// The XOAUTH2 tokens of an smtp provider with oauth: entra: the same sign-in
// as graph (without user_password), for Exchange Online's SMTP.
void readSmtpEntra(const Fields& f, ProviderConfig& p, bool& ok) {
  readEntraSignIn(f, p, ok, "smtp", false);
  std::string outlook;
  switch (p.cloud) {
    case Cloud::Global:
      outlook = "https://outlook.office365.com";
      break;
    case Cloud::UsGov:
    case Cloud::UsGovDod:
      outlook = "https://outlook.office365.us";
      break;
    case Cloud::China:
      outlook = "https://partner.outlook.cn";
      break;
  }
  if (p.auth_mode == GraphAuthMode::RefreshToken) {
    // The delegated permission is asked for under the resource's own name;
    // in the global cloud that is outlook.office.com.
    if (p.cloud == Cloud::Global) outlook = "https://outlook.office.com";
    p.scope = outlook + "/SMTP.Send offline_access";
  } else {
    p.scope = outlook + "/.default";
  }
}

// The XOAUTH2 tokens of an smtp provider with oauth: google: a service
// account with domain-wide delegation acting as the mailbox.
void readSmtpGoogle(const Fields& f, ProviderConfig& p, bool& ok) {
  readServiceAccountFile(f, p, ok, "type smtp with oauth: google");
  readTokenUri(f, p, ok);
  p.scope = "https://mail.google.com/";
}

void readSmtpProvider(const Fields& f, ProviderConfig& p, bool& ok) {
  auto given = [&f](std::string_view key) { return f.find(key) != nullptr; };
  // A key that read cleanly, or that is absent and not misspelt: only then
  // are rules that involve it judged, so that one mistake is one issue.
  auto clean = [&f, &given](bool read, std::string_view key) {
    return read || (!given(key) && !f.wasGuessed(key));
  };

  bool host_ok = false;
  if (auto h = readString(f, "host", kUpstreamHostExample)) {
    if (auto host = parseUpstreamHost(*h)) {
      p.host = std::move(*host);
      host_ok = true;
    } else {
      f.bad("host", host.error().message);
      ok = false;
    }
  } else {
    ok = false;
    if (!given("host")) {
      f.missing("host", "required for type smtp: the upstream server's host name, e.g. smtp.office365.com");
    }
  }

  const auto tls = readChoice<SmtpTls>(
      f, "tls", {{"starttls", SmtpTls::StartTls}, {"implicit", SmtpTls::Implicit}, {"none", SmtpTls::None}});
  if (tls) p.tls = *tls;
  if (p.tls == SmtpTls::None && host_ok && !isLoopbackHost(p.host)) {
    f.bad("tls",
          "tls: none would send credentials and mail across the network in plaintext; it is allowed only "
          "for a loopback host (localhost, 127.0.0.0/8, ::1); use starttls or implicit");
    ok = false;
  }
  p.port = p.tls == SmtpTls::StartTls ? 587 : p.tls == SmtpTls::Implicit ? 465 : 25;
  if (auto v = readInt(f, "port", 1, 65535)) p.port = static_cast<std::uint16_t>(*v);

  if (auto h = readString(f, "helo_name", "a domain name such as relay.example.com")) {
    if (isHeloName(*h)) {
      p.helo_name = *h;
    } else {
      f.bad("helo_name",
            "expected a domain name such as relay.example.com or an address literal such as [192.0.2.1], got " +
                inQuotes(*h));
    }
  }
  if (auto path = readReadableFile(f, "ca_file", ok)) p.ca_file = *path;
  p.timeout = seconds(60);
  if (auto v = readSeconds(f, "timeout", seconds(5))) p.timeout = *v;

  const auto auth = readChoice<SmtpAuth>(f, "auth",
                                         {{"none", SmtpAuth::None},
                                          {"plain", SmtpAuth::Plain},
                                          {"login", SmtpAuth::Login},
                                          {"xoauth2", SmtpAuth::XOAuth2}});
  if (auth) p.auth = *auth;
  const bool auth_clean = clean(auth.has_value(), "auth");
  std::string password_key;  // the spelling given, if any
  for (const auto& k : secretKeyNames("password")) {
    if (password_key.empty() && given(k)) password_key = k;
  }

  switch (p.auth) {
    case SmtpAuth::None:
      if (!auth_clean) break;
      if (given("username")) {
        f.bad("username", "username needs auth: plain, login or xoauth2");
        ok = false;
      }
      if (!password_key.empty()) {
        f.bad(password_key, password_key + " needs auth: plain or login");
        ok = false;
      }
      break;
    case SmtpAuth::Plain:
    case SmtpAuth::Login:
      if (auto u = readString(f, "username", "a user name")) {
        if (std::any_of(u->begin(), u->end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
          f.bad("username", "expected a user name without control characters, got " + inQuotes(*u));
          ok = false;
        } else {
          p.username = *u;
        }
      } else {
        ok = false;
        if (!given("username")) f.missing("username", "required for auth plain and login: the account to sign in as");
      }
      if (password_key.empty()) {
        f.missing("password",
                  "required for auth plain and login: set password, password_file or password_credential");
        ok = false;
      } else if (auto s = resolveSecret(f.ctx(), f.node(), f.path(), "password", true)) {
        p.password = std::move(*s);
      } else {
        ok = false;
      }
      break;
    case SmtpAuth::XOAuth2:
      // The XOAUTH2 user; without it, each message's sending mailbox.
      if (auto u = readAddress(f, "username")) {
        p.username = *u;
      } else if (given("username")) {
        ok = false;
      }
      if (!password_key.empty()) {
        f.bad(password_key, "not used with auth xoauth2: the OAuth token is the credential; remove " + password_key);
        ok = false;
      }
      break;
  }

  const auto oauth =
      readChoice<SmtpOAuth>(f, "oauth", {{"entra", SmtpOAuth::Entra}, {"google", SmtpOAuth::Google}});
  if (oauth) p.oauth = *oauth;
  const bool xoauth2 = p.auth == SmtpAuth::XOAuth2;
  if (xoauth2 && !given("oauth")) {
    f.missing("oauth", "required for auth xoauth2: entra (Microsoft 365) or google (Google Workspace)");
    ok = false;
  } else if (!xoauth2 && given("oauth") && auth_clean) {
    f.bad("oauth", "only for auth: xoauth2");
    ok = false;
  }

  // Keys of the token source not chosen. With xoauth2 but no readable
  // oauth, the missing or bad oauth has been reported and says it better.
  if (auth_clean && (!xoauth2 || oauth)) {
    const std::pair<SmtpOAuth, std::string_view> kinds[] = {{SmtpOAuth::Entra, "entra"},
                                                            {SmtpOAuth::Google, "google"}};
    for (const auto& [kind, kind_name] : kinds) {
      if (xoauth2 && p.oauth == kind) continue;
      for (const auto& key : kind == SmtpOAuth::Entra ? smtpEntraKeys() : smtpGoogleKeys()) {
        if (!given(key)) continue;
        f.bad(key, std::string(key) + " is for " + (xoauth2 ? "" : "auth: xoauth2 with ") + "oauth: " +
                       std::string(kind_name));
        ok = false;
      }
    }
  }
  if (xoauth2 && oauth) {
    if (p.oauth == SmtpOAuth::Entra) {
      readSmtpEntra(f, p, ok);
    } else {
      readSmtpGoogle(f, p, ok);
    }
  }

  if (auto v = readInt(f, "max_connections", 1, 100)) p.max_connections = static_cast<std::size_t>(*v);
  if (auto v = readInt(f, "max_messages_per_connection", 1, 100000)) {
    p.max_messages_per_connection = static_cast<std::size_t>(*v);
  }
  // 0 is allowed here, unlike other durations: a connection is then never
  // reused.
  if (auto v = readDuration(f, "idle_timeout", milliseconds(0), seconds(300), true)) {
    p.idle_timeout = std::chrono::duration_cast<seconds>(*v);
  }
}

// A provider type: its name in the file and its keys besides name and type.
struct ProviderTypeInfo {
  ProviderType type;
  std::string_view name;
  Keys keys;
};

const std::vector<ProviderTypeInfo>& providerTypes() {
  static const std::vector<ProviderTypeInfo> types{
      {ProviderType::Outbox, "outbox", {"directory", "refuse_recipients"}},
      {ProviderType::Graph, "graph", graphKeys()},
      {ProviderType::Gmail, "gmail", gmailKeys()},
      {ProviderType::Smtp, "smtp", smtpKeys()},
  };
  return types;
}

void readProviders(const Fields& top, std::vector<ProviderConfig>& out) {
  const auto& types = providerTypes();
  Keys type_names;
  // Every type shares name and type; the rest depends on the type: the map
  // is read with every type's keys, and keys of another type are reported
  // once the type is known.
  Keys all{"name", "type"};
  for (const auto& t : types) {
    type_names.push_back(t.name);
    for (const auto& key : t.keys) {
      if (std::find(all.begin(), all.end(), key) == all.end()) all.push_back(key);
    }
  }
  const std::string supported = "supported types: " + joinNames(type_names);
  if (top.find("providers") == nullptr) {
    if (top.wasGuessed("providers")) return;
    top.ctx().addFileIssue("providers",
                           "required; add at least one provider, e.g. "
                           "'providers: [{name: outbox, type: outbox, directory: /var/lib/"
                           "mailbridge/outbox}]'");
    return;
  }
  auto list = openList(top, "providers", "providers ('- name: ...')");
  if (!list) return;
  if (list->size() == 0) {
    top.bad("providers", "at least one provider is required");
    return;
  }
  std::map<std::string, std::string, std::less<>> names;
  const YAML::Node& seq = *list;
  for (std::size_t i = 0; i < seq.size(); ++i) {
    const YAML::Node item = seq[i];
    const std::string path = indexKey("providers", i);
    if (!item.IsMap()) {
      top.ctx().add(
          item, path,
          std::string("expected a mapping with name, type and settings, got ") + kindOf(item));
      continue;
    }
    Fields f(top.ctx(), item, path, all);
    ProviderConfig p;
    bool ok = true;

    const bool has_name = f.find("name") != nullptr;
    if (auto n = readString(f, "name", "a name of letters, digits, '_' and '-'")) {
      if (!isProviderName(*n)) {
        f.bad("name", "expected a name of letters, digits, '_' and '-', got " + inQuotes(*n));
        ok = false;
      } else if (auto it = names.find(*n); it != names.end()) {
        f.bad("name",
              "duplicate provider name " + inQuotes(*n) + "; " + it->second + " uses it too");
        ok = false;
      } else {
        names.emplace(*n, path);
        p.name = *n;
      }
    } else {
      ok = false;
      if (!has_name) f.missing("name", "required; a unique name of letters, digits, '_' and '-'");
    }

    const ProviderTypeInfo* type = nullptr;
    if (auto t = readScalar(f, "type", "a provider type (" + supported + ")")) {
      const auto it = std::find_if(types.begin(), types.end(),
                                   [&t](const ProviderTypeInfo& info) { return iequals(info.name, *t); });
      if (it != types.end()) {
        type = &*it;
      } else {
        f.bad("type", "unknown provider type " + inQuotes(*t) + "; " + supported);
      }
    } else if (f.find("type") == nullptr) {
      f.missing("type", "required; " + supported);
    }
    if (type == nullptr) continue;
    p.type = type->type;
    for (const auto& k : all) {
      if (k == "name" || k == "type" || std::find(type->keys.begin(), type->keys.end(), k) != type->keys.end()) {
        continue;
      }
      if (f.find(k) != nullptr) {
        f.bad(k, "not a setting of type " + std::string(type->name));
        ok = false;
      }
    }

    switch (p.type) {
      case ProviderType::Outbox:
        if (auto d = readPath(f, "directory")) {
          p.directory = *d;
        } else {
          ok = false;
          if (f.find("directory") == nullptr) {
            f.missing("directory",
                      "required for type outbox: the directory that receives the "
                      "messages as .eml files");
          }
        }
        if (auto v = readRecipientPatterns(f, "refuse_recipients")) p.refuse_recipients = std::move(*v);
        break;
      case ProviderType::Graph:
        readGraphProvider(f, p, ok);
        break;
      case ProviderType::Gmail:
        readGmailProvider(f, p, ok);
        break;
      case ProviderType::Smtp:
        readSmtpProvider(f, p, ok);
        break;
    }
    // SMTP AUTH asks one identity platform; two would each see the other's
    // users' passwords. (Only graph has user_password; an smtp provider
    // that asks for it is refused above.)
    const auto by_password = [](const ProviderConfig& q) {
      return q.type == ProviderType::Graph && q.auth_mode == GraphAuthMode::UserPassword;
    };
    if (ok && by_password(p) && std::any_of(out.begin(), out.end(), by_password)) {
      f.bad("auth_mode", "only one provider may use auth_mode user_password");
      ok = false;
    }
    if (ok) out.push_back(std::move(p));
  }
}

void readLogging(const Fields& top, LoggingConfig& out) {
  auto f = openSection(top, "logging", {"level", "format", "file", "retention_days"});
  if (!f) return;
  const Keys levels{"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (auto s = readScalar(*f, "level", "one of: " + joinNames(levels))) {
    const auto it = std::find_if(levels.begin(), levels.end(),
                                 [&](std::string_view l) { return iequals(l, *s); });
    if (it != levels.end()) {
      out.level = std::string(*it);
    } else {
      f->bad("level", "expected one of: " + joinNames(levels) + "; got " + inQuotes(*s));
    }
  }
  if (auto v = readChoice<LogFormat>(*f, "format",
                                     {{"text", LogFormat::Text}, {"json", LogFormat::Json}})) {
    out.format = *v;
  }
  if (auto p = readPath(*f, "file")) out.file = *p;
  if (auto v = readInt(*f, "retention_days", -1, 36500,
                       "-1 (write no log file), 0 (keep log files forever) or a number of days from 1 to "
                       "36500")) {
    out.retention_days = static_cast<int>(*v);
  }
}

void readTracker(const Fields& top, TrackerConfig& out) {
  auto f = openSection(top, "tracker",
                       {"retention_days", "store_subject", "store_addresses", "masking",
                        "log_rejected"});
  if (!f) return;
  // -1, 0 and 1..36500 are one range, but three meanings: say all three.
  if (auto v = readInt(*f, "retention_days", -1, 36500,
                       "-1 (store nothing: the tracker is off), 0 (keep forever) or a number "
                       "of days from 1 to 36500")) {
    out.retention_days = static_cast<int>(*v);
  }
  if (auto v = readBool(*f, "store_subject")) out.store_subject = *v;
  if (auto v = readBool(*f, "store_addresses")) out.store_addresses = *v;
  if (auto v = readChoice<Masking>(*f, "masking",
                                   {{"none", Masking::None}, {"partial", Masking::Partial}})) {
    out.masking = *v;
  }
  if (auto v = readBool(*f, "log_rejected")) out.log_rejected = *v;
}

void readAdmin(const Fields& top, AdminConfig& out) {
  const auto token = secretKeyNames("api_token");
  auto f = openSection(top, "admin",
                       {"address", "tls", "password_hash", "public_metrics", "public_health", "session_timeout",
                        token[0], token[1], token[2]});
  if (!f) return;
  constexpr std::string_view kExpected = "HOST:PORT such as 127.0.0.1:8025, or off";
  if (auto a = readString(*f, "address", kExpected)) {
    if (iequals(*a, "off")) {
      out.enabled = false;
    } else if (auto hp = parseHostPort(*a)) {
      out.host = hp->host;
      out.port = hp->port;
    } else {
      f->bad("address", hp.error().message + "; expected " + std::string(kExpected));
    }
  }
  if (auto v = readBool(*f, "tls")) out.tls = *v;
  // Never quote this value: a plain password pasted here by mistake must
  // not end up in a message.
  if (auto h = readString(*f, "password_hash", "an argon2id hash")) {
    if (Status st = policy::UserStore::validateHash(*h); !st) {
      f->bad("password_hash", st.error().message + "; " + std::string(kHashHint));
    } else {
      out.password_hash = *h;
    }
  }
  if (auto secret = resolveSecret(f->ctx(), f->node(), f->path(), "api_token", false)) {
    if (f->ctx().readSecrets() && secret->reveal().size() < 16) {
      f->bad("api_token", "too short: use at least 16 characters, e.g. from `openssl rand -base64 32`");
    } else {
      out.api_token = std::move(*secret);
    }
  }
  if (auto v = readBool(*f, "public_metrics")) out.public_metrics = *v;
  if (auto v = readBool(*f, "public_health")) out.public_health = *v;
  if (auto v = readDuration(*f, "session_timeout", std::chrono::minutes(1), std::chrono::hours(12), true)) {
    out.session_timeout = std::chrono::duration_cast<seconds>(*v);
  }
}

// `routes:` after listeners and providers, whose names the rules use.
void readRoutes(const Fields& top, Config& cfg) {
  if (top.find("routes") == nullptr) return;
  auto list = openList(top, "routes", "routes ('- {from: [...], provider: name}')");
  if (!list) return;
  const YAML::Node& seq = *list;
  for (std::size_t i = 0; i < seq.size(); ++i) {
    const YAML::Node item = seq[i];
    const std::string path = indexKey("routes", i);
    if (!item.IsMap()) {
      top.ctx().add(item, path, std::string("expected a mapping such as {from: ['@example.com'], provider: m365}, got ") +
                                    kindOf(item));
      continue;
    }
    Fields f(top.ctx(), item, path, {"from", "user", "listener", "to_domain", "provider"});
    RouteConfig r;
    bool ok = true;
    if (auto v = readSenderPatterns(f, "from")) r.from = std::move(*v);
    if (auto v = readList(f, "user", "user names", "a user name", [](std::string_view) { return Status{}; })) {
      r.users = std::move(*v);
    }
    if (auto v = readList(f, "listener", "listener names", "a listener name", [](std::string_view) { return Status{}; })) {
      for (const auto& name : *v) {
        if (std::none_of(cfg.listeners.begin(), cfg.listeners.end(),
                         [&](const ListenerConfig& l) { return l.name == name; })) {
          f.bad("listener", "no listener named " + inQuotes(name));
          ok = false;
        }
      }
      r.listeners = std::move(*v);
    }
    if (auto v = readDomains(f, "to_domain")) r.to_domains = std::move(*v);
    if (auto v = readString(f, "provider", "a provider name")) {
      if (std::none_of(cfg.providers.begin(), cfg.providers.end(),
                       [&](const ProviderConfig& p) { return p.name == *v; })) {
        f.bad("provider", "no provider named " + inQuotes(*v));
        ok = false;
      }
      r.provider = *v;
    } else {
      ok = false;
      if (f.find("provider") == nullptr) f.missing("provider", "required: the provider this route delivers through");
    }
    if (ok) cfg.routes.push_back(std::move(r));
  }
}

Config readConfig(LoadContext& ctx, const YAML::Node& root) {
  Config cfg;
  cfg.source = ctx.file();
  const Keys sections{"server",     "listeners", "tls",       "smtp",   "access",  "auth",   "senders",
                      "recipients", "queue",     "providers", "routes", "tracker", "admin",  "logging"};
  if (!root.IsNull() && !root.IsMap()) {
    ctx.add(root, "",
            std::string("expected a mapping with the sections ") + joinNames(sections) + ", got " +
                kindOf(root));
    return cfg;
  }
  const Fields top(ctx, root, "", sections);
  readServer(top, cfg.server);
  readListeners(top, cfg.listeners);
  readTls(top, cfg.tls);
  readSmtp(top, cfg.smtp);
  readAccess(top, cfg.access);
  readAuth(top, cfg.auth);
  readSenders(top, cfg.senders);
  readRecipients(top, cfg.recipients);
  readQueue(top, cfg.queue);
  readProviders(top, cfg.providers);
  readRoutes(top, cfg);
  readTracker(top, cfg.tracker);
  readAdmin(top, cfg.admin);
  readLogging(top, cfg.logging);
  return cfg;
}

std::string formatIssues(const std::vector<ConfigIssue>& issues) {
  std::string out;
  for (const auto& i : issues) {
    if (!out.empty()) out += '\n';
    out += i.format();
  }
  return out;
}

}  // namespace

std::string ConfigIssue::format() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}

ConfigError::ConfigError(std::vector<ConfigIssue> issues)
    : std::runtime_error(formatIssues(issues)), issues_(std::move(issues)) {}

Config loadConfigText(std::string_view yaml, std::string_view name,
                      const std::filesystem::path& base_dir, LoadOptions options) {
  std::error_code ec;
  std::filesystem::path base = base_dir.empty() ? std::filesystem::current_path(ec)
                                                : std::filesystem::absolute(base_dir, ec);
  if (ec) base = base_dir;
  LoadContext ctx(std::string(name), base.lexically_normal());
  ctx.setReadSecrets(options.read_secrets);

  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(yaml));
  } catch (const YAML::Exception& e) {
    ctx.add(e.mark, "", "YAML syntax error: " + e.msg);
    throw ConfigError(ctx.takeIssues());
  }
  if (docs.size() > 1) {
    ctx.add(docs[1], "", "only one YAML document is allowed; remove the second '---'");
  }
  Config cfg = readConfig(ctx, docs.empty() ? YAML::Node() : docs.front());
  if (ctx.hasIssues()) throw ConfigError(ctx.takeIssues());
  return cfg;
}

Config loadConfigFile(const std::filesystem::path& path, LoadOptions options) {
  auto text = fs::readFile(path);
  if (!text) {
    ConfigIssue issue;
    issue.file = path.string();
    issue.message = "cannot read the configuration: " + text.error().message;
    throw ConfigError({std::move(issue)});
  }
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  return loadConfigText(*text, path.string(), (ec ? path : absolute).parent_path(), options);
}

}  // namespace mb::config
