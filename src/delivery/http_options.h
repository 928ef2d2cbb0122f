#pragma once

#include "config/config.h"
#include "http/curl_client.h"

namespace mb::delivery {

/// The HTTP client options of a provider that calls an HTTP API (graph,
/// gmail): its CA file and proxy. One place for the daemon (app/) and the
/// administrator commands.
http::CurlClient::Options httpOptionsFor(const config::ProviderConfig& provider);

}  // namespace mb::delivery
