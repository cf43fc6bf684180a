// FrameChannel: a blocking, framed TCP connection (the frame layout of common/frame.h)
// for control traffic that is naturally request/reply and low in count: the workers'
// conversation with the pass coordinator. The data path to the shard servers stays on
// the asynchronous client.
//
// A channel is used by one thread at a time, except Close(), which may be called from
// any thread to unblock a Receive. FrameListener accepts channels.
#ifndef PEPNET_COMMON_FRAME_CHANNEL_H_
#define PEPNET_COMMON_FRAME_CHANNEL_H_

#include <atomic>
#include <memory>
#include <string>

#include "common/auth.h"
#include "common/frame.h"
#include "common/status.h"

namespace pepnet {

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
  Status ReadExactly(char* out, size_t n, int timeout_ms);
  Status SendAll(const char* data, size_t n);
  Status ClientHandshake(const Secret& secret, PeerRole role, int timeout_ms);

  int fd_;
  std::atomic<bool> closed_{false};
  std::string peer_;
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
