// A blocking TCP client that speaks raw bytes to a live pepnet_ps, for tests that play a
// broken or hostile peer. Inside TLS when UseTls gave it a context (the attacker then holds
// a certificate of the cluster, and its bytes reach the server's frame parser). Not
// thread-safe.
#ifndef PEPNET_TESTS_RAW_CONNECTION_H_
#define PEPNET_TESTS_RAW_CONNECTION_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "common/auth.h"
#include "common/frame.h"
#include "common/tls.h"
#include "proto/ps.pb.h"

namespace pepnet {
namespace testing {

class RawConnection {
 public:
  // Connects and, unless `handshake` is false, runs the handshake as a peer of `role`
  // holding `secret` (handshake_ok() tells whether the server accepted it).
  // `source`: the local address to connect from (any 127.x.y.z plays another host).
  explicit RawConnection(uint16_t port, bool handshake = true, const Secret& secret = Secret(),
                         PeerRole role = PeerRole::kTool, const char* source = nullptr) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (source != nullptr) {
      sockaddr_in from{};
      from.sin_family = AF_INET;
      inet_pton(AF_INET, source, &from.sin_addr);
      bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof(from));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in local{};
    socklen_t len = sizeof(local);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &len);
    local_port_ = ntohs(local.sin_port);
    if (connected_ && DefaultTls() != nullptr) {
      ssl_ = SSL_new(DefaultTls()->native());
      SSL_set_fd(ssl_, fd_);
      tls_ok_ = SSL_connect(ssl_) == 1;
    }
    if (connected_ && handshake) handshake_ok_ = Handshake(secret, role).ok();
  }

  // Connections made after this run inside TLS with `tls` (borrowed; null: plain TCP).
  static void UseTls(const TlsContext* tls) { DefaultTls() = tls; }

  // The client side of common/auth.h over this socket.
  Status Handshake(const Secret& secret, PeerRole role) {
    ClientHandshake client(&secret, role);
    std::string hello, proof;
    if (!ReadExactly(kServerHelloBytes, &hello)) return Status::IoError("no server hello");
    char answer[kClientHelloBytes];
    PEPNET_RETURN_IF_ERROR(client.Answer(hello.data(), answer));
    if (!TrySend(std::string(answer, sizeof(answer)))) {
      return Status::IoError("cannot send the client hello");
    }
    if (!ReadExactly(kServerProofBytes, &proof)) return Status::IoError("no server proof");
    return client.Verify(proof.data());
  }
  ~RawConnection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    close(fd_);
  }

  bool connected() const { return connected_; }
  bool handshake_ok() const { return handshake_ok_; }
  // Whether the TLS handshake succeeded (false on a plain connection).
  bool tls_ok() const { return tls_ok_; }
  int fd() const { return fd_; }
  uint16_t local_port() const { return local_port_; }

  void Send(const std::string& bytes) { ASSERT_TRUE(TrySend(bytes)); }
  // False once the peer closed (no SIGPIPE) or a send blocked for 5 s.
  bool TrySend(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n =
          ssl_ ? SSL_write(ssl_, bytes.data() + done, static_cast<int>(bytes.size() - done))
               : send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += n;
    }
    return true;
  }

  // One frame made of a serialized header and a payload.
  static std::string Frame(const std::string& header, const std::string& payload) {
    std::string out(kFramePrefixBytes, '\0');
    EncodeFramePrefix(header.size(), payload.size(), &out[0]);
    return out + header + payload;
  }
  // The start of a frame that announces `payload_len` bytes but carries only `sent`.
  static std::string PartialFrame(const std::string& header, uint32_t payload_len, size_t sent) {
    std::string out(kFramePrefixBytes, '\0');
    EncodeFramePrefix(header.size(), payload_len, &out[0]);
    return out + header + std::string(sent, '\0');
  }
  static std::string Request(proto::RequestType type, uint32_t num_keys, uint64_t num_values,
                             const std::string& payload) {
    proto::RequestHeader h;
    h.set_request_id(7);
    h.set_type(type);
    h.set_num_keys(num_keys);
    h.set_num_values(num_values);
    return Frame(h.SerializeAsString(), payload);
  }

  // Reads one reply frame; false if the connection closed or timed out first.
  bool ReadReply(proto::ResponseHeader* reply, std::string* payload = nullptr) {
    std::string prefix;
    if (!ReadExactly(kFramePrefixBytes, &prefix)) return false;
    FramePrefix p;
    if (!DecodeFramePrefix(prefix.data(), kDefaultMaxFrameBytes, &p).ok()) return false;
    std::string header, body;
    if (!ReadExactly(p.header_len, &header) || !ReadExactly(p.payload_len, &body)) return false;
    if (payload) *payload = body;
    return reply->ParseFromString(header);
  }

  // True when the server closed its end (read returns 0 or reset), after whatever it sent
  // before; false if it kept the connection open for 5 s.
  bool ClosedByPeer() {
    char buf[4096];
    for (;;) {
      const ssize_t r = Read(buf, sizeof(buf));
      if (r > 0) continue;
      if (ssl_ != nullptr) {
        // A receive timeout reads as "wants more"; anything else is the end.
        return r == 0 || SSL_get_error(ssl_, static_cast<int>(r)) != SSL_ERROR_WANT_READ;
      }
      return r == 0 || (r < 0 && errno == ECONNRESET);
    }
  }

  // Reads exactly `n` bytes; false if the connection closed or timed out first.
  bool ReadExactly(size_t n, std::string* out) {
    out->resize(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = Read(&(*out)[got], n - got);
      if (r <= 0) return false;
      got += r;
    }
    return true;
  }

 private:
  static const TlsContext*& DefaultTls() {
    static const TlsContext* tls = nullptr;
    return tls;
  }
  ssize_t Read(char* out, size_t n) {
    if (ssl_ == nullptr) return read(fd_, out, n);
    return SSL_read(ssl_, out, static_cast<int>(std::min<size_t>(n, 1 << 30)));
  }

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  bool tls_ok_ = false;
  bool connected_ = false;
  bool handshake_ok_ = false;
  uint16_t local_port_ = 0;
};

}  // namespace testing
}  // namespace pepnet

#endif  // PEPNET_TESTS_RAW_CONNECTION_H_
