#include "mime/recipient_rewrite.h"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "base/durable_file.h"
#include "base/text.h"
#include "mime/gmime_support.h"

namespace mb::mime {
namespace {

using detail::FormatOptionsPtr;
using detail::GCharPtr;
using detail::GObjectPtr;
using AddressList = GObjectPtr<InternetAddressList>;

constexpr std::size_t kMaxLineOctets = 998;  // RFC 5322 §2.1.1, without CRLF

enum class Kind { To, Cc, Bcc, From, Other };

// Resent-To/-Cc/-Bcc fall under Other on purpose: they record an earlier
// resending (RFC 5322 §3.6.6), and the providers take recipients from To, Cc
// and Bcc only, so they stay exactly as the client wrote them.
Kind kindOf(std::string_view name) {
  if (iequals(name, "To")) return Kind::To;
  if (iequals(name, "Cc")) return Kind::Cc;
  if (iequals(name, "Bcc")) return Kind::Bcc;
  if (iequals(name, "From")) return Kind::From;
  return Kind::Other;
}

// Unfolding (RFC 5322 §2.2.3) is removing the line ends; GMime gets one line.
std::string unfold(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c != '\r' && c != '\n') out += c;
  }
  return out;
}

AddressList parseAddresses(std::string_view value) {
  const std::string text = unfold(value);
  AddressList list(internet_address_list_parse(nullptr, text.c_str()));
  if (!list) list.reset(internet_address_list_new());
  return list;
}

// The characters that make up address structure, counted outside quoted
// strings, comments and domain literals. When GMime's own rendering of what
// it parsed (names quoted or RFC 2047-encoded, comments gone) has a
// different count than the raw text, the parser skipped something
// ("a@x; b@y" yields only a@x) that a more lenient reader at the provider
// might still take for a recipient.
struct Shape {
  int at = 0;
  int colon = 0;
  int semicolon = 0;
  bool operator==(const Shape&) const = default;
};

Shape shapeOf(std::string_view s) {
  Shape shape;
  std::size_t i = 0;
  const auto skipQuoted = [&](char close) {
    ++i;
    while (i < s.size() && s[i] != close) i += s[i] == '\\' ? 2 : 1;
    ++i;
  };
  while (i < s.size()) {
    const char c = s[i];
    if (c == '"') {
      skipQuoted('"');
    } else if (c == '[') {
      skipQuoted(']');
    } else if (c == '(') {
      int depth = 0;
      do {
        if (s[i] == '\\') {
          ++i;
        } else if (s[i] == '(') {
          ++depth;
        } else if (s[i] == ')') {
          --depth;
        }
        ++i;
      } while (i < s.size() && depth > 0);
    } else {
      if (c == '@') ++shape.at;
      if (c == ':') ++shape.colon;
      if (c == ';') ++shape.semicolon;
      ++i;
    }
  }
  return shape;
}

bool parsedCompletely(std::string_view value, InternetAddressList* list) {
  const GCharPtr rendered(internet_address_list_to_string(list, nullptr, TRUE));
  return shapeOf(unfold(value)) == shapeOf(rendered ? std::string_view(rendered.get()) : std::string_view());
}

std::string_view addrOf(InternetAddressMailbox* mailbox) {
  const char* addr = internet_address_mailbox_get_addr(mailbox);
  return addr != nullptr ? std::string_view(addr) : std::string_view();
}

// The forms an address matches under: as written and with an IDN domain in
// its A-label form (RFC 5891), both case-folded in ASCII only.
std::vector<std::string> matchKeys(InternetAddressMailbox* mailbox) {
  std::vector<std::string> keys{asciiLower(addrOf(mailbox))};
  if (const char* idn = internet_address_mailbox_get_idn_addr(mailbox); idn != nullptr) {
    std::string key = asciiLower(idn);
    if (key != keys.front()) keys.push_back(std::move(key));
  }
  return keys;
}

