#include "oauth/token_request.h"

#include "oauth/encoding.h"
#include "oauth/token_response.h"

namespace mb::oauth {

TokenReply postTokenRequest(http::HttpClient& http, TokenRequest request,
                            const CredentialScrubber& scrubber, const RefusalClassifier& classify) {
  http::Request post;
  post.method = "POST";
  post.url = request.url;
  post.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                  {"Accept", "application/json"}};
  post.body = formEncode(request.fields);
  post.timeout = request.timeout;
  for (auto& field : request.fields) wipe(field.second);

  http::Outcome outcome = http.perform(post);
  wipe(post.body);

  TokenReply reply;
  if (auto* error = std::get_if<http::TransportError>(&outcome)) {
    scrubber.apply(error->message);
    reply.failure = classifyTransportError(*error, request.url);
  } else if (auto& response = std::get<http::Response>(outcome);
             response.status >= 200 && response.status <= 299) {
    reply.response = std::move(response);
    return reply;
  } else {
    scrubber.apply(response.body);
    reply.error = parseTokenErrorBody(response.body);
    reply.failure = classify(response, reply.error);
  }
  scrubber.apply(reply.failure.explanation);
  return reply;
}

TokenResult requestAccessToken(http::HttpClient& http, TokenRequest request,
                               const CredentialScrubber& scrubber,
                               const RefusalClassifier& classify,
                               std::chrono::system_clock::time_point requested_at) {
  TokenReply reply = postTokenRequest(http, std::move(request), scrubber, classify);
  if (!reply.response) return std::move(reply.failure);
  TokenResult result = parseTokenResponse(reply.response->body, requested_at);
  wipe(reply.response->body);  // it holds the token
  return result;
}

}  // namespace mb::oauth
