#include "common/auth.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <cstring>

#include "common/env.h"

namespace pepnet {
namespace {

constexpr char kMagic[8] = {'P', 'E', 'P', 'A', 'U', 'T', 'H', '1'};
constexpr uint8_t kVersion = 1;
constexpr uint8_t kSecretRequired = 1;
constexpr size_t kNonce = 32, kMac = 32;
constexpr size_t kMinSecretBytes = 16;

void RandomNonce(unsigned char out[kNonce]) {
  if (RAND_bytes(out, kNonce) != 1) {
    // OpenSSL's generator failing is not an expected condition of a healthy host.
    std::abort();
  }
}

// HMAC-SHA256(secret, label | a | b | role).
void Mac(const Secret& secret, const char* label, const unsigned char* a, const unsigned char* b,
         uint8_t role, unsigned char out[kMac]) {
  unsigned char message[32 + 2 * kNonce + 1];
  const size_t label_len = std::strlen(label);
  std::memcpy(message, label, label_len);
  std::memcpy(message + label_len, a, kNonce);
  std::memcpy(message + label_len + kNonce, b, kNonce);
  message[label_len + 2 * kNonce] = role;
  unsigned int len = kMac;
  HMAC(EVP_sha256(), secret.key().data(), static_cast<int>(secret.key().size()), message,
       label_len + 2 * kNonce + 1, out, &len);
}

bool ValidRole(uint8_t role) {
  return role == static_cast<uint8_t>(PeerRole::kTool) ||
         role == static_cast<uint8_t>(PeerRole::kWorker) ||
         role == static_cast<uint8_t>(PeerRole::kCoordinator);
}

}  // namespace

const char* RoleName(PeerRole role) {
  switch (role) {
    case PeerRole::kTool:
      return "tool";
    case PeerRole::kWorker:
      return "worker";
    case PeerRole::kCoordinator:
      return "coordinator";
  }
  return "?";
}

Status CheckOwnerOnlyFile(const std::string& flag, const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return Status::InvalidArgument(flag + " " + path + ": " + strerror(errno));
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return Status::InvalidArgument(flag + " " + path +
                                   " may be read by group or others; chmod 600 it");
  }
  return Status::OK();
}

Status Secret::Load(const std::string& path, Secret* out) {
  *out = Secret();
  if (path.empty()) return Status::OK();
  PEPNET_RETURN_IF_ERROR(CheckOwnerOnlyFile("--secret_file", path));
  std::string bytes;
  Status read = Env::Default()->ReadFile(path, &bytes);
  if (!read.ok()) return Status::InvalidArgument("--secret_file: " + read.message());
  while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r')) bytes.pop_back();
  if (bytes.size() < kMinSecretBytes) {
    return Status::InvalidArgument("--secret_file " + path + " holds " +
                                   std::to_string(bytes.size()) + " bytes; a secret needs " +
                                   std::to_string(kMinSecretBytes) + " at least");
  }
  *out = FromBytes(std::move(bytes));
  return Status::OK();
}

ServerHandshake::ServerHandshake(const Secret* secret) : secret_(secret) { RandomNonce(nonce_); }

void ServerHandshake::Hello(char out[kServerHelloBytes]) const {
  std::memcpy(out, kMagic, 8);
  out[8] = static_cast<char>(kVersion);
  out[9] = static_cast<char>(secret_->empty() ? 0 : kSecretRequired);
  std::memcpy(out + 10, nonce_, kNonce);
}

Status ServerHandshake::Check(const char in[kClientHelloBytes], PeerRole* role,
                              char proof[kServerProofBytes]) const {
  std::memset(proof, 0, kServerProofBytes);
  proof[0] = 1;  // refused unless proven below
  if (std::memcmp(in, kMagic, 8) != 0 || static_cast<uint8_t>(in[8]) != kVersion) {
    // 0x16 0x03: a TLS handshake record, from a peer given the TLS flags this end lacks.
    const bool tls = in[0] == 0x16 && in[1] == 0x03;
    return Status::InvalidArgument(tls ? "not a pepnet handshake: the peer speaks TLS and this "
                                         "end does not (give both the same TLS flags)"
                                       : "not a pepnet handshake");
  }
  const uint8_t r = static_cast<uint8_t>(in[9]);
  if (!ValidRole(r)) return Status::InvalidArgument("unknown role " + std::to_string(r));
  const auto* client_nonce = reinterpret_cast<const unsigned char*>(in + 10);
  const auto* client_mac = reinterpret_cast<const unsigned char*>(in + 10 + kNonce);
  if (!secret_->empty()) {
    unsigned char want[kMac];
    Mac(*secret_, "pepnet client", nonce_, client_nonce, r, want);
    if (CRYPTO_memcmp(want, client_mac, kMac) != 0) {
      return Status::Unavailable("wrong proof of the secret");
    }
    Mac(*secret_, "pepnet server", client_nonce, nonce_, r,
        reinterpret_cast<unsigned char*>(proof + 2));
  }
  proof[0] = 0;
  *role = static_cast<PeerRole>(r);
  return Status::OK();
}

