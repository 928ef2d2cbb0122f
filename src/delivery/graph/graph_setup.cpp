#include "delivery/graph/graph_setup.h"

#include "oauth/entra_client_credentials.h"

namespace mb::delivery::graph {

http::CurlClient::Options graphHttpOptions(const config::ProviderConfig& provider) {
  http::CurlClient::Options options;
  options.ca_file = provider.ca_file;
  options.proxy = provider.proxy;
  return options;
}

Result<GraphCredentials> makeGraphCredentials(const config::ProviderConfig& provider,
                                              http::HttpClient& http, const Clock& clock) {
  oauth::EntraOptions entra;
  entra.login_endpoint = provider.login_endpoint;
  entra.graph_endpoint = provider.graph_endpoint;
  entra.tenant = provider.tenant_id;
  entra.client_id = provider.client_id;
  entra.timeout = provider.timeout;
  entra.scope = provider.scope;  // the provider's one timeout covers token requests too
  GraphCredentials out;
  if (!provider.cert_file.empty() || !provider.pkcs12_file.empty()) {
    auto cert = provider.pkcs12_file.empty()
                    ? oauth::ClientCertificate::fromPemFiles(provider.cert_file, provider.key_file)
                    : oauth::ClientCertificate::fromPkcs12File(provider.pkcs12_file, provider.pkcs12_password);
    if (!cert) return Error{"provider " + provider.name + ": " + cert.error().message};
    out.certificate = *cert;
    out.fetcher = std::make_unique<oauth::EntraClientCredentials>(entra, out.certificate, http, clock);
  } else {
    out.fetcher = std::make_unique<oauth::EntraClientCredentials>(entra, provider.client_secret, http, clock);
  }
  return out;
}

}  // namespace mb::delivery::graph
