#include "mime/message_split.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <string_view>
#include <utility>

#include "base/text.h"
#include "mime/gmime_support.h"

namespace mb::mime {
namespace {

using detail::FormatOptionsPtr;
using detail::GCharPtr;
using detail::GObjectPtr;

constexpr const char* kDefaultName = "attachment";

// The parsed message and the file stream its parts still read from: with
// persist-stream each part's content is a window on the file, not a copy.
struct Parsed {
  GObjectPtr<GMimeStream> stream;
  GObjectPtr<GMimeMessage> message;
};

Result<Parsed> parse(const ContentFile& content) {
  detail::ensureGMime();
  const std::filesystem::path& path = content.path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error::fromErrno("open " + path.string(), errno);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int err = errno;
    ::close(fd);
    return Error::fromErrno("stat " + path.string(), err);
  }
  if (static_cast<std::uint64_t>(info.st_size) < content.size) {
    ::close(fd);
    return Error{path.string() + " holds " + std::to_string(info.st_size) + " bytes, less than the message's " +
                     std::to_string(content.size),
                 0};
  }
  Parsed parsed;
  // Bounded at the message's size: GMime never reads what follows it in the
  // file, and the parts' windows (persist-stream substreams) stay inside it.
  parsed.stream.reset(g_mime_stream_fs_new_with_bounds(fd, 0, static_cast<gint64>(content.size)));  // owns fd
  GObjectPtr<GMimeParser> parser(g_mime_parser_new_with_stream(parsed.stream.get()));
  g_mime_parser_set_persist_stream(parser.get(), TRUE);
  parsed.message.reset(g_mime_parser_construct_message(parser.get(), nullptr));
  if (!parsed.message || g_mime_message_get_mime_part(parsed.message.get()) == nullptr) {
    return Error{"not a MIME message: " + path.string(), 0};
  }
  return parsed;
}

// A leaf part that may go out of the skeleton, borrowed from its message:
// a GMimePart, or a GMimeMessagePart (an attached message, message/rfc822).
struct Candidate {
  GMimeMultipart* parent;
  GMimeObject* part;
  bool in_related;
};

bool isType(GMimeObject* obj, const char* type, const char* subtype) {
  GMimeContentType* ct = g_mime_object_get_content_type(obj);
  return ct != nullptr && g_mime_content_type_is_type(ct, type, subtype);
}

// The text a reader sees first; it is what the draft is created around, so
// it stays whatever its size.
bool isMessageText(GMimeObject* obj) {
  if (!isType(obj, "text", "plain") && !isType(obj, "text", "html")) return false;
  const char* disposition = g_mime_object_get_disposition(obj);
  return disposition == nullptr || !iequals(disposition, "attachment");
}

// `text_position`: the part stands where the message's text is read from
// (the top, a part of an alternative there, or the first part of a
// multipart there). Message parts (message/rfc822) are not descended into:
// an attached message goes out whole, as an .eml file, or stays whole.
void collect(GMimeObject* obj, GMimeMultipart* parent, bool text_position, std::vector<Candidate>& out) {
  if (GMIME_IS_MULTIPART(obj)) {
    auto* multipart = GMIME_MULTIPART(obj);
    const bool alternative = isType(obj, "multipart", "alternative");
    const int count = g_mime_multipart_get_count(multipart);
    for (int i = 0; i < count; ++i) {
      collect(g_mime_multipart_get_part(multipart, i), multipart, text_position && (alternative || i == 0), out);
    }
    return;
  }
  if ((!GMIME_IS_PART(obj) && !GMIME_IS_MESSAGE_PART(obj)) || parent == nullptr) return;
  if (text_position && isMessageText(obj)) return;
  out.push_back(Candidate{parent, obj, isType(GMIME_OBJECT(parent), "multipart", "related")});
}

std::vector<Candidate> candidatesOf(GMimeMessage* message) {
  std::vector<Candidate> out;
  collect(g_mime_message_get_mime_part(message), nullptr, true, out);
  return out;
}

// Decodes the part's content (RFC 2045 §6) into `sink`; an attached
// message is written as the message it holds.
Status decodeTo(GMimeObject* obj, GMimeStream* sink) {
  if (GMIME_IS_MESSAGE_PART(obj)) {
    GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
    if (inner == nullptr) return {};
    FormatOptionsPtr options(g_mime_format_options_new());
    g_mime_format_options_set_newline_format(options.get(), GMIME_NEWLINE_FORMAT_DOS);
    errno = 0;
    if (g_mime_object_write_to_stream(GMIME_OBJECT(inner), options.get(), sink) < 0) {
      return Error::fromErrno("cannot write an attached message", errno);
    }
    return {};
  }
  GMimeDataWrapper* wrapper = g_mime_part_get_content(GMIME_PART(obj));
  if (wrapper == nullptr) return {};
  errno = 0;
  if (g_mime_data_wrapper_write_to_stream(wrapper, sink) < 0) {
    return Error::fromErrno("cannot decode a MIME part", errno);
  }
  return {};
}

// The decoded size when it may reach `min`, else nothing. Decoding never
// makes content larger, so a part stored in fewer bytes is not decoded.
Result<std::optional<std::uint64_t>> sizeIfLarge(GMimeObject* part, std::uint64_t min) {
  if (GMIME_IS_PART(part)) {
    GMimeDataWrapper* wrapper = g_mime_part_get_content(GMIME_PART(part));
    if (wrapper == nullptr) return std::optional<std::uint64_t>();
    GMimeStream* stored = g_mime_data_wrapper_get_stream(wrapper);
    const gint64 stored_size = stored != nullptr ? g_mime_stream_length(stored) : -1;
    if (stored_size >= 0 && static_cast<std::uint64_t>(stored_size) < min) return std::optional<std::uint64_t>();
  }
  GObjectPtr<GMimeStream> counter(g_mime_stream_null_new());
  if (Status st = decodeTo(part, counter.get()); !st) return st.error();
  const std::uint64_t size = GMIME_STREAM_NULL(counter.get())->written;
  if (size < min) return std::optional<std::uint64_t>();
  return std::optional<std::uint64_t>(size);
}

AttachmentPart describe(const Candidate& c, std::uint64_t size) {
  GMimeObject* obj = c.part;
  AttachmentPart a;
  if (GMimeContentType* ct = g_mime_object_get_content_type(obj)) {
    const GCharPtr type(g_mime_content_type_get_mime_type(ct));
    if (type) a.content_type = asciiLower(type.get());
  }
  // GMime decodes RFC 2231 parameters and RFC 2047 words in them.
  const char* filename = GMIME_IS_PART(obj) ? g_mime_part_get_filename(GMIME_PART(obj))
                                             : g_mime_object_get_content_disposition_parameter(obj, "filename");
  if (filename != nullptr && *filename != '\0') {
    a.name = filename;
  } else if (GMIME_IS_MESSAGE_PART(obj)) {
    a.name = "forwarded message.eml";
  } else if (a.content_type == "text/plain") {
    a.name = "message.txt";  // the text of a single-part message (wrapSinglePart)
  } else if (a.content_type == "text/html") {
    a.name = "message.html";
  } else {
    a.name = kDefaultName;
  }
  if (const char* cid = g_mime_object_get_content_id(obj)) a.content_id = cid;
  const char* disposition = g_mime_object_get_disposition(obj);
  a.is_inline = !a.content_id.empty() && (disposition != nullptr ? iequals(disposition, "inline") : c.in_related);
  a.size = size;
  return a;
}

// A message that is one large part (a script's 5 MB log as text/plain, a
// device's bare application/pdf) has nothing to take out; it becomes a
// multipart/mixed of an empty text and that part, which can then go as an
// attachment. Smaller single parts stay as they are.
Status wrapSinglePart(GMimeMessage* message, std::uint64_t min) {
  GMimeObject* top = g_mime_message_get_mime_part(message);
  if (!GMIME_IS_PART(top)) return {};
  auto size = sizeIfLarge(top, std::max<std::uint64_t>(min, 1));
  if (!size) return size.error();
  if (!*size) return {};
  GObjectPtr<GMimeObject> kept(GMIME_OBJECT(g_object_ref(top)));
  GObjectPtr<GMimeMultipart> mixed(g_mime_multipart_new_with_subtype("mixed"));
  GObjectPtr<GMimeTextPart> empty(g_mime_text_part_new_with_subtype("plain"));
  g_mime_text_part_set_text(empty.get(), "");
  g_mime_multipart_add(mixed.get(), GMIME_OBJECT(empty.get()));
  g_mime_multipart_add(mixed.get(), kept.get());
  g_mime_message_set_mime_part(message, GMIME_OBJECT(mixed.get()));
  return {};
}

// The candidates at least `min` large, with their descriptions, in order.
struct Taken {
  std::vector<Candidate> parts;
  std::vector<AttachmentPart> attachments;
};

Result<Taken> largeParts(GMimeMessage* message, std::uint64_t min, std::optional<std::size_t> stop_after) {
  Taken taken;
  for (const Candidate& c : candidatesOf(message)) {
    auto size = sizeIfLarge(c.part, min);
    if (!size) return size.error();
    if (!*size) continue;
    taken.parts.push_back(c);
    taken.attachments.push_back(describe(c, **size));
    if (stop_after && taken.parts.size() > *stop_after) break;
  }
  return taken;
}

Result<std::string> writeSkeleton(GMimeMessage* message, const std::vector<Candidate>& taken) {
  for (const Candidate& c : taken) g_mime_multipart_remove(c.parent, c.part);
  for (const Candidate& c : taken) {
    if (g_mime_multipart_get_count(c.parent) > 0) continue;
    GObjectPtr<GMimeTextPart> empty(g_mime_text_part_new_with_subtype("plain"));
    g_mime_text_part_set_text(empty.get(), "");
    g_mime_multipart_add(c.parent, GMIME_OBJECT(empty.get()));
  }
  FormatOptionsPtr options(g_mime_format_options_new());
  g_mime_format_options_set_newline_format(options.get(), GMIME_NEWLINE_FORMAT_DOS);
  GObjectPtr<GMimeStream> mem(g_mime_stream_mem_new());
  errno = 0;
  if (g_mime_object_write_to_stream(GMIME_OBJECT(message), options.get(), mem.get()) < 0) {
    return Error::fromErrno("cannot write the message skeleton", errno);
  }
  GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem.get()));
  return std::string(reinterpret_cast<const char*>(bytes->data), bytes->len);
}

}  // namespace

