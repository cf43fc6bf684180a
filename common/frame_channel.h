// FrameChannel: a blocking, framed TCP connection (the frame layout of common/frame.h)
// for control traffic that is naturally request/reply and low in count: the workers'
// conversation with the pass coordinator. The data path to the shard servers stays on
// the asynchronous client.
//
// A channel runs inside TLS when the secret given to Connect or AcceptHandshake carries a
// TLS identity (common/tls.h), and is plain TCP otherwise.
//
// One thread may Send while another Receives (the coordinator writes to a worker while
// the worker's reader thread waits); Close() and ShutdownWrite() may be called from any
// thread and unblock a Receive. FrameListener accepts channels.
#ifndef PEPNET_COMMON_FRAME_CHANNEL_H_
#define PEPNET_COMMON_FRAME_CHANNEL_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/auth.h"
#include "common/frame.h"
#include "common/status.h"

struct ssl_st;

namespace pepnet {

class TlsContext;

class FrameChannel {
 public:
  // Connects to host:port, retrying refused connections until `timeout_ms` has passed
  // (the peer may still be starting), and runs the client side of the handshake
  // (common/auth.h) as `role` with `secret` (borrowed for the call; empty: none).
  static Status Connect(const std::string& host, int port, int timeout_ms, const Secret& secret,
                        PeerRole role, std::unique_ptr<FrameChannel>* out);
  explicit FrameChannel(int fd);  // takes ownership of a connected socket
  ~FrameChannel();
  FrameChannel(const FrameChannel&) = delete;
  FrameChannel& operator=(const FrameChannel&) = delete;

  // Sends one frame: `header` (serialized protobuf) and `payload_len` payload bytes.
  Status Send(const std::string& header, const void* payload, size_t payload_len);
  // Receives one frame. Unavailable when the peer closed or the connection broke,
  // DeadlineExceeded after `timeout_ms` without a whole frame (0 = wait forever),
  // Corruption/InvalidArgument for a bad frame. Messages name the peer.
  Status Receive(std::string* header, PayloadBuffer* payload, int timeout_ms = 0,
                 uint64_t max_frame_bytes = kDefaultMaxFrameBytes);
  // The server side of the handshake on an accepted channel: Unavailable for a peer that
  // does not prove `secret` (it was sent a refusal), InvalidArgument for one that does not
  // speak the handshake, DeadlineExceeded after `timeout_ms`.
  Status AcceptHandshake(const Secret& secret, int timeout_ms, PeerRole* role);
  // Shuts the connection down; a blocked Receive returns Unavailable.
  void Close();
  // Ends the sending direction (the peer reads what was sent, then end of stream).
  void ShutdownWrite();
  const std::string& peer() const { return peer_; }

 private:
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;

  Status ReadExactly(char* out, size_t n, int timeout_ms);
  Status SendAll(const char* data, size_t n);
  Status ClientHandshake(const Secret& secret, PeerRole role, int timeout_ms);
  // Runs the TLS handshake over the connected socket, which becomes non-blocking.
  // InvalidArgument when TLS refused the peer (another CA, not TLS): retrying cannot help.
  Status StartTls(const TlsContext* tls, bool server, int timeout_ms);
  // Calls `op` (an SSL_* call; run under ssl_mu_) until it returns a positive count,
  // waiting on the socket for what OpenSSL asks for in between, until `deadline`. A TLS
  // protocol error is `protocol_error_code`, anything else Unavailable.
  Status CallTls(const std::function<int()>& op, Deadline deadline, const std::string& what,
                 Status::Code protocol_error_code, int* result);

  int fd_;
  std::atomic<bool> closed_{false};
  std::string peer_;
  // Null: plain TCP. OpenSSL allows one call on a session at a time; the socket is
  // non-blocking, so the mutex is held only for the call itself, never while waiting.
  ssl_st* ssl_ = nullptr;
  std::mutex ssl_mu_;
};

class FrameListener {
 public:
  // Listens on host:port (0 = a free port chosen by the kernel).
  static Status Listen(const std::string& host, int port, std::unique_ptr<FrameListener>* out);
  ~FrameListener();
  int port() const { return port_; }
  // Blocks for the next connection; `timeout_ms` 0 = forever.
  Status Accept(std::unique_ptr<FrameChannel>* out, int timeout_ms = 0);

 private:
  FrameListener(int fd, int port) : fd_(fd), port_(port) {}
  int fd_;
  int port_;
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_FRAME_CHANNEL_H_
