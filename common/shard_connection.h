// ShardConnection: one client TCP connection to one shard server, with pipelined
// requests. Internal to the client library (it pulls in Asio).
//
// Every method runs on the owning io_context's single thread; nothing here locks.
#ifndef PEPNET_COMMON_SHARD_CONNECTION_H_
#define PEPNET_COMMON_SHARD_CONNECTION_H_

#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/auth.h"
#include "common/frame.h"
#include "common/status.h"
#include "common/tls_stream.h"
#include "proto/ps.pb.h"

namespace pepnet {

// One request to one shard and what to do with its reply.
class ShardRequest {
 public:
  virtual ~ShardRequest() = default;
  // The frame to send; request_id in it is set by the connection.
  proto::RequestHeader header;
  PayloadBuffer payload;
  // Bytes of reply payload the request expects (0 for all but PULL and DENSE_SUM).
  uint64_t expected_reply_bytes = 0;
  // Whether an OK reply may carry `bytes` of payload.
  virtual bool AcceptsReplyBytes(uint64_t bytes) const { return bytes == expected_reply_bytes; }
  // Where to read the reply payload; default: `reply_scratch`.
  virtual char* ReplyBuffer(size_t bytes) {
    reply_scratch.Resize(bytes);
    return reply_scratch.data();
  }
  // Called exactly once. On OK, `reply` and `payload` hold the answer.
  virtual void Complete(const Status& status, const proto::ResponseHeader* reply,
                        const char* payload) = 0;

 protected:
  PayloadBuffer reply_scratch;
};

class ShardConnection : public std::enable_shared_from_this<ShardConnection> {
 public:
  ShardConnection(boost::asio::io_context& io, uint32_t shard, std::string address,
                  std::vector<boost::asio::ip::tcp::endpoint> endpoints, int timeout_ms,
                  int connect_timeout_ms, uint64_t max_frame_bytes, const Secret* secret,
                  PeerRole role);

  // Queues the request; connects first if needed.
  void Send(std::shared_ptr<ShardRequest> request);
  // Fails everything queued or in flight with `why` and closes the socket.
  void Fail(const Status& why);
  size_t in_flight() const { return queued_.size() + sent_.size(); }

 private:
  void StartConnect();
  // After the TCP connect: TLS when the secret carries it, then the handshake of
  // common/auth.h, within the connect timeout.
  void ReadServerHello();
  void ReadServerProof();
  void OnConnected();
  // Closes the socket; stale handlers see the generation change and return.
  void Close();
  void OnReceiveError(const boost::system::error_code& ec);
  void CancelTimer();
  void WriteNext();
  void ReadReply();
  void OnPrefix();
  void OnHeader();
  void ArmTimer();
  Status Error(const std::string& what) const;  // Unavailable, naming the shard
  Status Named(const Status& st) const;         // st's code, naming the shard

  boost::asio::io_context& io_;
  const uint32_t shard_;
  const std::string address_;
  const std::vector<boost::asio::ip::tcp::endpoint> endpoints_;
  const std::chrono::milliseconds timeout_;
  const std::chrono::milliseconds connect_timeout_;
  const uint64_t max_frame_bytes_;
  const Secret* const secret_;
  const PeerRole role_;
  // A new one (new nonce) for every connection, so no proof is ever replayed.
  std::optional<ClientHandshake> handshake_;
  char hello_[kServerHelloBytes];
  char client_hello_[kClientHelloBytes];
  char proof_[kServerProofBytes];

  // TLS or plain, as the secret says; replaced on every connect. Handlers hold the stream
  // they run on, so a reconnect never frees one under a pending operation.
  std::shared_ptr<MaybeTlsStream> stream_;
  boost::asio::steady_timer timer_;
  enum class State { kDisconnected, kConnecting, kConnected } state_ = State::kDisconnected;
  uint64_t next_request_id_ = 1;
  // Not yet written, and written but not yet answered (replies come back in order).
  std::deque<std::shared_ptr<ShardRequest>> queued_;
  std::deque<std::shared_ptr<ShardRequest>> sent_;
  bool writing_ = false;
  uint64_t timer_seq_ = 0;  // bumps on every arm/cancel, so a stale expiry is ignored
  std::string write_head_;
  char prefix_[kFramePrefixBytes];
  FramePrefix reply_prefix_;
  std::string reply_header_bytes_;
  proto::ResponseHeader reply_header_;
  PayloadBuffer error_scratch_;
  // Under TLS, where reply payloads are decrypted before they are copied to the caller;
  // shared with the read in flight, replaced when a stale one still holds it.
  std::shared_ptr<PayloadBuffer> staging_;
  uint64_t generation_ = 0;        // bumps on every close, so stale handlers can tell
  const char* connect_step_ = "";  // what a connect that times out was waiting for
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_SHARD_CONNECTION_H_
