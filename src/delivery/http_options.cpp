#include "delivery/http_options.h"

namespace mb::delivery {

http::CurlClient::Options httpOptionsFor(const config::ProviderConfig& provider) {
  http::CurlClient::Options options;
  options.ca_file = provider.ca_file;
  options.proxy = provider.proxy;
  return options;
}

}  // namespace mb::delivery
