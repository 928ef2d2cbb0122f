#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace mb::queue {

enum class RecipientState { Pending, Delivered, Failed };

struct RecipientEntry {
  std::string address;
  RecipientState state = RecipientState::Pending;
  int smtp_code = 0;             // last code seen for it (250, 451, 550 ...)
  std::string enhanced;          // "5.1.1"
  std::string last_error;        // for the log and, later, the DSN

  bool operator==(const RecipientEntry&) const = default;
};

/// Envelope: everything about a queued message except its content. Stored
/// after the content in `<id>.mail` and, once it changes, as `<id>.env`, in a
/// versioned, self-validating format (see serialize()). Plain value type.
struct Envelope {
  static constexpr int kVersion = 1;

  std::string id;                // queue id, also the file stem
  std::string sender;            // MAIL FROM; empty = null sender
  std::vector<RecipientEntry> recipients;
  std::string client_address;
  std::string helo;
  std::string auth_user;         // empty when not authenticated
  std::string listener;
  std::int64_t arrival = 0;      // unix seconds
  std::uint64_t size = 0;        // content bytes, Received: header included
  int attempts = 0;
  std::int64_t next_attempt = 0; // unix seconds; 0 = now
  std::string last_error;
  std::string route;             // provider name, once routed
  bool held = false;             // `mailbridge queue hold`: not attempted until released
  std::string mailbox;           // the mailbox to send from when not the sender
                                 // (senders.use_from_header); empty = the sender's

  /// The mailbox a provider sends from and pacing counts: `mailbox`, else
  /// the sender (empty for the null sender).
  const std::string& sendingMailbox() const { return mailbox.empty() ? sender : mailbox; }

  bool allRecipientsDone() const;
  std::vector<std::size_t> pendingRecipients() const;
};

/// The stored form: one JSON object with a version field, then a final line
/// "end <blake2b-128 hex of everything before it>\n". A file that is torn,
/// edited or of another version fails parse() with a reason.
std::string serialize(const Envelope& env);
Result<Envelope> parse(std::string_view text);

/// Queue ids: time-ordered, unique within a host, safe as file names
/// ([0-9A-Za-z] only), 20 characters.
std::string newQueueId();
bool isValidQueueId(std::string_view id);

}  // namespace mb::queue
