#include "oauth/google_service_account.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <utility>

#include "base/durable_file.h"
#include "base/text.h"
#include "base/time_format.h"
#include "oauth/credential_scrub.h"
#include "oauth/encoding.h"
#include "oauth/openssl_support.h"
#include "oauth/token_error.h"
#include "oauth/token_request.h"

namespace mb::oauth {
namespace {

using json = nlohmann::json;

constexpr std::string_view kJwtBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer";
// Google refuses assertions that live longer than an hour.
constexpr std::chrono::seconds kAssertionLifetime{3600};
// Google's keys are 2048-bit RSA; shorter ones are refused by RS256 (RFC 7518 §3.3).
constexpr int kMinRsaBits = 2048;
// A key file is about 2.3 KB; anything far larger is not one, and is not
// worth parsing.
constexpr std::size_t kMaxKeyFileSize = 64 * 1024;
constexpr std::size_t kMaxDescription = 300;
constexpr std::size_t kMaxSnippet = 120;

// Holds a copy of key material and overwrites it however the scope is left.
struct WipedString {
  std::string value;
  WipedString() = default;
  WipedString(const WipedString&) = delete;
  WipedString& operator=(const WipedString&) = delete;
  ~WipedString() { wipe(value); }
};

std::string keyFileName(std::string_view origin) {
  return "Google service account key " + printable(origin, 512);
}

Error fieldError(std::string_view origin, std::string_view field, std::string_view what) {
  return Error{keyFileName(origin) + ": field \"" + std::string(field) + "\" " +
               std::string(what)};
}

// A required, non-empty string member of the key file.
Result<std::string> requiredString(const json& doc, const char* field, std::string_view origin) {
  const auto it = doc.find(field);
  if (it == doc.end()) {
    return fieldError(origin, field, "is missing (is this the JSON key file of a service account?)");
  }
  if (!it->is_string()) return fieldError(origin, field, "is not a string");
  if (it->get_ref<const std::string&>().empty()) return fieldError(origin, field, "is empty");
  return it->get<std::string>();
}

bool isPrintableText(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

std::string firstLine(std::string_view text) {
  return std::string(text.substr(0, text.find_first_of("\r\n")));
}

std::string quoteDescription(const TokenErrorBody& body) {
  std::string out;
  if (!body.error.empty()) out = body.error;
  const std::string description = firstLine(body.error_description);
  if (!description.empty()) {
    if (!out.empty()) out += ": ";
    out += "\"" + printable(description, kMaxDescription) + "\"";
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// GoogleServiceAccount

GoogleServiceAccount::~GoogleServiceAccount() {
  EVP_PKEY_free(key_);
}

Result<std::shared_ptr<const GoogleServiceAccount>> GoogleServiceAccount::fromJsonFile(
    const std::filesystem::path& file) {
  auto text = fs::readFile(file);
  if (!text) {
    return Error{keyFileName(file.string()) + " cannot be read: " + text.error().message,
                 text.error().sys_errno};
  }
  auto out = fromJson(*text, file.string());
  wipe(*text);
  return out;
}

Result<std::shared_ptr<const GoogleServiceAccount>> GoogleServiceAccount::fromJson(
    std::string_view text, std::string_view origin) {
  if (text.size() > kMaxKeyFileSize) {
    return Error{keyFileName(origin) +
                 " is larger than 64 KiB: not a service account key file (those are JSON "
                 "documents of about 2 KB)"};
  }
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    // Nothing of the text is quoted: it may be a key in another format.
    if (!text.empty() && static_cast<unsigned char>(text.front()) == 0x30) {
      return Error{keyFileName(origin) +
                   " is not JSON but binary, perhaps a legacy P12 key: create a JSON key for "
                   "the service account (IAM & Admin > Service accounts > Keys > Add key)"};
    }
    return Error{keyFileName(origin) +
                 " is not JSON: use the JSON key file the Google Cloud console downloads "
                 "(IAM & Admin > Service accounts > Keys > Add key > JSON)"};
  }
  if (!doc.is_object()) {
    return Error{keyFileName(origin) + " is JSON but not an object: not a service account key file"};
  }
  // The key is taken out of the document first, so that it is wiped on
  // every path out of here.
  WipedString pem;
  if (auto it = doc.find("private_key"); it != doc.end() && it->is_string()) {
    pem.value = std::move(it->get_ref<std::string&>());
    wipe(it->get_ref<std::string&>());
  }

  const auto type = doc.find("type");
  if (type == doc.end()) {
    return fieldError(origin, "type",
                      "is missing: not a service account key file (it says \"type\": "
                      "\"service_account\")");
  }
  if (!type->is_string()) return fieldError(origin, "type", "is not a string");
  if (const auto& t = type->get_ref<const std::string&>(); t != "service_account") {
    std::string what = "is \"" + printable(t, 40) + "\", not \"service_account\"";
    if (t == "authorized_user") {
      what += ": these are a user's credentials (gcloud auth application-default login), not a "
              "service account key";
    } else if (t == "external_account") {
      what += ": this is a workload identity federation configuration, not a service account key";
    }
    return fieldError(origin, "type", what);
  }

  auto email = requiredString(doc, "client_email", origin);
  if (!email) return email.error();
  if (email->find('@') == std::string::npos || !isPrintableText(*email)) {
    return fieldError(origin, "client_email", "is not an email address");
  }

  if (const auto it = doc.find("private_key"); it == doc.end()) {
    return fieldError(origin, "private_key", "is missing (is this the JSON key file of a service account?)");
  } else if (!it->is_string()) {
    return fieldError(origin, "private_key", "is not a string");
  }
  if (pem.value.empty()) return fieldError(origin, "private_key", "is empty");
  ERR_clear_error();
  BioPtr bio = readOnlyBio(pem.value);
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, refusePassphrase, nullptr)
                  : nullptr);
  ERR_clear_error();
  if (!key) {
    return fieldError(origin, "private_key",
                      "holds no usable private key (it must be an unencrypted PEM key, "
                      "\"-----BEGIN PRIVATE KEY-----\" ..., as Google writes it)");
  }
  if (!EVP_PKEY_is_a(key.get(), "RSA")) {
    const char* name = EVP_PKEY_get0_type_name(key.get());
    return fieldError(origin, "private_key",
                      std::string("holds ") + (name != nullptr ? std::string("an ") + name : "a") +
                          " key, not an RSA key: RS256 needs RSA");
  }
  if (const int bits = EVP_PKEY_get_bits(key.get()); bits < kMinRsaBits) {
    return fieldError(origin, "private_key",
                      "holds an RSA key of " + std::to_string(bits) +
                          " bits; at least 2048 are needed");
  }

  auto key_id = requiredString(doc, "private_key_id", origin);
  if (!key_id) return key_id.error();
  if (!isPrintableText(*key_id) || key_id->size() > 256) {
    return fieldError(origin, "private_key_id", "is not a key id");
  }

  auto token_uri = requiredString(doc, "token_uri", origin);
  if (!token_uri) return token_uri.error();
  // The assertion is a credential for an hour: it goes over TLS or not at all.
  if (!istartsWith(*token_uri, "https://") || token_uri->size() <= 8 ||
      !isPrintableText(*token_uri)) {
    return fieldError(origin, "token_uri",
                      "is not an https:// URL (Google's is https://oauth2.googleapis.com/token)");
  }

  std::string client_id;
  if (const auto it = doc.find("client_id"); it != doc.end() && !it->is_null()) {
    if (!it->is_string() || !isPrintableText(it->get_ref<const std::string&>())) {
      return fieldError(origin, "client_id", "is not a string");
    }
    client_id = it->get<std::string>();
  }

  std::shared_ptr<GoogleServiceAccount> out(new GoogleServiceAccount());
  out->client_email_ = std::move(*email);
  out->client_id_ = std::move(client_id);
  out->key_id_ = std::move(*key_id);
  out->token_uri_ = std::move(*token_uri);
  out->origin_ = std::string(origin);
  out->key_ = key.release();
  return std::shared_ptr<const GoogleServiceAccount>(std::move(out));
}

Result<std::string> GoogleServiceAccount::signRs256(std::string_view signing_input) const {
  ERR_clear_error();
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha256(), nullptr, key_) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0) {
    return opensslError("RS256 signature setup");
  }
  const auto* in = reinterpret_cast<const unsigned char*>(signing_input.data());
  std::size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, signing_input.size()) != 1) {
    return opensslError("RS256 signature");
  }
  std::string signature(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len, in,
                     signing_input.size()) != 1) {
    return opensslError("RS256 signature");
  }
  signature.resize(len);
  return signature;
}

