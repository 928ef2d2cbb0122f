#include "net/tls_context_holder.h"

namespace mb::net {

Result<std::shared_ptr<TlsContext>> load(const TlsSource& source) {
  switch (source.kind) {
    case TlsSource::Kind::Pem:
      return TlsContext::fromPem(source.cert_chain, source.key);
    case TlsSource::Kind::Pkcs12:
      return TlsContext::fromPkcs12(source.pkcs12, source.password);
    case TlsSource::Kind::SelfSigned:
      return TlsContext::selfSigned(source.dir, source.hostname);
  }
  return Error{"unknown TLS source kind"};
}

std::shared_ptr<TlsContext> TlsContextHolder::current() const {
  const std::lock_guard lock(mutex_);
  return current_;
}

std::shared_ptr<TlsContext> TlsContextHolder::replace(std::shared_ptr<TlsContext> next) {
  // The old context is handed back rather than released under the lock:
  // if this was its last owner, freeing an SSL_CTX need not block readers.
  const std::lock_guard lock(mutex_);
  current_.swap(next);
  return next;
}

}  // namespace mb::net
