#include "config/secret.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>

#include "config/yaml_support.h"

namespace mb::config {
namespace {

namespace stdfs = std::filesystem;

template <typename T>
concept Streamable = requires(std::ostream& os, const T& t) {
  os << t;
};

// The point of the class: it cannot end up in a log line by accident.
static_assert(!Streamable<Secret>);
static_assert(!std::is_convertible_v<Secret, std::string>);
static_assert(!std::is_convertible_v<Secret, std::string_view>);
static_assert(!std::is_constructible_v<std::string, Secret>);

constexpr std::string_view kValue = "hunter2-Sup3r-s3cret";

// A temporary directory as the config directory, and a clean environment:
// the variables these tests set are restored afterwards.
class SecretTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (stdfs::temp_directory_path() / "mb_secret_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    if (const char* c = std::getenv("CREDENTIALS_DIRECTORY")) saved_credentials_ = c;
    ::unsetenv("CREDENTIALS_DIRECTORY");
    ::unsetenv("MB_TEST_SECRET");
    ::unsetenv("MB_TEST_MISSING");
  }
  void TearDown() override {
    std::error_code ec;
    stdfs::remove_all(dir_, ec);
    ::unsetenv("MB_TEST_SECRET");
    if (saved_credentials_) {
      ::setenv("CREDENTIALS_DIRECTORY", saved_credentials_->c_str(), 1);
    } else {
      ::unsetenv("CREDENTIALS_DIRECTORY");
    }
  }

  void writeFile(const stdfs::path& p, std::string_view content) {
    std::ofstream out(p, std::ios::binary);
    out << content;
  }

  // Resolves the secret "client_secret" of the mapping in `yaml`.
  std::optional<Secret> resolve(const std::string& yaml, bool required = true, bool read = true) {
    ctx_.emplace("test.yaml", dir_);
    ctx_->setReadSecrets(read);
    const YAML::Node root = YAML::Load(yaml);
    return resolveSecret(*ctx_, root, "providers[0]", "client_secret", required);
  }

  const std::vector<ConfigIssue>& issues() const { return ctx_->issues(); }

  // The single issue, checked for never containing the secret value.
  ConfigIssue onlyIssue(std::string_view must_not_contain = kValue) {
    EXPECT_EQ(issues().size(), 1u);
    if (issues().empty()) return {};
    const ConfigIssue& i = issues().front();
    EXPECT_EQ(i.format().find(must_not_contain), std::string::npos) << i.format();
    return i;
  }

  stdfs::path dir_;
  std::optional<std::string> saved_credentials_;
  std::optional<LoadContext> ctx_;
};

TEST_F(SecretTest, DefaultIsEmptyInline) {
  Secret s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.describe(), "inline");
}

TEST_F(SecretTest, Inline) {
  auto s = resolve("name: graph\nclient_secret: " + std::string(kValue) + "\n");
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(issues().empty());
  EXPECT_EQ(s->reveal(), kValue);
  EXPECT_EQ(s->source(), Secret::Source::Inline);
  EXPECT_EQ(s->describe(), "inline");
  EXPECT_EQ(s->describe().find(kValue), std::string::npos);
}

TEST_F(SecretTest, InlineThatOnlyContainsADollarBraceIsLiteral) {
  auto s = resolve("client_secret: 'a${B}c'\n");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->reveal(), "a${B}c");
  EXPECT_EQ(s->source(), Secret::Source::Inline);
}

TEST_F(SecretTest, InlineEmptyIsAnIssue) {
  EXPECT_FALSE(resolve("client_secret: ''\n").has_value());
  const ConfigIssue i = onlyIssue();
  EXPECT_EQ(i.key, "providers[0].client_secret");
  EXPECT_NE(i.message.find("empty"), std::string::npos);
}

TEST_F(SecretTest, EnvironmentVariable) {
  ::setenv("MB_TEST_SECRET", std::string(kValue).c_str(), 1);
  auto s = resolve("client_secret: ${MB_TEST_SECRET}\n");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->reveal(), kValue);
  EXPECT_EQ(s->source(), Secret::Source::Environment);
  EXPECT_EQ(s->describe(), "environment variable MB_TEST_SECRET");
}

