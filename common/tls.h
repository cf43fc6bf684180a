// Optional TLS for every connection of a cluster (docs/security.md, "TLS"). The
// authentication handshake of common/auth.h proves the shared secret; TLS adds
// confidentiality and integrity for networks the cluster does not trust. Both ends present
// a certificate and verify the other's against the cluster's CA (mutual TLS, 1.2 or newer);
// the secret's handshake then runs inside the TLS session.
//
// A TlsContext is built once per process from its flags, is immutable afterwards and is
// shared by every connection, on any thread. This header stays light: the Asio and OpenSSL
// types are only declared.
#ifndef PEPNET_COMMON_TLS_H_
#define PEPNET_COMMON_TLS_H_

#include <memory>
#include <string>

#include "common/status.h"

struct ssl_ctx_st;
namespace boost {
namespace asio {
namespace ssl {
class context;
}  // namespace ssl
}  // namespace asio
}  // namespace boost

namespace pepnet {

class Secret;

struct TlsOptions {
  std::string cert_file;  // this end's certificate chain, PEM (--tls_cert)
  std::string key_file;   // its private key, PEM, readable by its owner only (--tls_key)
  std::string ca_file;    // the CA a peer's certificate must chain to, PEM (--tls_ca)
  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
};

class TlsContext {
 public:
  // InvalidArgument naming the flag and file when one of the three is missing or cannot be
  // loaded, when the key does not match the certificate, or when others may read the key.
  static Status Create(const TlsOptions& options, std::shared_ptr<const TlsContext>* out);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  ssl_ctx_st* native() const;
  // The same context for Asio's ssl::stream.
  boost::asio::ssl::context& asio() const;

 private:
  TlsContext();
  std::unique_ptr<boost::asio::ssl::context> context_;
};

// Builds the TLS context of `options` (when any is given) and attaches it to `secret`, so
// that every connection that proves the secret runs inside TLS. TLS without a secret is
// refused: the secret is what admits a peer, TLS only protects the conversation.
Status AttachTls(const TlsOptions& options, Secret* secret);

// OpenSSL's queued errors of this thread as one line (and clears them); `fallback` when
// there are none.
std::string TakeTlsErrors(const std::string& fallback);

}  // namespace pepnet

#endif  // PEPNET_COMMON_TLS_H_
