#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "base/result.h"
#include "oauth/client_certificate.h"

namespace mb::oauth {

/// Client assertions: the signed JWT that stands in for a client secret
/// (RFC 7523 §2.2, RFC 7521 §4.2; "Microsoft identity platform certificate
/// credentials"). Pure functions over their arguments; thread-safe.

/// How long an assertion is valid; Microsoft accepts 5 to 10 minutes.
inline constexpr std::chrono::minutes kAssertionLifetime{10};

/// The compact JWS `header.claims.signature`, with
///   header {"alg":"PS256","typ":"JWT","x5t#S256":cert.x5tS256()}
///   claims {"aud":audience,"iss":client_id,"sub":client_id,"jti":<random GUID>,
///           "nbf":now,"iat":now,"exp":now+lifetime}   (seconds since the epoch)
/// `audience` is the token endpoint URL the assertion is sent to.
/// The result is a credential (valid for `lifetime`): never log it.
Result<std::string> makeClientAssertion(const ClientCertificate& cert, std::string_view client_id,
                                        std::string_view audience,
                                        std::chrono::system_clock::time_point now,
                                        std::chrono::seconds lifetime = kAssertionLifetime);

/// A random (version 4) GUID, lower-case 8-4-4-4-12 hex, from OpenSSL's
/// CSPRNG; an Error only if the CSPRNG fails.
Result<std::string> randomGuid();

}  // namespace mb::oauth
