#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/result.h"
#include "mime/header_block.h"

namespace mb::mime {

/// What a provider that takes its recipients from the header (Graph, Gmail)
/// must send in place of a stored message's header section: the same
/// header, with To/Cc/Bcc made to agree with the SMTP envelope. The provider
/// sends `headers`, then the stored message from `body_offset` up to its
/// size (never the rest of the file).
struct RecipientRewrite {
  std::string headers;                 // the header block to send; see `changed`
  std::uint64_t body_offset = 0;       // where the original body starts in the content file
  bool changed = false;                // false: `headers` is the original block, byte for byte
                                       // (its own line ends; no blank line when the message has
                                       // no body). true: a new block, CRLF line ends, ending
                                       // with the blank line.
  std::vector<std::string> removed;    // header addresses dropped (not in the envelope), for the log
  std::vector<std::string> added_bcc;  // envelope recipients only reachable through the new Bcc
  std::string from_address;            // the first From: mailbox address; "" if none or unparsable
};

/// Makes the header of a stored message name exactly its envelope
/// recipients, for providers without an SMTP envelope (Graph sendMail takes
/// the recipients from To, Cc and Bcc; see shared/reference/microsoft.md,
/// "Sending"). The envelope is authoritative, the header only decides how a
/// recipient is shown:
///   - a To or Cc address in the envelope stays, with its display name; one
///     that is not is removed. A To/Cc field left with no address goes,
///     unless what is left is a group that had no members to begin with
///     ("undisclosed-recipients:;", RFC 5322 §3.4).
///   - every Bcc field goes; one new Bcc lists the envelope recipients that
///     are in neither To nor Cc (none: no Bcc).
///   - repeated To (or Cc) fields become one, where the first stood; a field
///     whose text holds addresses GMime's parser could not place (say
///     "a@x; b@y") is rewritten from what was parsed, so that nothing the
///     provider might read as a recipient survives unchecked.
///   - every other field keeps its place and its bytes; only the line ends
///     of a bare-LF header become CRLF. Resent-To/-Cc/-Bcc (§3.6.6) are
///     such other fields and stay as they are.
///   - a header section that ran into body text without the blank line
///     (HeaderEnd::BodyLine) counts as a change: the new block brings the
///     blank line, so no provider reads that text as header fields.
/// Nothing to change keeps the original block byte for byte.
/// Addresses compare case-insensitively (ASCII) as a whole, an IDN domain
/// matching its A-label form. Header addresses are parsed by GMime 3
/// (RFC 5322 §3.4 with the obsolete forms of §4.4, RFC 2047 encoded words,
/// 8-bit text as UTF-8 or the parser's fallback charsets); new fields are
/// RFC 2047-encoded and folded by GMime, lines well under 998 octets (§2.1.1).
///
/// Reads only the header section (see readHeaderBlock). Fails when the file
/// cannot be read or is shorter than `content.size`, the section is over
/// kMaxHeaderBlock, or an envelope
/// recipient cannot be written as a single mailbox. Safe to call from
/// several threads at once; each call uses its own GMime objects.
Result<RecipientRewrite> rewriteRecipients(const ContentFile& content,
                                           const std::vector<std::string>& envelope_recipients);

/// Same, for a header section already read.
Result<RecipientRewrite> rewriteRecipients(const HeaderBlock& block,
                                           const std::vector<std::string>& envelope_recipients);

/// The message as a provider sends it: `rewrite.headers`, then the stored
/// body of `content`, bytes [rewrite.body_offset, content.size). For
/// messages small enough to send in one request (the caller checks the
/// size). Fails when the file is shorter than `content.size`.
Result<std::string> rewrittenMessage(const ContentFile& content, const RecipientRewrite& rewrite);

/// The address of the first mailbox in the first From field of `header`
/// (the start of a message: its header section, or as much of it as has
/// arrived), parsed as rewriteRecipients parses it: display names holding
/// '@' or commas, folded lines, RFC 2047 words and groups are fine. "" when
/// there is no From field, it names no mailbox, or the address has no
/// domain. Safe from any thread.
std::string headerFromAddress(std::string_view header);
/// The same for a header section already split into fields.
std::string headerFromAddress(const HeaderBlock& block);

}  // namespace mb::mime
