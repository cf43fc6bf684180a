// Connection: one client's TCP connection to the shard server. Reads a frame, hands it
// to the RequestHandler, writes the reply, reads the next one. Requests on one
// connection are answered in order; clients open several connections for parallelism.
//
// Lives on one io_context thread (the server's threading model: one io_context per
// thread); all its handlers run there. Kept alive by its own async operations.
#ifndef PEPNET_PS_CONNECTION_H_
#define PEPNET_PS_CONNECTION_H_

#include <atomic>
#include <boost/asio.hpp>
#include <memory>
#include <string>

#include "common/frame.h"
#include "proto/ps.pb.h"

namespace pepnet {

class RequestHandler;
class ConnectionSet;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(boost::asio::ip::tcp::socket socket, RequestHandler* handler, ConnectionSet* owner,
             uint64_t max_frame_bytes);

  void Start();
  // Graceful stop: an idle connection closes now, a busy one after its reply is written.
  void Shutdown();
  // Immediate close.
  void Close();
  const std::string& peer() const { return peer_; }

 private:
  void ReadPrefix();
  void ReadBody();
  void Dispatch();
  void WriteReply(bool close_after);
  // Replies with an error that names the problem, then closes: used when the byte
  // stream cannot be trusted any more.
  void RejectAndClose(const Status& why);
  void DrainAndClose();

  boost::asio::ip::tcp::socket socket_;
  RequestHandler* handler_;
  ConnectionSet* owner_;
  const uint64_t max_frame_bytes_;
  std::string peer_;
  bool idle_ = true;  // waiting for the first byte of a frame
  bool stopping_ = false;

  char prefix_[kFramePrefixBytes];
  FramePrefix frame_;
  std::string header_bytes_;
  PayloadBuffer payload_;
  proto::RequestHeader request_;
  proto::ResponseHeader reply_;
  std::string reply_head_;
  PayloadBuffer reply_payload_;
  PayloadBuffer drain_buffer_;
  uint64_t drained_bytes_ = 0;
  bool draining_ = false;  // refused a frame; reading only to close without a reset
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
