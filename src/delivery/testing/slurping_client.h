#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>

#include "http/http_client.h"
#include "oauth/token_source.h"

namespace mb::delivery::testing {

/// A token source that always has a valid token, for provider unit tests.
class FixedTokens final : public oauth::TokenSource {
 public:
  oauth::TokenResult token() override {
    return oauth::AccessToken{"tok", std::chrono::system_clock::now() + std::chrono::hours(1)};
  }
  void invalidate(const std::string&) override {}
};

/// Reads the file slice of a streamed request into its body before the fake
/// behind it records it, as the HTTP client would send it: providers delete
/// their scratch files once an attempt ends.
class SlurpingClient final : public http::HttpClient {
 public:
  explicit SlurpingClient(http::HttpClient& next) : next_(next) {}
  http::Outcome perform(const http::Request& request) override {
    http::Request copy = request;
    if (!copy.body_file.empty()) {
      std::ifstream in(copy.body_file, std::ios::binary);
      in.seekg(static_cast<std::streamoff>(copy.body_offset));
      copy.body.resize(copy.body_length);
      in.read(copy.body.data(), static_cast<std::streamsize>(copy.body_length));
      if (static_cast<std::uint64_t>(in.gcount()) != copy.body_length) copy.body = "SHORT READ";
    }
    return next_.perform(copy);
  }

 private:
  http::HttpClient& next_;
};

}  // namespace mb::delivery::testing