// ---------------------------------------------------------------------------
// GoogleJwtBearer

GoogleJwtBearer::GoogleJwtBearer(std::shared_ptr<const GoogleServiceAccount> account,
                                 std::string subject, std::string scope, http::HttpClient& http,
                                 const Clock& clock, std::string token_uri,
                                 std::chrono::milliseconds timeout)
    : account_(std::move(account)),
      subject_(std::move(subject)),
      scope_(std::move(scope)),
      http_(http),
      clock_(clock),
      token_uri_(token_uri.empty() ? account_->tokenUri() : std::move(token_uri)),
      timeout_(timeout) {}

std::string GoogleJwtBearer::cacheKey() const {
  return "google " + token_uri_ + " account=" + account_->clientEmail() +
         " sub=" + asciiLower(subject_) + " scope=" + scope_;
}

Result<std::string> GoogleJwtBearer::makeAssertion(std::chrono::system_clock::time_point now) const {
  const std::int64_t iat =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const json header = {{"alg", "RS256"}, {"typ", "JWT"}, {"kid", account_->keyId()}};
  json claims = {{"iss", account_->clientEmail()},
                 {"scope", scope_},
                 {"aud", token_uri_},
                 {"iat", iat},
                 {"exp", iat + kAssertionLifetime.count()}};
  if (!subject_.empty()) claims["sub"] = subject_;
  // Bad UTF-8 in the subject or scope (configuration) is replaced rather than
  // thrown about: Google then refuses the grant with a message.
  std::string signing_input =
      base64UrlEncode(header.dump(-1, ' ', false, json::error_handler_t::replace)) + '.' +
      base64UrlEncode(claims.dump(-1, ' ', false, json::error_handler_t::replace));
  auto signature = account_->signRs256(signing_input);
  if (!signature) return signature.error();
  signing_input += '.';
  signing_input += base64UrlEncode(*signature);
  return signing_input;
}

