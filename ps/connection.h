// Connection: one client's TCP connection to the shard server. Runs the TLS handshake when
// the server has a TLS identity (common/tls.h), then the authentication handshake
// (common/auth.h), then reads a frame, hands it to the RequestHandler, writes
// the reply, reads the next one. Requests on one connection are answered in order;
// clients open several connections for parallelism.
//
// Every wait has a deadline (docs/security.md, "Resources"): the handshake, the rest of a
// frame once its prefix arrived, the write of a reply, and the silence between frames.
// Frame and reply buffers are charged to a budget shared by every connection.
//
// Lives on one io_context thread (the server's threading model: one io_context per
// thread); all its handlers run there. Kept alive by its own async operations.
#ifndef PEPNET_PS_CONNECTION_H_
#define PEPNET_PS_CONNECTION_H_

#include <atomic>
#include <boost/asio.hpp>
#include <functional>
#include <memory>
#include <string>

#include "common/auth.h"
#include "common/frame.h"
#include "common/tls_stream.h"
#include "proto/ps.pb.h"
#include "ps/request_handler.h"

namespace pepnet {

class Connection;
class ConnectionSet;

// Bytes of frame and reply buffers held by all connections, against a limit.
// Thread-safe.
class BufferBudget {
 public:
  // Frames up to this size may use the last quarter of the budget.
  static constexpr uint64_t kSmallFrameBytes = 1 << 20;

  explicit BufferBudget(uint64_t limit) : limit_(limit) {}
  // Takes `bytes` more, for a frame of `frame_bytes`, if they fit under the limit (three
  // quarters of it for a frame over kSmallFrameBytes).
  bool TryCharge(uint64_t bytes, uint64_t frame_bytes);
  // Adds (or, negative, returns) bytes whatever the limit: buffers that exist already.
  void Adjust(int64_t bytes) { used_.fetch_add(bytes, std::memory_order_relaxed); }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  std::atomic<int64_t> used_{0};
};

// What every connection of a server shares; owned by the server.
struct ConnectionContext {
  RequestHandler* handler = nullptr;
  const Secret* secret = nullptr;
  BufferBudget* budget = nullptr;
  uint64_t max_frame_bytes = kDefaultMaxFrameBytes;
  int handshake_timeout_ms = kDefaultHandshakeTimeoutMs;
  int frame_timeout_ms = 30000;
  int write_timeout_ms = 30000;
  int idle_timeout_ms = 300000;
  // Called on the connection's thread once its handshake succeeded (the server admits it
  // by role, or closes it) and when it closes (`authenticated` tells which it was).
  std::function<bool(Connection*, PeerRole)> on_authenticated;
  std::function<void(Connection*, bool authenticated)> on_closed;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(boost::asio::ip::tcp::socket socket, const ConnectionContext* context,
             ConnectionSet* owner);
  ~Connection();

  void Start();
  // Graceful stop: an idle connection closes now, a busy one after its reply is written.
  void Shutdown();
  // Immediate close.
  void Close();
  const std::string& peer() const { return peer_; }
  const std::string& peer_address() const { return peer_address_; }
  bool authenticated() const { return authenticated_; }

 private:
  void SendHello();
  void ReadClientHello();
  void OnClientHello();
  void ReadPrefix();
  void ReadBody();
  void Dispatch();
  // DENSE_SUM waits for the other workers of its step: the reply comes later, posted
  // back to this connection's thread (the connection reads nothing meanwhile).
  void DispatchDenseSum();
  void FinishDenseSum(const DenseSumResult& result);
  void WriteReply(bool close_after);
  // Replies with an error that names the problem, then closes: used when the byte
  // stream cannot be trusted any more.
  void RejectAndClose(const Status& why);
  void DrainAndClose();
  // One deadline at a time: what the connection waits for now.
  void Deadline(int ms, const char* what);
  void CancelDeadline();
  // Charges the budget for what the buffers hold now.
  void SyncCharge();
  void ReleaseBuffers();

  MaybeTlsStream stream_;
  const ConnectionContext* const context_;
  ConnectionSet* owner_;
  std::string peer_, peer_address_;
  bool idle_ = true;  // waiting for the first byte of a frame (or for the handshake)
  bool stopping_ = false;
  bool closed_ = false;
  bool authenticated_ = false;
  PeerSession session_;

  boost::asio::steady_timer timer_;
  uint64_t timer_seq_ = 0;          // bumps on every arm and cancel, so a stale expiry is ignored
  const char* deadline_what_ = "";  // what the armed deadline waits for, for its log line
  ServerHandshake handshake_;
  char hello_[kServerHelloBytes];
  char client_hello_[kClientHelloBytes];
  char proof_[kServerProofBytes];

  char prefix_[kFramePrefixBytes];
  FramePrefix frame_;
  std::string header_bytes_;
  PayloadBuffer payload_;
  proto::RequestHeader request_;
  proto::ResponseHeader reply_;
  std::string reply_head_;
  PayloadBuffer reply_payload_;
  // A reply payload shared with other connections (a dense sum), sent instead of
  // reply_payload_ while set.
  std::shared_ptr<const PayloadBuffer> shared_reply_;
  PayloadBuffer drain_buffer_;
  uint64_t charged_ = 0;  // bytes of payload_ and reply_payload_ charged to the budget
  uint64_t drained_bytes_ = 0;
  bool draining_ = false;  // refused a frame; reading only to close without a reset
  // A DENSE_SUM waits for its step: payload_ is the dense sum's (borrowed) until then, so
  // it is neither released nor reused.
  bool dense_pending_ = false;
};

// The connections of one io_context thread; only touched on that thread.
class ConnectionSet {
 public:
  // Optional count of live connections across all sets, for shutdown.
  void set_live_counter(std::atomic<size_t>* live) { live_ = live; }
  void Add(std::shared_ptr<Connection> c);
  void Remove(Connection* c);
  void ShutdownAll();
  size_t size() const { return connections_.size(); }

 private:
  std::vector<std::shared_ptr<Connection>> connections_;
  std::atomic<size_t>* live_ = nullptr;
};

}  // namespace pepnet

#endif  // PEPNET_PS_CONNECTION_H_
