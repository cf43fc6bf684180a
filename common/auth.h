// Peer authentication (docs/security.md). Before any request, the two ends of every TCP
// connection of a cluster (a shard and its clients, the coordinator and its workers) run a
// handshake: the server sends a nonce, the client answers with its own nonce, its role and
// an HMAC-SHA256 over both nonces and the role keyed with the cluster's shared secret, and
// the server answers with its own HMAC, so that each end knows the other holds the
// secret. The secret never crosses the wire; the nonces make every proof single-use.
// Without a secret the handshake only declares the client's role, and processes serve
// loopback only.
//
//   server -> client   ServerHello  "PEPAUTH1" version:u8 flags:u8 nonce[32]           (42 B)
//   client -> server   ClientHello  "PEPAUTH1" version:u8 role:u8 nonce[32] mac[32]    (74 B)
//   server -> client   ServerProof  status:u8 reserved:u8 mac[32]                      (34 B)
//
// flags bit 0: the server requires the secret. The client's mac is
// HMAC(secret, "pepnet client" | server nonce | client nonce | role), the server's
// HMAC(secret, "pepnet server" | client nonce | server nonce | role); both zero without a
// secret. Status 0 accepts, 1 refuses a wrong proof, 2 has no room for the connection now
// (both close the connection).
//
// The classes hold one handshake's state; a Secret is immutable and thread-safe.
#ifndef PEPNET_COMMON_AUTH_H_
#define PEPNET_COMMON_AUTH_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace pepnet {

class TlsContext;

// What a client says it is. Every holder of the secret is trusted: a role routes requests
// (only a coordinator session may run passes and exports), it is not a permission.
enum class PeerRole : uint8_t {
  kTool = 1,  // pepnet_ctl, benchmarks, tests
  kWorker = 2,
  kCoordinator = 3,
};
const char* RoleName(PeerRole role);

constexpr size_t kServerHelloBytes = 42;
constexpr size_t kClientHelloBytes = 74;
constexpr size_t kServerProofBytes = 34;
// A peer that has not finished its handshake in this long is dropped.
constexpr int kDefaultHandshakeTimeoutMs = 10000;

// The cluster's shared secret: the bytes of a file only its owner may read.
class Secret {
 public:
  Secret() = default;
  // Reads `path`: InvalidArgument when group or others may read it (it must be chmod 600
  // or stricter), when it holds fewer than 16 bytes (a trailing newline is dropped), or when
  // it cannot be read. An empty path is no secret.
  static Status Load(const std::string& path, Secret* out);
  static Secret FromBytes(std::string bytes) {
    Secret s;
    s.key_ = std::move(bytes);
    return s;
  }
  bool empty() const { return key_.empty(); }
  const std::string& key() const { return key_; }
  // The process's TLS identity (common/tls.h), travelling with the secret: every connection
  // that proves the secret runs inside TLS when there is one. Null: plain TCP.
  const TlsContext* tls() const { return tls_.get(); }
  void set_tls(std::shared_ptr<const TlsContext> tls) { tls_ = std::move(tls); }

 private:
  std::string key_;
  std::shared_ptr<const TlsContext> tls_;
};

// InvalidArgument naming `flag` when `path` cannot be read or group or others may access
// it (a secret, a private key).
Status CheckOwnerOnlyFile(const std::string& flag, const std::string& path);

class ServerHandshake {
 public:
  // `secret` is borrowed; empty: no secret, the handshake only reads the role.
  explicit ServerHandshake(const Secret* secret);
  void Hello(char out[kServerHelloBytes]) const;
  // Checks the client's answer and fills the proof to send back (an acceptance or a
  // refusal, which the server sends before closing). InvalidArgument for a message that
  // is not a handshake, Unavailable for a wrong proof or a missing secret.
  Status Check(const char in[kClientHelloBytes], PeerRole* role,
               char proof[kServerProofBytes]) const;
  // Turns a proof into the "no room now" refusal (a client retries that later).
  static void RefuseBusy(char proof[kServerProofBytes]);

 private:
  const Secret* secret_;
  unsigned char nonce_[32];
};

class ClientHandshake {
 public:
  ClientHandshake(const Secret* secret, PeerRole role);
  // Answers the server's hello. InvalidArgument when the peer does not speak the
  // handshake, when the server requires a secret this end has not, or has none while this
  // end has one (both ends need the same --secret_file): retrying cannot help.
  Status Answer(const char hello[kServerHelloBytes], char out[kClientHelloBytes]);
  // Checks the server's proof: InvalidArgument when it refused this end's proof or cannot
  // prove the secret itself, Unavailable when it had no room (retry later).
  Status Verify(const char proof[kServerProofBytes]) const;

 private:
  const Secret* secret_;
  const PeerRole role_;
  unsigned char server_nonce_[32] = {};
  unsigned char nonce_[32];
};

// The bearer token of pepnet_serve's scoring API (docs/security.md): HMAC-SHA256 of the
// secret over a fixed label, in hex. A client that holds it may score, and nothing else:
// the token does not give away the secret.
std::string ServeToken(const Secret& secret);
// Whether an Authorization header carries `token` ("Bearer <token>"), compared in constant
// time.
bool BearerMatches(const std::string& authorization, const std::string& token);

// Whether `host` is a loopback address: 127.0.0.0/8, ::1 or "localhost".
bool IsLoopbackHost(const std::string& host);

// For a listening process: OK to serve on `host` with `secret`, or InvalidArgument (a
// non-loopback address without a secret). `what` names the flag in the message.
Status CheckListenSecurity(const std::string& host, const Secret& secret, const std::string& what);

}  // namespace pepnet

#endif  // PEPNET_COMMON_AUTH_H_
