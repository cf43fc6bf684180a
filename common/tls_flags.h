// --tls_cert, --tls_key and --tls_ca, defined once for every binary that links this
// (the servers, the coordinator, the workers, pepnet_ctl, the benchmarks).
#ifndef PEPNET_COMMON_TLS_FLAGS_H_
#define PEPNET_COMMON_TLS_FLAGS_H_

#include <string>

#include "common/auth.h"
#include "common/tls.h"

namespace pepnet {

TlsOptions TlsOptionsFromFlags();

// What every binary does with --secret_file and the TLS flags: Secret::Load, then
// AttachTls (common/tls.h). Errors name the flag and file.
Status LoadSecretAndTls(const std::string& secret_file, Secret* out);

}  // namespace pepnet

#endif  // PEPNET_COMMON_TLS_FLAGS_H_