void ServerHandshake::RefuseBusy(char proof[kServerProofBytes]) {
  std::memset(proof, 0, kServerProofBytes);
  proof[0] = 2;
}

ClientHandshake::ClientHandshake(const Secret* secret, PeerRole role)
    : secret_(secret), role_(role) {
  RandomNonce(nonce_);
}

Status ClientHandshake::Answer(const char hello[kServerHelloBytes], char out[kClientHelloBytes]) {
  if (std::memcmp(hello, kMagic, 8) != 0 || static_cast<uint8_t>(hello[8]) != kVersion) {
    return Status::InvalidArgument("the server does not speak the pepnet handshake");
  }
  const bool required = (static_cast<uint8_t>(hello[9]) & kSecretRequired) != 0;
  if (required && secret_->empty()) {
    return Status::InvalidArgument("the server requires the cluster's secret; give --secret_file");
  }
  if (!required && !secret_->empty()) {
    return Status::InvalidArgument(
        "the server does not authenticate (no --secret_file) while this end has a secret: "
        "both ends need the same --secret_file");
  }
  std::memcpy(server_nonce_, hello + 10, kNonce);
  std::memcpy(out, kMagic, 8);
  out[8] = static_cast<char>(kVersion);
  out[9] = static_cast<char>(role_);
  std::memcpy(out + 10, nonce_, kNonce);
  std::memset(out + 10 + kNonce, 0, kMac);
  if (!secret_->empty()) {
    Mac(*secret_, "pepnet client", server_nonce_, nonce_, static_cast<uint8_t>(role_),
        reinterpret_cast<unsigned char*>(out + 10 + kNonce));
  }
  return Status::OK();
}

Status ClientHandshake::Verify(const char proof[kServerProofBytes]) const {
  if (proof[0] == 2) {
    return Status::Unavailable("the server has no room for another connection now");
  }
  if (proof[0] != 0) {
    return Status::InvalidArgument(
        "the server refused this end's proof of the secret (a different "
        "--secret_file?)");
  }
  if (secret_->empty()) return Status::OK();
  unsigned char want[kMac];
  Mac(*secret_, "pepnet server", nonce_, server_nonce_, static_cast<uint8_t>(role_), want);
  if (CRYPTO_memcmp(want, proof + 2, kMac) != 0) {
    return Status::InvalidArgument("the server cannot prove it holds the secret");
  }
  return Status::OK();
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    static const in6_addr loopback = IN6ADDR_LOOPBACK_INIT;
    return std::memcmp(&v6, &loopback, sizeof(v6)) == 0;
  }
  return false;
}

Status CheckListenSecurity(const std::string& host, const Secret& secret, const std::string& what) {
  if (secret.empty() && !IsLoopbackHost(host)) {
    return Status::InvalidArgument(what + "=" + host +
                                   " is not a loopback address: serving other hosts needs "
                                   "--secret_file (every peer must prove it holds the secret)");
  }
  return Status::OK();
}

std::string ServeToken(const Secret& secret) {
  static const char kLabel[] = "pepnet-serve token v1";
  unsigned char mac[kMac];
  unsigned int len = kMac;
  HMAC(EVP_sha256(), secret.key().data(), static_cast<int>(secret.key().size()),
       reinterpret_cast<const unsigned char*>(kLabel), sizeof(kLabel) - 1, mac, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[mac[i] >> 4];
    hex += kHex[mac[i] & 15];
  }
  return hex;
}

bool BearerMatches(const std::string& authorization, const std::string& token) {
  static const std::string kBearer = "Bearer ";
  if (authorization.size() != kBearer.size() + token.size() ||
      authorization.compare(0, kBearer.size(), kBearer) != 0) {
    return false;
  }
  return CRYPTO_memcmp(authorization.data() + kBearer.size(), token.data(), token.size()) == 0;
}

}  // namespace pepnet