TEST_F(SecretTest, WithoutReadingOnlyTheFormIsChecked) {
  // Nothing behind these exists; a command that needs no secrets loads anyway.
  for (const char* yaml : {"client_secret: ${MB_TEST_MISSING}\n",
                           "client_secret_file: /nonexistent/secret\n",
                           "client_secret_credential: graph-secret\n"}) {
    auto s = resolve(yaml, true, false);
    ASSERT_TRUE(s.has_value()) << yaml;
    EXPECT_TRUE(s->empty()) << yaml;
    EXPECT_TRUE(issues().empty()) << yaml;
  }
  EXPECT_EQ(resolve("client_secret_file: /x/s\n", true, false)->describe(), "file /x/s");
  // A malformed reference is still an error.
  EXPECT_FALSE(resolve("client_secret_credential: a/b\n", true, false).has_value());
  EXPECT_EQ(issues().size(), 1u);
}

TEST_F(SecretTest, MissingEnvironmentVariableNamesTheVariable) {
  EXPECT_FALSE(resolve("name: graph\nclient_secret: ${MB_TEST_MISSING}\n").has_value());
  const ConfigIssue i = onlyIssue();
  EXPECT_EQ(i.file, "test.yaml");
  EXPECT_EQ(i.line, 2);
  EXPECT_EQ(i.column, 16);
  EXPECT_EQ(i.key, "providers[0].client_secret");
  EXPECT_EQ(i.message, "environment variable MB_TEST_MISSING is not set");
}

TEST_F(SecretTest, EmptyEnvironmentVariable) {
  ::setenv("MB_TEST_SECRET", "", 1);
  EXPECT_FALSE(resolve("client_secret: ${MB_TEST_SECRET}\n").has_value());
  EXPECT_NE(onlyIssue().message.find("MB_TEST_SECRET is empty"), std::string::npos);
}

TEST_F(SecretTest, InvalidEnvironmentReferenceDoesNotEchoTheValue) {
  EXPECT_FALSE(resolve("client_secret: '${hunter2-Sup3r-s3cret}'\n").has_value());
  EXPECT_NE(onlyIssue().message.find("invalid environment variable reference"), std::string::npos);
}

TEST_F(SecretTest, FileRelativeToConfigDirectoryWithOneNewlineStripped) {
  writeFile(dir_ / "graph.secret", std::string(kValue) + "\n");
  auto s = resolve("client_secret_file: graph.secret\n");
  ASSERT_TRUE(s.has_value()) << (issues().empty() ? "" : issues().front().format());
  EXPECT_EQ(s->reveal(), kValue);
  EXPECT_EQ(s->source(), Secret::Source::File);
  EXPECT_EQ(s->describe(), "file " + (dir_ / "graph.secret").string());
}

TEST_F(SecretTest, FileStripsExactlyOneNewline) {
  writeFile(dir_ / "two", "abc\n\n");
  writeFile(dir_ / "crlf", "abc\r\n");
  writeFile(dir_ / "none", " abc ");
  EXPECT_EQ(resolve("client_secret_file: " + (dir_ / "two").string() + "\n").value().reveal(),
            "abc\n");
  EXPECT_EQ(resolve("client_secret_file: " + (dir_ / "crlf").string() + "\n").value().reveal(),
            "abc");
  EXPECT_EQ(resolve("client_secret_file: " + (dir_ / "none").string() + "\n").value().reveal(),
            " abc ");
}

TEST_F(SecretTest, UnreadableFileNamesThePathAndError) {
  EXPECT_FALSE(resolve("\nclient_secret_file: missing.secret\n").has_value());
  const ConfigIssue i = onlyIssue();
  EXPECT_EQ(i.line, 2);
  EXPECT_EQ(i.key, "providers[0].client_secret_file");
  EXPECT_NE(i.message.find((dir_ / "missing.secret").string()), std::string::npos) << i.message;
  EXPECT_NE(i.message.find("No such file"), std::string::npos) << i.message;
}

TEST_F(SecretTest, EmptyFile) {
  writeFile(dir_ / "empty", "\n");
  EXPECT_FALSE(resolve("client_secret_file: empty\n").has_value());
  EXPECT_NE(onlyIssue().message.find("is empty"), std::string::npos);
}

