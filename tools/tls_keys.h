// Makes a cluster's TLS material (docs/security.md, "TLS"): a private CA and one member
// certificate signed by it, which every process of the cluster presents. Peers are
// verified by chain to the CA, not by host name, so one member certificate serves every
// host; the CA key stays with the operator to sign more.
#ifndef PEPNET_TOOLS_TLS_KEYS_H_
#define PEPNET_TOOLS_TLS_KEYS_H_

#include <string>

#include "common/status.h"

namespace pepnet {

// Writes ca.pem, ca-key.pem, cert.pem and key.pem (keys mode 600) into `dir`, which is
// created when missing. Refuses to overwrite any of them (InvalidArgument naming the file):
// a cluster's CA is not replaced by accident. A run that fails removes what it wrote. ECDSA P-256
// keys, SHA-256 signatures, valid `days` days.
Status MakeTlsKeys(const std::string& dir, int days);

}  // namespace pepnet

#endif  // PEPNET_TOOLS_TLS_KEYS_H_