bool hasControl(std::string_view s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// The envelope recipients, each parsed once by GMime so that it can be
// matched against header addresses and written into a Bcc field.
class Envelope {
 public:
  static Result<Envelope> of(const std::vector<std::string>& recipients) {
    Envelope env;
    for (const std::string& address : recipients) {
      // A recipient must come back from GMime as exactly itself, or writing
      // it into Bcc could name someone else (or several: "a@x, b@y").
      if (address.empty() || hasControl(address)) return unusable(address);
      AddressList parsed(internet_address_list_parse(nullptr, address.c_str()));
      if (!parsed || internet_address_list_length(parsed.get()) != 1) return unusable(address);
      InternetAddress* ia = internet_address_list_get_address(parsed.get(), 0);
      if (!INTERNET_ADDRESS_IS_MAILBOX(ia)) return unusable(address);
      // GMime shows an A-label domain in its U-label form; either is itself.
      const std::vector<std::string> keys = matchKeys(INTERNET_ADDRESS_MAILBOX(ia));
      if (std::find(keys.begin(), keys.end(), asciiLower(address)) == keys.end()) return unusable(address);
      bool duplicate = false;
      for (const std::string& key : keys) duplicate = duplicate || env.index_.count(key) > 0;
      if (duplicate) continue;
      for (const std::string& key : keys) env.index_.emplace(key, env.entries_.size());
      env.entries_.push_back(Entry{address, std::move(parsed), false});
    }
    return env;
  }

  std::optional<std::size_t> find(InternetAddressMailbox* mailbox) const {
    for (const std::string& key : matchKeys(mailbox)) {
      if (auto it = index_.find(key); it != index_.end()) return it->second;
    }
    return std::nullopt;
  }

  void cover(std::size_t i) { entries_[i].covered = true; }

  // The recipients no To or Cc address reaches, in envelope order.
  std::vector<std::size_t> uncovered() const {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      if (!entries_[i].covered) out.push_back(i);
    }
    return out;
  }

  const std::string& address(std::size_t i) const { return entries_[i].address; }
  InternetAddress* mailbox(std::size_t i) const {
    return internet_address_list_get_address(entries_[i].parsed.get(), 0);
  }

 private:
  struct Entry {
    std::string address;
    AddressList parsed;  // holds the one mailbox
    bool covered;
  };

  static Error unusable(const std::string& address) {
    return Error{"envelope recipient is not a single mailbox: " + printable(address), 0};
  }

  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;  // match key -> entry
};

// Header addresses dropped, once each, in header order.
class RemovedLog {
 public:
  void add(std::string_view address) {
    if (seen_.insert(asciiLower(address)).second) list_.emplace_back(address);
  }
  std::vector<std::string> take() { return std::move(list_); }

 private:
  std::vector<std::string> list_;
  std::unordered_set<std::string> seen_;
};

// Keeps in `list` only the mailboxes the envelope names (marking those
// recipients as reached) and logs the others. A group emptied here goes
// with its members; a group that had none to begin with stays. Returns
// whether anything was dropped.
bool keepEnvelopeOnly(InternetAddressList* list, Envelope& env, RemovedLog& removed) {
  bool dropped = false;
  int i = 0;
  while (i < internet_address_list_length(list)) {
    InternetAddress* ia = internet_address_list_get_address(list, i);
    bool keep = true;
    if (INTERNET_ADDRESS_IS_GROUP(ia)) {
      InternetAddressList* members = internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
      const bool had_members = internet_address_list_length(members) > 0;
      dropped = keepEnvelopeOnly(members, env, removed) || dropped;
      keep = !had_members || internet_address_list_length(members) > 0;
    } else if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
      InternetAddressMailbox* mailbox = INTERNET_ADDRESS_MAILBOX(ia);
      if (auto found = env.find(mailbox)) {
        env.cover(*found);
      } else {
        removed.add(addrOf(mailbox));
        keep = false;
      }
    }
    if (keep) {
      ++i;
    } else {
      internet_address_list_remove_at(list, i);
      dropped = true;
    }
  }
  return dropped;
}

