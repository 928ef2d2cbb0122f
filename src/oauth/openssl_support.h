#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace mb::oauth {

/// What the oauth/ code that holds private keys (client_certificate.h,
/// google_service_account.h) shares about OpenSSL 3: owning pointers,
/// errors as mb::Error, and reading keys from memory without ever prompting.
/// Thread-safe (OpenSSL's error queue is per thread).

/// unique_ptr types that free OpenSSL objects with their own free function.
template <auto Fn>
struct OpensslFree {
  template <typename T>
  void operator()(T* p) const {
    Fn(p);
  }
};
using BioPtr = std::unique_ptr<BIO, OpensslFree<BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, OpensslFree<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, OpensslFree<EVP_PKEY_free>>;
using Pkcs12Ptr = std::unique_ptr<PKCS12, OpensslFree<PKCS12_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, OpensslFree<EVP_MD_CTX_free>>;

/// `what` with OpenSSL's reason for what just failed, if it left one; the
/// error queue is emptied so the next call starts clean.
Error opensslError(const std::string& what);

/// A pem_password_cb that stands in for OpenSSL's terminal prompt: an
/// encrypted PEM key is refused, never asked about.
int refusePassphrase(char* buf, int size, int rwflag, void* userdata);

/// A read-only memory BIO over `data` (not copied: it must outlive the BIO);
/// null when `data` is too large for OpenSSL's int lengths.
BioPtr readOnlyBio(std::string_view data);

}  // namespace mb::oauth
