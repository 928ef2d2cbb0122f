#include "config/yaml_support.h"

#include <algorithm>

namespace mb::config {

LoadContext::LoadContext(std::string file, std::filesystem::path base_dir)
    : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

void LoadContext::add(const YAML::Mark& at, std::string key, std::string message) {
  ConfigIssue issue;
  issue.file = file_;
  if (!at.is_null() && at.line >= 0) {
    issue.line = at.line + 1;
    issue.column = at.column + 1;
  }
  issue.key = std::move(key);
  issue.message = std::move(message);
  issues_.push_back(std::move(issue));
}

void LoadContext::addFileIssue(std::string key, std::string message) {
  add(YAML::Mark::null_mark(), std::move(key), std::move(message));
}

void LoadContext::addIssues(std::vector<ConfigIssue> issues) {
  for (auto& i : issues) issues_.push_back(std::move(i));
}

std::filesystem::path LoadContext::resolvePath(const std::filesystem::path& p) const {
  std::filesystem::path out = (p.is_absolute() ? p : base_dir_ / p).lexically_normal();
  // "data/" normalises to "data/"; drop the empty last element so that
  // paths compare and join the same way whichever spelling was used.
  if (!out.has_filename() && out.has_relative_path()) out = out.parent_path();
  return out;
}

std::vector<ConfigIssue> LoadContext::takeIssues() {
  // The loader walks the schema, not the file, so sort to read top to bottom.
  std::stable_sort(issues_.begin(), issues_.end(),
                   [this](const ConfigIssue& a, const ConfigIssue& b) {
                     const bool a_other = a.file != file_;
                     const bool b_other = b.file != file_;
                     if (a_other != b_other) return b_other;
                     if (a.file != b.file) return a.file < b.file;
                     return a.line != b.line ? a.line < b.line : a.column < b.column;
                   });
  std::vector<ConfigIssue> out;
  out.swap(issues_);
  return out;
}

std::string joinKey(std::string_view path, std::string_view key) {
  std::string out(path);
  if (!out.empty()) out += '.';
  out += key;
  return out;
}

YAML::Mark entryMark(const YAML::Node& key, const YAML::Node& value) {
  if (!value.IsDefined() || value.IsNull() || value.Mark().is_null()) return key.Mark();
  return value.Mark();
}

}  // namespace mb::config
