#pragma once

#include <string>

#include "config/secret.h"
#include "oauth/entra_client_credentials.h"

namespace mb::oauth::testing {

/// The app registration the Entra tests (entra_client_credentials_test.cpp,
/// entra_delegated_test.cpp) ask tokens for, in the global cloud. For unit
/// tests only.
inline constexpr const char* kTenant = "contoso.onmicrosoft.com";
inline constexpr const char* kClient = "11111111-2222-3333-4444-555555555555";
inline constexpr const char* kTokenUrl =
    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";

/// EntraOptions for kTenant and kClient, everything else as defaulted.
inline EntraOptions entraOptions() {
  EntraOptions o;
  o.tenant = kTenant;
  o.client_id = kClient;
  return o;
}

/// A secret written in the configuration itself.
inline config::Secret inlineSecret(const std::string& value) {
  return config::Secret(config::Secret::Source::Inline, "", value);
}

}  // namespace mb::oauth::testing
