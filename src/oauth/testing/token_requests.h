#pragma once

#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <string_view>

#include "http/http_client.h"

namespace mb::oauth::testing {

/// What the oauth tests read from the requests a fetcher sent through
/// http/testing/fake_http_client.h: form bodies and headers, decoded
/// independently of the code under test (encoding.h). For unit tests only.

/// Percent-decoding as form decoders do it ('+' is a space too).
inline std::string percentDecode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

/// name → value of an application/x-www-form-urlencoded body; a pair
/// without '=' or a name given twice fails the test.
inline std::map<std::string, std::string> formFields(const std::string& body) {
  std::map<std::string, std::string> out;
  std::istringstream in(body);
  std::string pair;
  while (std::getline(in, pair, '&')) {
    const std::size_t eq = pair.find('=');
    EXPECT_NE(eq, std::string::npos) << pair;
    const bool fresh =
        out.emplace(percentDecode(pair.substr(0, eq)), percentDecode(pair.substr(eq + 1))).second;
    EXPECT_TRUE(fresh) << "repeated field " << pair << " in " << body;
  }
  return out;
}

/// The first header called `name` (exactly), or "".
inline std::string header(const http::Request& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return {};
}

/// Checks that `r` is a token request as oauth/token_request.h sends one:
/// a form POSTed to `url`, asking for JSON.
inline void expectFormPost(const http::Request& r, std::string_view url) {
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.url, url);
  EXPECT_EQ(header(r, "Content-Type"), "application/x-www-form-urlencoded");
  EXPECT_EQ(header(r, "Accept"), "application/json");
}

}  // namespace mb::oauth::testing