// Google's token endpoint answers {"error","error_description"} as RFC 6749
// §5.2 has it; the Entra parser (token_error.h) read that shape into `body`.
TokenFailure GoogleJwtBearer::classify(const http::Response& response, const TokenErrorBody& body,
                                       std::chrono::system_clock::time_point requested_at) const {
  const long status = response.status;
  TokenFailure out;
  out.http_status = status;
  out.error = body.error;
  out.retry_after = response.retryAfter();
  out.retryable = status >= 500 || status == 429 || status == 408 ||
                  body.error == "temporarily_unavailable" || body.error == "internal_failure";

  const std::string& email = account_->clientEmail();
  const std::string_view description = body.error_description;
  const std::string user = subject_.empty() ? std::string("(none)") : printable(subject_, 256);
  std::string advice;
  if (!body.json) {
    advice = "the token endpoint answered HTTP " + std::to_string(status) +
             " with a body that is not Google's JSON (a proxy or firewall in between?)";
    const std::string snippet = printable(body.snippet, kMaxSnippet);
    if (!snippet.empty()) advice += ": \"" + snippet + "\"";
  } else if (out.retryable) {
    advice = status == 429 ? "Google is throttling token requests; the request will be retried"
                           : "Google's token endpoint failed; the request will be retried";
  } else if (body.error == "unauthorized_client") {
    const std::string client =
        account_->clientId().empty()
            ? "the client ID of " + printable(email, 128) +
                  " (its numeric Unique ID in the Cloud console)"
            : "client ID " + printable(account_->clientId(), 64) + " (" + printable(email, 128) +
                  ")";
    advice = "domain-wide delegation is not granted for this service account and scope: in the "
             "Google Admin console (Security > Access and data control > API controls > Manage "
             "domain-wide delegation) add " +
             client + " with the OAuth scope " + printable(scope_, 256) +
             "; a new or changed grant can take up to 24 hours to take effect";
  } else if (contains(description, "Invalid JWT Signature")) {
    advice = "Google did not accept the JWT's signature: key " +
             printable(account_->keyId(), 64) + " of " + printable(email, 128) +
             " has been deleted or disabled, or the key file is not this service account's; "
             "create a new JSON key (Cloud console > IAM & Admin > Service accounts > Keys) and "
             "install that key file";
  } else if (contains(description, "short-lived") || contains(description, "timeframe")) {
    const std::int64_t now_s =
        std::chrono::duration_cast<std::chrono::seconds>(requested_at.time_since_epoch()).count();
    advice = "Google refused the JWT's times (iat/exp): this machine's clock is probably wrong "
             "(it said " +
             rfc5322Date(now_s) + "); keep it synchronised with NTP (clock skew)";
  } else if (contains(description, "Invalid email or User ID")) {
    advice = "the user to impersonate, " + user +
             ", does not exist in the Google Workspace domain (deleted, renamed, or a group or "
             "alias, which cannot be impersonated): check the address the relay sends as";
  } else if (body.error == "invalid_scope") {
    advice = "Google refused the scope " + printable(scope_, 256) +
             ": configure a Gmail scope such as https://www.googleapis.com/auth/gmail.send "
             "(several are separated by spaces)";
  } else if (body.error == "invalid_grant" &&
             (contains(description, "account not found") || contains(description, "disabled"))) {
    advice = "the service account " + printable(email, 128) +
             " was not found or is disabled (deleted, disabled under IAM & Admin > Service "
             "accounts, or its project shut down): enable it, or use a key file of an existing "
             "service account";
  } else if (contains(description, "audience")) {
    advice = "Google refused the JWT's audience " + printable(token_uri_, 256) +
             ": the token URI must be Google's token endpoint (the key file's token_uri, "
             "https://oauth2.googleapis.com/token)";
  } else if (body.error == "invalid_client") {
    advice = "Google does not know this service account's OAuth client (deleted or disabled): "
             "check the key file of " +
             printable(email, 128);
  } else {
    advice = "the token request was refused";
  }

  std::string details = "HTTP " + std::to_string(status);
  if (const std::string quoted = quoteDescription(body); !quoted.empty()) {
    details += ", " + quoted;
  }
  out.explanation = advice + " (" + details + ")";
  return out;
}

