#include "config/secret.h"

#include <cstdlib>

#include "base/durable_file.h"
#include "config/yaml_support.h"

namespace mb::config {
namespace {

enum Form { kInline = 0, kFile = 1, kCredential = 2 };

bool isEnvName(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Files written by `echo` or an editor end in a newline that is never part of
// the secret; CRLF counts as one newline so a file saved on Windows works too.
void stripOneNewline(std::string& s) {
  if (!s.empty() && s.back() == '\n') {
    s.pop_back();
    if (!s.empty() && s.back() == '\r') s.pop_back();
  }
}

const char* nodeKind(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "nothing";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "a scalar";
}

}  // namespace

std::string Secret::describe() const {
  switch (source_) {
    case Source::Inline:
      return "inline";
    case Source::File:
      return "file " + origin_;
    case Source::Environment:
      return "environment variable " + origin_;
    case Source::Credential:
      return "systemd credential " + origin_;
  }
  return "unknown";
}

std::array<std::string, 3> secretKeyNames(std::string_view key) {
  const std::string k(key);
  return {k, k + "_file", k + "_credential"};
}

std::optional<Secret> resolveSecret(LoadContext& ctx, const YAML::Node& map, std::string_view path,
                                    std::string_view key, bool required) {
  if (!map.IsMap()) return std::nullopt;  // the caller reports the map's own type
  const auto names = secretKeyNames(key);
  const std::string choices = names[0] + ", " + names[1] + " or " + names[2];

  struct Given {
    int form;
    YAML::Node key;
    YAML::Node value;
  };
  std::vector<Given> given;
  for (const auto& entry : map) {
    if (!entry.first.IsScalar()) continue;
    for (int form = 0; form < 3; ++form) {
      if (entry.first.Scalar() == names[static_cast<std::size_t>(form)]) {
        given.push_back(Given{form, entry.first, entry.second});
      }
    }
  }
  if (given.empty()) {
    if (required) ctx.add(map, joinKey(path, key), "required; set " + choices);
    return std::nullopt;
  }
  if (given.size() > 1) {
    for (std::size_t i = 1; i < given.size(); ++i) {
      ctx.add(given[i].key, joinKey(path, given[i].key.Scalar()), "set only one of " + choices);
    }
    return std::nullopt;
  }

  const Given& g = given.front();
  const std::string full_key = joinKey(path, g.key.Scalar());
  const YAML::Mark at = entryMark(g.key, g.value);
  // From here on no message may quote the value: it is (or may be) the secret.
  if (!g.value.IsScalar()) {
    ctx.add(at, full_key, std::string("expected a string, got ") + nodeKind(g.value));
    return std::nullopt;
  }
  const std::string& text = g.value.Scalar();

  switch (g.form) {
    case kInline: {
      if (text.size() >= 3 && text.compare(0, 2, "${") == 0 && text.back() == '}') {
        const std::string var = text.substr(2, text.size() - 3);
        if (!isEnvName(var)) {
          ctx.add(at, full_key,
                  "invalid environment variable reference; expected ${NAME} with letters, digits "
                  "and underscores");
          return std::nullopt;
        }
        if (!ctx.readSecrets()) return Secret(Secret::Source::Environment, var, "");
        const char* v = std::getenv(var.c_str());
        if (v == nullptr) {
          ctx.add(at, full_key, "environment variable " + var + " is not set");
          return std::nullopt;
        }
        if (*v == '\0') {
          ctx.add(at, full_key, "environment variable " + var + " is empty");
          return std::nullopt;
        }
        return Secret(Secret::Source::Environment, var, v);
      }
      if (text.empty()) {
        ctx.add(at, full_key, "empty; expected the secret, ${ENV_NAME}, or use " + names[1]);
        return std::nullopt;
      }
      return Secret(Secret::Source::Inline, "", text);
    }
    case kFile: {
      if (text.empty()) {
        ctx.add(at, full_key, "expected the path of a file holding the secret");
        return std::nullopt;
      }
      const std::filesystem::path file = ctx.resolvePath(text);
      if (!ctx.readSecrets()) return Secret(Secret::Source::File, file.string(), "");
      auto content = fs::readFile(file);
      if (!content) {
        ctx.add(at, full_key, "cannot read the secret: " + content.error().message);
        return std::nullopt;
      }
      std::string value = std::move(content).value();
      stripOneNewline(value);
      if (value.empty()) {
        ctx.add(at, full_key, "file " + file.string() + " is empty");
        return std::nullopt;
      }
      return Secret(Secret::Source::File, file.string(), std::move(value));
    }
    case kCredential: {
      if (text.empty() || text == "." || text == ".." || text.find('/') != std::string::npos) {
        ctx.add(at, full_key,
                "expected a credential name as given to LoadCredential=, without '/'");
        return std::nullopt;
      }
      if (!ctx.readSecrets()) return Secret(Secret::Source::Credential, text, "");
      const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
      if (dir == nullptr || *dir == '\0') {
        ctx.add(at, full_key,
                "CREDENTIALS_DIRECTORY is not set: " + names[2] +
                    " works when systemd starts mailbridge with LoadCredential=; otherwise use " +
                    names[1]);
        return std::nullopt;
      }
      auto content = fs::readFile(std::filesystem::path(dir) / text);
      if (!content) {
        ctx.add(at, full_key,
                "cannot read systemd credential " + text + ": " + content.error().message);
        return std::nullopt;
      }
      std::string value = std::move(content).value();
      stripOneNewline(value);
      if (value.empty()) {
        ctx.add(at, full_key, "systemd credential " + text + " is empty");
        return std::nullopt;
      }
      return Secret(Secret::Source::Credential, text, std::move(value));
    }
    default:
      break;
  }
  return std::nullopt;
}

}  // namespace mb::config