Result<SplitPlan> splitMessage(const ContentFile& content, std::uint64_t min_attachment) {
  auto parsed = parse(content);
  if (!parsed) return parsed.error();
  if (Status st = wrapSinglePart(parsed->message.get(), min_attachment); !st) return st.error();
  auto taken = largeParts(parsed->message.get(), min_attachment, std::nullopt);
  if (!taken) return taken.error();
  auto skeleton = writeSkeleton(parsed->message.get(), taken->parts);
  if (!skeleton) return skeleton.error();
  SplitPlan plan;
  plan.skeleton = std::move(skeleton).value();
  plan.attachments = std::move(taken->attachments);
  return plan;
}

Status writeAttachment(const ContentFile& content, std::size_t index, std::uint64_t min_attachment,
                       const std::filesystem::path& out) {
  auto parsed = parse(content);
  if (!parsed) return parsed.error();
  if (Status st = wrapSinglePart(parsed->message.get(), min_attachment); !st) return st;
  // Parts after `index` are not measured: the walk stops at the one wanted.
  auto taken = largeParts(parsed->message.get(), min_attachment, index);
  if (!taken) return taken.error();
  if (index >= taken->parts.size()) {
    return Error{"no attachment " + std::to_string(index) + " in " + content.path.string(), 0};
  }
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Error::fromErrno("open " + out.string(), errno);
  GObjectPtr<GMimeStream> sink(g_mime_stream_fs_new(fd));  // owns fd from here on
  if (Status st = decodeTo(taken->parts[index].part, sink.get()); !st) {
    return Error{st.error().message + " into " + out.string(), st.error().sys_errno};
  }
  errno = 0;
  if (g_mime_stream_close(sink.get()) < 0) return Error::fromErrno("close " + out.string(), errno);
  return {};
}

}  // namespace mb::mime