// Bcc fields all go; their addresses outside the envelope are the ones to log.
void logOutsideEnvelope(InternetAddressList* list, const Envelope& env, RemovedLog& removed) {
  for (int i = 0; i < internet_address_list_length(list); ++i) {
    InternetAddress* ia = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_GROUP(ia)) {
      logOutsideEnvelope(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)), env, removed);
    } else if (INTERNET_ADDRESS_IS_MAILBOX(ia) && !env.find(INTERNET_ADDRESS_MAILBOX(ia))) {
      removed.add(addrOf(INTERNET_ADDRESS_MAILBOX(ia)));
    }
  }
}

InternetAddressMailbox* firstMailbox(InternetAddressList* list) {
  for (int i = 0; i < internet_address_list_length(list); ++i) {
    InternetAddress* ia = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_MAILBOX(ia)) return INTERNET_ADDRESS_MAILBOX(ia);
    if (INTERNET_ADDRESS_IS_GROUP(ia)) {
      if (auto* inner = firstMailbox(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)))) return inner;
    }
  }
  return nullptr;
}

std::string fromAddress(std::string_view value) {
  const AddressList list = parseAddresses(value);
  InternetAddressMailbox* mailbox = firstMailbox(list.get());
  if (mailbox == nullptr) return {};
  const std::string_view addr = addrOf(mailbox);
  return addr.find('@') == std::string_view::npos ? std::string() : std::string(addr);
}

// The To fields or the Cc fields of the message, merged.
struct Recipients {
  AddressList kept{internet_address_list_new()};
  int fields = 0;
  bool rewrite = false;  // false: the one field is sent as it was
  bool written = false;
};

void take(Recipients& r, const HeaderField& field, Envelope& env, RemovedLog& removed) {
  const AddressList list = parseAddresses(field.value);
  const bool complete = parsedCompletely(field.value, list.get());
  const bool dropped = keepEnvelopeOnly(list.get(), env, removed);
  const bool empty = internet_address_list_length(list.get()) == 0;
  ++r.fields;
  r.rewrite = r.rewrite || r.fields > 1 || !complete || dropped || empty;
  internet_address_list_append(r.kept.get(), list.get());
}

// A field as stored, its line ends made CRLF.
void appendCrlf(std::string& out, std::string_view raw) {
  char prev = '\0';
  for (char c : raw) {
    if (c == '\n' && prev != '\r') out += '\r';
    out += c;
    prev = c;
  }
  if (prev != '\n') out += "\r\n";
}

Status appendAddressField(std::string& out, const char* name, InternetAddressList* list,
                          GMimeFormatOptions* options) {
  GString* text = g_string_new(name);
  g_string_append(text, ": ");
  internet_address_list_encode(list, options, text);
  const std::string_view field(text->str, text->len);
  std::size_t line_start = 0;
  bool ok = true;
  while (line_start < field.size()) {
    std::size_t nl = field.find('\n', line_start);
    if (nl == std::string_view::npos) nl = field.size();
    // nl - line_start counts the CR of the CRLF too.
    if (nl - line_start > kMaxLineOctets + 1) ok = false;
    line_start = nl + 1;
  }
  if (ok) appendCrlf(out, field);
  g_string_free(text, TRUE);
  if (!ok) return Error{std::string("cannot fold the new ") + name + " field under 998 octets a line", 0};
  return {};
}

}  // namespace

