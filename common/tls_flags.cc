#include "common/tls_flags.h"

#include <gflags/gflags.h>

DEFINE_string(tls_cert, "",
              "Optional TLS for untrusted networks (docs/security.md): this process's "
              "certificate chain, PEM. Needs --tls_key, --tls_ca and --secret_file; every peer "
              "of the cluster must run TLS too.");
DEFINE_string(tls_key, "", "The private key of --tls_cert, PEM; a file only its owner may read.");
DEFINE_string(tls_ca, "",
              "The cluster's CA, PEM: a peer's certificate must chain to it (both ends verify).");

namespace pepnet {

TlsOptions TlsOptionsFromFlags() {
  TlsOptions o;
  o.cert_file = FLAGS_tls_cert;
  o.key_file = FLAGS_tls_key;
  o.ca_file = FLAGS_tls_ca;
  return o;
}

Status LoadSecretAndTls(const std::string& secret_file, Secret* out) {
  PEPNET_RETURN_IF_ERROR(Secret::Load(secret_file, out));
  return AttachTls(TlsOptionsFromFlags(), out);
}

}  // namespace pepnet