TokenResult GoogleJwtBearer::fail(TokenFailure failure) const {
  spdlog::warn("oauth: token request for service account {} acting as {} failed ({}): {}",
               printable(account_->clientEmail(), 128),
               subject_.empty() ? std::string("itself") : printable(subject_, 256),
               failure.retryable ? "will retry" : "needs an administrator", failure.explanation);
  return failure;
}

TokenResult GoogleJwtBearer::fetch() {
  const auto requested_at = clock_.wallNow();

  auto signed_jwt = makeAssertion(requested_at);
  if (!signed_jwt) {
    TokenFailure failure;
    failure.retryable = false;
    failure.explanation = "cannot sign the JWT with key " + printable(account_->keyId(), 64) +
                          " of " + printable(account_->clientEmail(), 128) + " (" +
                          printable(account_->origin(), 512) + "): " + signed_jwt.error().message;
    return fail(std::move(failure));
  }
  std::string assertion = std::move(signed_jwt).value();

  // Google never echoes the assertion, but a proxy's error page might. The
  // signature alone is searched for too, in case only the end of the
  // assertion was quoted. Base64url and '.' are unreserved, so the
  // form-encoded assertion is the assertion.
  CredentialScrubber scrubber;
  scrubber.add(assertion);
  if (const std::size_t dot = assertion.rfind('.'); dot != std::string::npos) {
    scrubber.add(std::string_view(assertion).substr(dot + 1));
  }
  std::vector<std::pair<std::string, std::string>> fields = {
      {"grant_type", std::string(kJwtBearerGrant)},
      {"assertion", std::move(assertion)},
  };

  TokenResult result = requestAccessToken(
      http_, {token_uri_, std::move(fields), timeout_}, scrubber,
      [&](const http::Response& response, const TokenErrorBody& body) {
        return classify(response, body, requested_at);
      },
      requested_at);
  if (!result) return fail(result.failure());
  spdlog::debug(
      "oauth: new Google token for service account {} acting as {}, valid for {} s",
      printable(account_->clientEmail(), 128),
      subject_.empty() ? std::string("itself") : printable(subject_, 256),
      std::chrono::duration_cast<std::chrono::seconds>(result->expires_at - requested_at).count());
  return result;
}

}  // namespace mb::oauth
