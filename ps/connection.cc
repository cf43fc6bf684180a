#include "ps/connection.h"

#include <glog/logging.h>

#include <algorithm>
#include <new>

#include "ps/request_handler.h"

namespace pepnet {

namespace asio = boost::asio;

namespace {
// Per-connection buffers above this size are freed after use instead of kept.
constexpr size_t kKeepBufferBytes = 64 << 20;
// How much a peer may still send after its frame was refused before we just close.
constexpr uint64_t kMaxDrainBytes = 512ull << 20;
}  // namespace

Connection::Connection(asio::ip::tcp::socket socket, RequestHandler* handler, ConnectionSet* owner,
                       uint64_t max_frame_bytes)
    : socket_(std::move(socket)),
      handler_(handler),
      owner_(owner),
      max_frame_bytes_(max_frame_bytes) {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  peer_ = ec ? "unknown peer" : ep.address().to_string() + ":" + std::to_string(ep.port());
}

void Connection::Start() {
  boost::system::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  // A pull reply is a few MB: with room for it in the kernel it goes out in one
  // sendmsg instead of a dozen wake-ups of both sides.
  socket_.set_option(asio::socket_base::send_buffer_size(kSocketBufferBytes), ignored);
  socket_.set_option(asio::socket_base::receive_buffer_size(kSocketBufferBytes), ignored);
  ReadPrefix();
}

void Connection::Shutdown() {
  stopping_ = true;
  if (idle_ || draining_) Close();
}

void Connection::Close() {
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  owner_->Remove(this);
}

void Connection::ReadPrefix() {
  idle_ = true;
  if (stopping_) {
    Close();
    return;
  }
  auto self = shared_from_this();
  asio::async_read(socket_, asio::buffer(prefix_),
                   [this, self](const boost::system::error_code& ec, size_t got) {
                     if (ec) {
                       if (ec == asio::error::operation_aborted) return;
                       if (got > 0) {
                         LOG(WARNING) << "truncated frame from " << peer_ << ": got " << got
                                      << " of " << kFramePrefixBytes << " prefix bytes";
                       }
                       Close();
                       return;
                     }
                     idle_ = false;
                     Status st = DecodeFramePrefix(prefix_, max_frame_bytes_, &frame_);
                     if (!st.ok()) {
                       RejectAndClose(st);
                       return;
                     }
                     ReadBody();
                   });
}

void Connection::ReadBody() {
  try {
    header_bytes_.resize(frame_.header_len);
    payload_.Resize(frame_.payload_len);
  } catch (const std::bad_alloc&) {
    RejectAndClose(Status::ResourceExhausted(
        "cannot allocate " + std::to_string(frame_.payload_len) + " bytes for a frame"));
    return;
  }
  std::array<asio::mutable_buffer, 2> buffers = {
      asio::buffer(&header_bytes_[0], header_bytes_.size()),
      asio::buffer(payload_.data(), payload_.size())};
  auto self = shared_from_this();
  asio::async_read(socket_, buffers, [this, self](const boost::system::error_code& ec, size_t got) {
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      LOG(WARNING) << "truncated frame from " << peer_ << ": got " << got << " of "
                   << uint64_t{frame_.header_len} + frame_.payload_len << " header+payload bytes ("
                   << ec.message() << ")";
      Close();
      return;
    }
    Dispatch();
  });
}

void Connection::Dispatch() {
  if (!request_.ParseFromString(header_bytes_)) {
    // Framing is intact, so the connection can go on after the error reply.
    Status st = Status::InvalidArgument("unparsable request header");
    LOG(WARNING) << "request from " << peer_ << ": " << st.ToString();
    handler_->counters().bad_requests.fetch_add(1, std::memory_order_relaxed);
    reply_.Clear();
    reply_.set_code(proto::INVALID_ARGUMENT);
    reply_.set_error(st.message());
    reply_payload_.Resize(0);
    WriteReply(false);
    return;
  }
  Status st;
  try {
    st = handler_->Handle(request_, payload_.data(), payload_.size(), &reply_, &reply_payload_);
  } catch (const std::bad_alloc&) {
    // Out of memory for this request: refuse it, keep the process serving others.
    payload_.Release();
    reply_payload_.Release();
    RejectAndClose(Status::ResourceExhausted("out of memory handling the request"));
    return;
  }
  if (!st.ok()) LOG(WARNING) << "request from " << peer_ << ": " << st.ToString();
  // A big request's buffer is not worth keeping for an idle connection.
  if (payload_.capacity_bytes() > kKeepBufferBytes) payload_.Release();
  WriteReply(false);
}

void Connection::RejectAndClose(const Status& why) {
  LOG(WARNING) << "bad frame from " << peer_ << ": " << why.ToString() << "; closing";
  handler_->counters().bad_requests.fetch_add(1, std::memory_order_relaxed);
  reply_.Clear();
  reply_.set_code(static_cast<proto::StatusCode>(why.code()));
  reply_.set_error(why.message());
  reply_payload_.Resize(0);
  WriteReply(true);
}

void Connection::WriteReply(bool close_after) {
  const std::string header = reply_.SerializeAsString();
  reply_head_.resize(kFramePrefixBytes);
  EncodeFramePrefix(static_cast<uint32_t>(header.size()),
                    static_cast<uint32_t>(reply_payload_.size()), &reply_head_[0]);
  reply_head_ += header;
  std::array<asio::const_buffer, 2> buffers = {
      asio::buffer(reply_head_), asio::buffer(reply_payload_.data(), reply_payload_.size())};
  auto self = shared_from_this();
  asio::async_write(socket_, buffers,
                    [this, self, close_after](const boost::system::error_code& ec, size_t) {
                      if (ec == asio::error::operation_aborted) return;
                      if (ec) {
                        Close();
                        return;
                      }
                      if (close_after) {
                        DrainAndClose();
                        return;
                      }
                      if (reply_payload_.capacity_bytes() > kKeepBufferBytes) {
                        reply_payload_.Release();
                      }
                      ReadPrefix();
                    });
}

void Connection::DrainAndClose() {
  // Closing with unread input would make the kernel send a reset, which can destroy
  // the error reply before the peer reads it. Half-close, then swallow what the peer
  // still sends (up to a bound) until it closes too.
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  draining_ = true;
  if (stopping_ || drained_bytes_ > kMaxDrainBytes) {
    Close();
    return;
  }
  drain_buffer_.Resize(64 << 10);
  auto self = shared_from_this();
  socket_.async_read_some(asio::buffer(drain_buffer_.data(), drain_buffer_.size()),
                          [this, self](const boost::system::error_code& ec, size_t got) {
                            drained_bytes_ += got;
                            if (ec) {
                              if (ec != asio::error::operation_aborted) Close();
                              return;
                            }
                            DrainAndClose();
                          });
}

void ConnectionSet::Add(std::shared_ptr<Connection> c) {
  connections_.push_back(std::move(c));
  if (live_) live_->fetch_add(1);
}

void ConnectionSet::Remove(Connection* c) {
  auto it = std::find_if(connections_.begin(), connections_.end(),
                         [c](const std::shared_ptr<Connection>& p) { return p.get() == c; });
  if (it != connections_.end()) {
    connections_.erase(it);
    if (live_) live_->fetch_sub(1);
  }
}

void ConnectionSet::ShutdownAll() {
  // Shutdown may remove entries; iterate over a copy.
  auto copy = connections_;
  for (auto& c : copy) c->Shutdown();
}

}  // namespace pepnet
