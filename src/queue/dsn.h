#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/result.h"
#include "queue/envelope.h"

namespace mb::queue {

/// What buildDsn() needs to report the permanent failure of some recipients
/// of one queued message. Plain value type; `envelope` is borrowed and must
/// outlive the call.
struct DsnInput {
  const Envelope* envelope = nullptr;       // the failed message
  std::vector<std::size_t> failed;          // indexes into envelope->recipients that failed permanently
  std::string reporting_host;               // our hostname (Reporting-MTA, Message-ID)
  std::int64_t now = 0;                     // unix seconds (Date:, Last-Attempt-Date:)
  std::filesystem::path original_content;   // the spooled content, for its header section
  std::uint64_t original_size = 0;          // its message bytes (the envelope's size); the file may hold
                                            // more after them, never read. 0: an empty message
  std::string from_address;                 // e.g. "MAILER-DAEMON@relay.example.com"
  std::string to_address;                   // the envelope sender, or an admin address
};

/// Builds a delivery status notification (a bounce) as a complete RFC 5322
/// message with CRLF line ends, ready to be queued with the null sender:
/// a multipart/report (RFC 6522) of report-type delivery-status with
///   1. text/plain (UTF-8): an explanation for people, naming each failed
///      recipient with its SMTP code, enhanced status and error text;
///   2. message/delivery-status (RFC 3464): Reporting-MTA, Arrival-Date and,
///      per failed recipient, Final-Recipient (type utf-8 in its ASCII
///      "\x{HEX}" form per RFC 6533 §3 when the address is not ASCII),
///      Action: failed, Status, Diagnostic-Code and Last-Attempt-Date;
///   3. the original's header section (text/rfc822-headers, or
///      message/global-headers per RFC 6533 when it holds non-ASCII octets),
///      at most 64 KiB, cut at a line boundary with a note. The body of the
///      original is never returned. When the content cannot be read, this
///      part is left out and the explanation says so.
///
/// Text that came from outside (error texts, addresses, the original's
/// headers) is sanitised: no bare CR or LF and no control characters reach
/// the output, and no line is longer than 998 octets (RFC 5322 §2.1.1).
/// The header carries Auto-Submitted: auto-replied (RFC 3834).
///
/// Reads only `in.original_content` (its first 64 KiB or so, and never past
/// `in.original_size`; a file shorter than that counts as unreadable); otherwise a
/// pure function, safe from any thread. Fails only on unusable input: no
/// envelope, no failed recipient, an index out of range, no To address.
Result<std::string> buildDsn(const DsnInput& in);

/// False for a message with the null sender (RFC 5321 §4.5.5, RFC 3464 §2):
/// a bounce never bounces. True otherwise.
bool shouldBounce(const Envelope& env);

}  // namespace mb::queue
