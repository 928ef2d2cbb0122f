#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "mime/header_block.h"
#include "queue/delivery_agent.h"

namespace mb::delivery {
class BearerCaller;
}

namespace mb::delivery::graph {

/// Largest MIME message Graph takes in one request (sendMail, or a draft
/// made from MIME): its base64 must fit in the 4 MB request limit.
inline constexpr std::uint64_t kMaxMimeRequestBytes = 4ull * 1024 * 1024 / 4 * 3;

/// Largest message Graph sends through a draft and upload sessions.
inline constexpr std::uint64_t kMaxGraphMessageBytes = 150ull * 1024 * 1024;

/// Bytes per PUT to an upload URL: at most 4 MB may go in one request; a
/// multiple of 320 KiB, as Microsoft's upload sessions recommend.
inline constexpr std::uint64_t kUploadChunkBytes = 12ull * 320 * 1024;

/// What sendThroughDraft needs to know about one attempt.
struct DraftSend {
  mime::ContentFile content;              // the stored message: its file and size (the envelope's);
                                          // nothing past the size is read
  std::vector<std::string> recipients;    // the envelope recipients of this attempt
  std::string sender;                     // the mailbox to send as
  std::string graph_endpoint;             // "https://graph.microsoft.com"
  bool save_to_sent = true;               // false: the draft is marked delete-after-submit
  std::filesystem::path scratch_dir;      // where decoded attachments wait for their upload
  std::chrono::milliseconds upload_retry_delay{1000};  // before repeating a failed chunk
};

struct DraftOutcome {
  queue::RecipientResult result;          // the same for every recipient
  std::string remote_id;                  // the send request's request-id
};

/// Sends a stored message through a Graph draft (Graph's path for large
/// messages; see shared/reference/microsoft.md, "Large messages"):
///   1. the message is split (mime::splitMessage) into a skeleton that fits
///      in one request and the parts taken out of it; small parts stay in
///      the skeleton, the largest come out first;
///   2. POST /users/{sender}/messages with the skeleton as base64 MIME, its
///      To/Cc/Bcc made to agree with the envelope (mime::rewriteRecipients);
///   3. each part taken out: under 3 MB POSTed as a fileAttachment, else
///      createUploadSession and PUTs of kUploadChunkBytes from a decoded
///      scratch file, without Authorization, following nextExpectedRanges;
///      name, content type, isInline and contentId as in the message;
///   4. with save_to_sent false, PATCH the draft's PidTagDeleteAfterSubmit
///      (extended property "Boolean 0x0E01") so that Exchange deletes it
///      after submission instead of keeping it in Sent Items;
///   5. POST /messages/{id}/send.
/// A failure after the draft exists deletes the draft. Memory stays bounded
/// by the request size: parts go through scratch files, never whole into
/// memory. Needs Mail.ReadWrite besides Mail.Send; a 403 on the draft says so.
/// Blocking; runs on a provider worker thread.
DraftOutcome sendThroughDraft(BearerCaller& graph, const DraftSend& send);

}  // namespace mb::delivery::graph
