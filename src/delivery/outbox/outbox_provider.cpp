#include "delivery/outbox/outbox_provider.h"

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>
#include <vector>

#include "base/durable_file.h"
#include "base/log.h"
#include "base/text.h"

namespace mb::delivery {
namespace {

// Some errors (makeDirectories' "not a directory") carry an errno without
// its text; the operator reading the log wants both the path and the reason.
std::string describe(const Error& error) {
  std::string out = error.message;
  if (error.sys_errno != 0) {
    const char* text = std::strerror(error.sys_errno);
    if (out.find(text) == std::string::npos) {
      out += ": ";
      out += text;
    }
  }
  return out;
}

/// Streams the first `size` bytes of `from` (the message; the spool may keep
/// more after them) into a new file `to` (which must not exist) and fsyncs
/// it. A `from` shorter than `size` is an error.
Status copyFile(const std::filesystem::path& from, std::uint64_t size, const std::filesystem::path& to) {
  auto writer = fs::FileWriter::create(to);
  if (!writer) return writer.error();
  Status st = fs::streamFileRange(from, 0, size, [&writer](std::string_view piece) { return writer->write(piece); });
  if (st) st = writer->sync();
  if (st) st = writer->close();
  return st;
}

/// Writes `data` to `tmp` (replacing one a crash left), fsyncs it and
/// renames it to `path`; the directory fsync is the caller's.
Status writeReplacing(const std::filesystem::path& tmp, const std::filesystem::path& path, std::string_view data) {
  if (Status st = fs::removeFile(tmp); !st) return st;
  auto writer = fs::FileWriter::create(tmp);
  if (!writer) return writer.error();
  Status st = writer->write(data);
  if (st) st = writer->sync();
  if (st) st = writer->close();
  if (st) st = fs::renameFile(tmp, path);
  if (!st) (void)fs::removeFile(tmp);
  return st;
}

bool refused(const std::vector<std::string>& patterns, std::string_view address) {
  for (const auto& p : patterns) {
    if (p.front() == '@' ? address.size() > p.size() && iequals(address.substr(address.size() - p.size()), p)
                         : iequals(address, p)) {
      return true;
    }
  }
  return false;
}

}  // namespace

OutboxProvider::OutboxProvider(std::string name, std::filesystem::path directory, std::vector<std::string> refuse)
    : name_(std::move(name)), directory_(std::move(directory)), refuse_(std::move(refuse)) {
  std::erase_if(refuse_, [](const std::string& p) { return p.empty(); });
}

void OutboxProvider::deliver(const queue::DeliveryJob& job, queue::DeliveryAgent::DoneCallback done) {
  queue::DeliveryResult result;
  result.provider = name_;
  const auto fail = [&](const std::string& detail) {
    spdlog::warn("{} outbox {}: {}", job.envelope.id, name_, detail);
    queue::RecipientResult r;
    r.outcome = queue::Outcome::TemporaryFailure;
    r.smtp_code = 451;
    r.enhanced = "4.3.0";
    r.detail = detail;
    result.results.assign(job.recipients.size(), r);
    done(std::move(result));
  };

  // The id becomes a file name here; the queue only makes valid ones, but a
  // path separator must never get this far.
  if (!queue::isValidQueueId(job.envelope.id)) return fail("invalid queue id");
  if (Status st = fs::makeDirectories(directory_); !st) return fail(describe(st.error()));

  // Recipients matched by refuse_recipients are answered, the rest written.
  std::vector<std::size_t> write;
  std::vector<std::size_t> refuse;
  for (std::size_t i = 0; i < job.recipients.size(); ++i) {
    const std::size_t index = job.recipients[i];
    const bool no = index < job.envelope.recipients.size() &&
                    refused(refuse_, job.envelope.recipients[index].address);
    (no ? refuse : write).push_back(i);
  }
  queue::RecipientResult no;
  no.outcome = queue::Outcome::PermanentFailure;
  no.smtp_code = 550;
  no.enhanced = "5.1.1";
  no.detail = "refused by the outbox's refuse_recipients rule";
  no.summary = "recipient refused by the outbox's refuse_recipients rule";
  if (write.empty()) {
    result.results.assign(job.recipients.size(), no);
    done(std::move(result));
    return;
  }

  nlohmann::json recipients = nlohmann::json::array();
  for (std::size_t i : write) {
    const std::size_t index = job.recipients[i];
    if (index < job.envelope.recipients.size()) recipients.push_back(job.envelope.recipients[index].address);
  }
  const nlohmann::json meta{{"id", job.envelope.id},
                            {"sender", job.envelope.sender},
                            {"recipients", std::move(recipients)},
                            {"arrival", job.envelope.arrival},
                            {"client_address", job.envelope.client_address},
                            {"helo", job.envelope.helo}};
  // HELO and addresses come from clients and may not be UTF-8; replace
  // rather than throw.
  const std::string json_text = meta.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const auto json_path = directory_ / (job.envelope.id + ".json");
  const auto eml_path = directory_ / (job.envelope.id + ".eml");
  // A fixed temporary name: one left by a crash is replaced on the next
  // delivery of the same message instead of piling up. The queue never runs
  // two attempts of one message at once.
  const auto eml_tmp = directory_ / (job.envelope.id + ".eml.tmp");

  const auto json_tmp = directory_ / (job.envelope.id + ".json.tmp");

  // The .json goes first so that a watcher that sees the .eml finds it. Its
  // temporary name is fixed too, for the same reason as the .eml's.
  if (Status st = writeReplacing(json_tmp, json_path, json_text); !st) return fail(describe(st.error()));
  if (Status st = fs::removeFile(eml_tmp); !st) return fail(describe(st.error()));
  Status st = copyFile(job.content, job.envelope.size, eml_tmp);
  if (st) st = fs::renameFile(eml_tmp, eml_path);
  if (!st) {
    (void)fs::removeFile(eml_tmp);
    return fail(describe(st.error()));
  }
  // One directory fsync makes both renames durable.
  if (st = fs::syncDirectory(directory_); !st) return fail(describe(st.error()));

  queue::RecipientResult ok;
  ok.outcome = queue::Outcome::Delivered;
  ok.smtp_code = 250;
  ok.enhanced = "2.0.0";
  ok.detail = "written to " + eml_path.string();
  result.results.assign(job.recipients.size(), ok);
  for (std::size_t i : refuse) result.results[i] = no;
  // The id may reach the SMTP client (smtp.wait_for_delivery); the file
  // name says which message it was without showing the server's layout.
  result.remote_id = eml_path.filename().string();
  done(std::move(result));
}

}  // namespace mb::delivery