TEST_F(SecretTest, SystemdCredential) {
  writeFile(dir_ / "graph", std::string(kValue) + "\n");
  ::setenv("CREDENTIALS_DIRECTORY", dir_.c_str(), 1);
  auto s = resolve("client_secret_credential: graph\n");
  ASSERT_TRUE(s.has_value()) << (issues().empty() ? "" : issues().front().format());
  EXPECT_EQ(s->reveal(), kValue);
  EXPECT_EQ(s->source(), Secret::Source::Credential);
  EXPECT_EQ(s->describe(), "systemd credential graph");
}

TEST_F(SecretTest, CredentialWithoutCredentialsDirectory) {
  EXPECT_FALSE(resolve("client_secret_credential: graph\n").has_value());
  const ConfigIssue i = onlyIssue();
  EXPECT_EQ(i.key, "providers[0].client_secret_credential");
  EXPECT_NE(i.message.find("CREDENTIALS_DIRECTORY is not set"), std::string::npos);
}

TEST_F(SecretTest, MissingCredential) {
  ::setenv("CREDENTIALS_DIRECTORY", dir_.c_str(), 1);
  EXPECT_FALSE(resolve("client_secret_credential: nope\n").has_value());
  EXPECT_NE(onlyIssue().message.find("cannot read systemd credential nope"), std::string::npos);
}

TEST_F(SecretTest, CredentialNameMustNotBeAPath) {
  ::setenv("CREDENTIALS_DIRECTORY", dir_.c_str(), 1);
  for (const char* name : {"../etc/passwd", "a/b", "..", "''"}) {
    EXPECT_FALSE(resolve(std::string("client_secret_credential: ") + name + "\n").has_value())
        << name;
    EXPECT_NE(onlyIssue().message.find("credential name"), std::string::npos) << name;
  }
}

TEST_F(SecretTest, TwoFormsAreAnIssueAtTheSecondWithoutTheValue) {
  writeFile(dir_ / "s", "x");
  EXPECT_FALSE(
      resolve("client_secret: " + std::string(kValue) + "\nclient_secret_file: s\n").has_value());
  const ConfigIssue i = onlyIssue();
  EXPECT_EQ(i.line, 2);
  EXPECT_EQ(i.column, 1);
  EXPECT_EQ(i.key, "providers[0].client_secret_file");
  EXPECT_EQ(i.message,
            "set only one of client_secret, client_secret_file or client_secret_credential");
}

TEST_F(SecretTest, ThreeFormsGiveTwoIssues) {
  EXPECT_FALSE(resolve("client_secret_credential: a\nclient_secret: b\nclient_secret_file: c\n")
                   .has_value());
  ASSERT_EQ(issues().size(), 2u);
  EXPECT_EQ(issues()[0].key, "providers[0].client_secret");
  EXPECT_EQ(issues()[1].key, "providers[0].client_secret_file");
}

TEST_F(SecretTest, RequiredButAbsent) {
  EXPECT_FALSE(resolve("name: graph\n").has_value());
  const ConfigIssue i = onlyIssue();
  EXPECT_EQ(i.key, "providers[0].client_secret");
  EXPECT_EQ(i.line, 1);
  EXPECT_NE(i.message.find("required"), std::string::npos);
}

TEST_F(SecretTest, OptionalAndAbsent) {
  EXPECT_FALSE(resolve("name: graph\n", /*required=*/false).has_value());
  EXPECT_TRUE(issues().empty());
}

TEST_F(SecretTest, WrongTypeDoesNotEchoTheValue) {
  EXPECT_FALSE(resolve("client_secret: [" + std::string(kValue) + "]\n").has_value());
  EXPECT_EQ(onlyIssue().message, "expected a string, got a list");
  EXPECT_FALSE(resolve("client_secret:\n").has_value());
  EXPECT_EQ(onlyIssue().message, "expected a string, got nothing");
}

TEST_F(SecretTest, KeyNames) {
  const auto names = secretKeyNames("password");
  EXPECT_EQ(names[0], "password");
  EXPECT_EQ(names[1], "password_file");
  EXPECT_EQ(names[2], "password_credential");
}

}  // namespace
}  // namespace mb::config