Result<RecipientRewrite> rewriteRecipients(const HeaderBlock& block,
                                           const std::vector<std::string>& envelope_recipients) {
  detail::ensureGMime();
  auto env_result = Envelope::of(envelope_recipients);
  if (!env_result) return env_result.error();
  Envelope& env = *env_result;

  const std::vector<HeaderField> fields = block.fields();
  RemovedLog removed;
  Recipients to;
  Recipients cc;
  int bcc_fields = 0;
  bool from_seen = false;
  RecipientRewrite out;
  out.body_offset = block.body_offset;

  for (const HeaderField& field : fields) {
    switch (kindOf(field.name)) {
      case Kind::To:
        take(to, field, env, removed);
        break;
      case Kind::Cc:
        take(cc, field, env, removed);
        break;
      case Kind::Bcc: {
        ++bcc_fields;
        const AddressList list = parseAddresses(field.value);
        logOutsideEnvelope(list.get(), env, removed);
        break;
      }
      case Kind::From:
        if (!from_seen) out.from_address = fromAddress(field.value);
        from_seen = true;
        break;
      case Kind::Other:
        break;
    }
  }

  const std::vector<std::size_t> bcc = env.uncovered();
  out.changed = to.rewrite || cc.rewrite || bcc_fields > 0 || !bcc.empty() || block.end == HeaderEnd::BodyLine;
  if (!out.changed) {
    out.headers = block.bytes;
    return out;
  }

  AddressList bcc_list(internet_address_list_new());
  for (std::size_t i : bcc) {
    internet_address_list_add(bcc_list.get(), env.mailbox(i));
    out.added_bcc.push_back(env.address(i));
  }
  out.removed = removed.take();

  FormatOptionsPtr options(g_mime_format_options_new());
  g_mime_format_options_set_newline_format(options.get(), GMIME_NEWLINE_FORMAT_DOS);

  std::string& headers = out.headers;
  headers.reserve(block.fields_size + 64 * bcc.size() + 64);
  bool bcc_written = false;
  const auto writeRecipients = [&](Recipients& r, const char* name, const HeaderField& field) -> Status {
    if (!r.rewrite) {
      appendCrlf(headers, field.raw);
      return {};
    }
    if (r.written) return {};
    r.written = true;
    if (internet_address_list_length(r.kept.get()) == 0) return {};
    return appendAddressField(headers, name, r.kept.get(), options.get());
  };
  const auto writeBcc = [&]() -> Status {
    bcc_written = true;
    if (bcc.empty()) return {};
    return appendAddressField(headers, "Bcc", bcc_list.get(), options.get());
  };

  for (const HeaderField& field : fields) {
    Status st;
    switch (kindOf(field.name)) {
      case Kind::To:
        st = writeRecipients(to, "To", field);
        break;
      case Kind::Cc:
        st = writeRecipients(cc, "Cc", field);
        break;
      case Kind::Bcc:
        if (!bcc_written) st = writeBcc();
        break;
      case Kind::From:
      case Kind::Other:
        appendCrlf(headers, field.raw);
        break;
    }
    if (!st) return st.error();
  }
  if (!bcc_written) {
    if (Status st = writeBcc(); !st) return st.error();
  }
  headers += "\r\n";
  return out;
}

Result<RecipientRewrite> rewriteRecipients(const ContentFile& content,
                                           const std::vector<std::string>& envelope_recipients) {
  auto block = readHeaderBlock(content);
  if (!block) return block.error();
  return rewriteRecipients(*block, envelope_recipients);
}

Result<std::string> rewrittenMessage(const ContentFile& content, const RecipientRewrite& rewrite) {
  if (content.size < rewrite.body_offset) {
    return Error{"the header of " + content.path.string() + " ends past the message's " +
                 std::to_string(content.size) + " bytes"};
  }
  std::string out = rewrite.headers;
  out.reserve(out.size() + (content.size - rewrite.body_offset));
  Status st = fs::streamFileRange(content.path, rewrite.body_offset, content.size - rewrite.body_offset,
                                  [&out](std::string_view piece) {
                                    out.append(piece);
                                    return Status{};
                                  });
  if (!st) return st.error();
  return out;
}

std::string headerFromAddress(std::string_view header) {
  auto block = headerBlockOf(header);
  return block ? headerFromAddress(*block) : std::string();
}

std::string headerFromAddress(const HeaderBlock& block) {
  detail::ensureGMime();
  for (const HeaderField& field : block.fields()) {
    if (kindOf(field.name) != Kind::From) continue;
    // A device sends the same From field with every message. The last field
    // parsed on this thread is kept with its address, which spares GMime's
    // parse and its objects (most of this function's cost) for the next one.
    thread_local std::string last_value;
    thread_local std::string last_address;
    thread_local bool have_last = false;
    if (!have_last || field.value != last_value) {
      last_address = fromAddress(field.value);
      last_value.assign(field.value);
      have_last = true;
    }
    return last_address;
  }
  return {};
}

}  // namespace mb::mime
