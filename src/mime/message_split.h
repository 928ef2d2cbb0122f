#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/result.h"
#include "mime/header_block.h"

namespace mb::mime {

/// Graph's least size for an attachment upload session (createUploadSession
/// refuses smaller files; see shared/reference/microsoft.md, "Large messages").
inline constexpr std::uint64_t kGraphUploadSessionMin = 3 * 1024 * 1024;

/// One MIME part taken out of a message to be sent on its own (for Graph: a
/// fileAttachment through an upload session).
struct AttachmentPart {
  std::string name;          // Content-Disposition filename, else Content-Type name (RFC 2231 and
                             // RFC 2047 decoded); "attachment" if neither
  std::string content_type;  // "type/subtype", lower case, without parameters
  std::string content_id;    // without <>; empty if none
  bool is_inline = false;    // has a Content-ID and is inline: "Content-Disposition: inline", or no
                             // disposition inside a multipart/related
  std::uint64_t size = 0;    // decoded size in bytes (what writeAttachment writes)
};

/// A stored message split for Graph's large-message path: the skeleton to
/// create the draft from, and the parts to upload one by one.
struct SplitPlan {
  std::string skeleton;                     // the message without the parts in `attachments`, as
                                            // MIME bytes with CRLF line ends
  std::vector<AttachmentPart> attachments;  // the parts taken out, in message order
};

/// Splits the message stored in `content` (its first `content.size` bytes;
/// nothing after them is read) into a skeleton and the parts
/// whose decoded size is at least `min_attachment`. Memory stays bounded by
/// the skeleton: GMime 3 parses a file-backed stream with the persist-stream
/// option, so part contents stay in the file, and sizes are measured by
/// decoding (base64, quoted-printable, uuencode; RFC 2045 §6) into a
/// counting stream.
///
/// Candidates are leaf parts (not multiparts) and attached messages
/// (message/rfc822, taken whole: writeAttachment writes the message they
/// hold, with CRLF line ends, named by their filename or "forwarded
/// message.eml") other than the text of the message:
/// a text/plain or text/html part without "Content-Disposition: attachment"
/// that is the top-level part, a part of a multipart/alternative that holds
/// the text, or the first part of a multipart that holds the text (for a
/// multipart/mixed, its first part; recursively). A message whose top-level
/// part is a leaf of at least `min_attachment` (decoded, and at least one
/// byte) becomes a multipart/mixed of an empty text/plain part and that
/// part, which is then taken out (named by its filename, else message.txt,
/// message.html or "attachment"); a smaller one is not split. A multipart
/// left without parts gets an empty text/plain part, as RFC 2046 §5.1.1
/// wants at least one.
///
/// The skeleton keeps every other part and every header as stored (GMime
/// writes unchanged parts from their raw bytes), line ends made CRLF.
/// Fails when the file cannot be read, is shorter than `content.size`, or is
/// not a MIME message. Blocking file I/O; safe to call from several threads
/// at once.
Result<SplitPlan> splitMessage(const ContentFile& content, std::uint64_t min_attachment);

/// Writes the decoded bytes of attachment `index` of the plan that
/// splitMessage(content, min_attachment) makes to `out` (created or
/// truncated), streamed through GMime's decoding filters in small buffers.
/// Fails when `index` is out of range or a file cannot be read or written;
/// `out` may then hold part of the bytes. `out` is a scratch file for the
/// upload, not a durable copy. Safe from any thread.
Status writeAttachment(const ContentFile& content, std::size_t index, std::uint64_t min_attachment,
                       const std::filesystem::path& out);

}  // namespace mb::mime
