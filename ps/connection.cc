#include "ps/connection.h"

#include <glog/logging.h>

#include <algorithm>
#include <new>

namespace pepnet {

namespace asio = boost::asio;

namespace {
// Per-connection buffers above this size are freed after use instead of kept; so are all
// of them once the budget is half spent.
constexpr size_t kKeepBufferBytes = 64 << 20;
// How much a peer may still send after its frame was refused before we just close.
constexpr uint64_t kMaxDrainBytes = 512ull << 20;
}  // namespace

bool BufferBudget::TryCharge(uint64_t bytes, uint64_t frame_bytes) {
  // Big frames may fill three quarters: the rest stays for the small requests of honest
  // clients while stalled big ones wait for their deadline.
  const uint64_t limit = frame_bytes > kSmallFrameBytes ? limit_ / 4 * 3 : limit_;
  int64_t used = used_.load(std::memory_order_relaxed);
  do {
    if (static_cast<uint64_t>(used) + bytes > limit) return false;
  } while (!used_.compare_exchange_weak(used, used + static_cast<int64_t>(bytes),
                                        std::memory_order_relaxed));
  return true;
}

Connection::Connection(asio::ip::tcp::socket socket, const ConnectionContext* context,
                       ConnectionSet* owner)
    : stream_(std::move(socket), context->secret->tls()),
      context_(context),
      owner_(owner),
      timer_(stream_.get_executor()),
      handshake_(context->secret) {
  boost::system::error_code ec;
  auto ep = stream_.socket().remote_endpoint(ec);
  peer_address_ = ec ? "unknown peer" : ep.address().to_string();
  peer_ = ec ? peer_address_ : peer_address_ + ":" + std::to_string(ep.port());
  session_.peer = peer_;
}

Connection::~Connection() { context_->budget->Adjust(-static_cast<int64_t>(charged_)); }

void Connection::Start() {
  boost::system::error_code ignored;
  asio::ip::tcp::socket& socket = stream_.socket();
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  // A pull reply is a few MB: with room for it in the kernel it goes out in one
  // sendmsg instead of a dozen wake-ups of both sides.
  socket.set_option(asio::socket_base::send_buffer_size(kSocketBufferBytes), ignored);
  socket.set_option(asio::socket_base::receive_buffer_size(kSocketBufferBytes), ignored);
  // One deadline covers the TLS handshake and the secret's.
  Deadline(context_->handshake_timeout_ms, stream_.tls() ? "the TLS handshake" : "the handshake");
  auto self = shared_from_this();
  stream_.async_handshake(
      asio::ssl::stream_base::server, [this, self](const boost::system::error_code& ec) {
        if (ec == asio::error::operation_aborted || closed_) return;
        if (ec) {
          LOG(WARNING) << "refusing " << peer_
                       << " at the TLS handshake: " << MaybeTlsStream::Describe(ec)
                       << (ec == asio::ssl::error::stream_truncated
                               ? " (the peer left: does it run without TLS?)"
                               : "");
          context_->handler->counters().auth_failures.fetch_add(1, std::memory_order_relaxed);
          Close();
          return;
        }
        deadline_what_ = "the handshake";  // the same deadline goes on
        SendHello();
      });
}

void Connection::SendHello() {
  handshake_.Hello(hello_);
  auto self = shared_from_this();
  asio::async_write(stream_, asio::buffer(hello_),
                    [this, self](const boost::system::error_code& ec, size_t) {
                      // Under TLS an operation may complete after Close(): nothing to do.
                      if (closed_) return;
                      if (ec) {
                        if (ec != asio::error::operation_aborted) Close();
                        return;
                      }
                      ReadClientHello();
                    });
}

void Connection::ReadClientHello() {
  auto self = shared_from_this();
  asio::async_read(stream_, asio::buffer(client_hello_),
                   [this, self](const boost::system::error_code& ec, size_t) {
                     if (closed_) return;
                     if (ec) {
                       if (ec != asio::error::operation_aborted) Close();
                       return;
                     }
                     OnClientHello();
                   });
}

void Connection::OnClientHello() {
  PeerRole role = PeerRole::kTool;
  Status st = handshake_.Check(client_hello_, &role, proof_);
  if (st.ok() && context_->on_authenticated && !context_->on_authenticated(this, role)) {
    st = Status::ResourceExhausted("no room for another " + std::string(RoleName(role)) +
                                   " connection");
    ServerHandshake::RefuseBusy(proof_);
  }
  if (!st.ok()) {
    LOG(WARNING) << "refusing " << peer_ << " at the handshake: " << st.message();
    // A peer that proved the secret but found no room is not an authentication failure.
    if (st.code() != Status::kResourceExhausted) {
      context_->handler->counters().auth_failures.fetch_add(1, std::memory_order_relaxed);
    }
  } else {
    authenticated_ = true;
    session_.role = role;
  }
  auto self = shared_from_this();
  asio::async_write(stream_, asio::buffer(proof_),
                    [this, self](const boost::system::error_code& ec, size_t) {
                      if (closed_) return;
                      if (ec == asio::error::operation_aborted) return;
                      if (ec || !authenticated_) {
                        Close();
                        return;
                      }
                      ReadPrefix();
                    });
}

void Connection::Deadline(int ms, const char* what) {
  const uint64_t seq = ++timer_seq_;
  deadline_what_ = what;
  auto self = shared_from_this();
  timer_.expires_after(std::chrono::milliseconds(ms));
  timer_.async_wait([this, self, seq, ms](const boost::system::error_code& ec) {
    if (ec || seq != timer_seq_ || closed_) return;
    // Closing cancels the read or write that waits.
    if (!idle_ || !authenticated_) {
      LOG(WARNING) << "closing " << peer_ << ": " << deadline_what_ << " took over " << ms << " ms";
      context_->handler->counters().timeouts.fetch_add(1, std::memory_order_relaxed);
    }
    Close();
  });
}

void Connection::CancelDeadline() {
  ++timer_seq_;
  boost::system::error_code ignored;
  timer_.cancel();
}

void Connection::Shutdown() {
  stopping_ = true;
  if (idle_ || draining_) Close();
}

void Connection::Close() {
  if (closed_) return;
  closed_ = true;
  CancelDeadline();
  boost::system::error_code ignored;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  stream_.socket().close(ignored);
  // Asio's TLS stream decrypts into a read's buffer, and encrypts from a write's, in the
  // operation's completion, which may still run after the socket closed: under TLS the
  // buffers live until the connection does (the destructor returns their budget).
  // A waiting dense sum still reads payload_: the destructor frees it then.
  if (!stream_.tls() && !dense_pending_) ReleaseBuffers();
  if (context_->on_closed) context_->on_closed(this, authenticated_);
  owner_->Remove(this);
}

void Connection::SyncCharge() {
  const uint64_t held =
      header_bytes_.capacity() + payload_.capacity_bytes() + reply_payload_.capacity_bytes();
  context_->budget->Adjust(static_cast<int64_t>(held) - static_cast<int64_t>(charged_));
  charged_ = held;
}

void Connection::ReleaseBuffers() {
  std::string().swap(header_bytes_);
  payload_.Release();
  reply_payload_.Release();
  SyncCharge();
}

void Connection::ReadPrefix() {
  idle_ = true;
  if (stopping_) {
    Close();
    return;
  }
  // Nothing at all for this long: the client is gone or does not need the connection.
  Deadline(context_->idle_timeout_ms, "waiting for a request");
  auto self = shared_from_this();
  asio::async_read(stream_, asio::buffer(prefix_),
                   [this, self](const boost::system::error_code& ec, size_t got) {
                     if (closed_) return;
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
                     Status st = DecodeFramePrefix(prefix_, context_->max_frame_bytes, &frame_);
                     if (!st.ok()) {
                       RejectAndClose(st);
                       return;
                     }
                     ReadBody();
                   });
}

void Connection::ReadBody() {
  // Headers count too: up to kMaxHeaderBytes each, on every connection.
  const uint64_t need = uint64_t{frame_.header_len} + frame_.payload_len;
  const uint64_t have = header_bytes_.capacity() + payload_.capacity_bytes();
  if (need > have && !context_->budget->TryCharge(need - have, need)) {
    // Unavailable: a transient refusal the client may retry, like a busy handshake.
    RejectAndClose(Status::Unavailable(
        "the server's request buffers are full (" + std::to_string(context_->budget->used()) +
        " of " + std::to_string(context_->budget->limit()) + " bytes): a frame of " +
        std::to_string(need) + " bytes must wait; retry"));
    return;
  }
  try {
    header_bytes_.resize(frame_.header_len);
    payload_.Resize(frame_.payload_len);
  } catch (const std::bad_alloc&) {
    if (need > have) context_->budget->Adjust(-static_cast<int64_t>(need - have));
    RejectAndClose(Status::ResourceExhausted(
        "cannot allocate " + std::to_string(frame_.payload_len) + " bytes for a frame"));
    return;
  }
  if (need > have) charged_ += need - have;
  SyncCharge();
  // The rest of the frame must follow its prefix soon: a peer that announces a frame and
  // stalls holds its buffer only this long.
  Deadline(context_->frame_timeout_ms, "reading a frame");
  std::array<asio::mutable_buffer, 2> buffers = {
      asio::buffer(&header_bytes_[0], header_bytes_.size()),
      asio::buffer(payload_.data(), payload_.size())};
  auto self = shared_from_this();
  asio::async_read(stream_, buffers, [this, self](const boost::system::error_code& ec, size_t got) {
    if (closed_) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      LOG(WARNING) << "truncated frame from " << peer_ << ": got " << got << " of "
                   << uint64_t{frame_.header_len} + frame_.payload_len << " header+payload bytes ("
                   << ec.message() << ")";
      Close();
      return;
    }
    CancelDeadline();
    Dispatch();
  });
}

void Connection::Dispatch() {
  RequestHandler* handler = context_->handler;
  if (!request_.ParseFromString(header_bytes_)) {
    // Framing is intact, so the connection can go on after the error reply.
    Status st = Status::InvalidArgument("unparsable request header");
    LOG(WARNING) << "request from " << peer_ << ": " << st.ToString();
    handler->counters().bad_requests.fetch_add(1, std::memory_order_relaxed);
    reply_.Clear();
    reply_.set_code(proto::INVALID_ARGUMENT);
    reply_.set_error(st.message());
    reply_payload_.Resize(0);
    WriteReply(false);
    return;
  }
  if (request_.type() == proto::DENSE_SUM) {
    DispatchDenseSum();
    return;
  }
  Status st;
  try {
    st = handler->Handle(session_, request_, payload_.data(), payload_.size(), &reply_,
                         &reply_payload_);
  } catch (const std::bad_alloc&) {
    // Out of memory for this request: refuse it, keep the process serving others.
    ReleaseBuffers();
    RejectAndClose(Status::ResourceExhausted("out of memory handling the request"));
    return;
  }
  if (!st.ok()) LOG(WARNING) << "request from " << peer_ << ": " << st.ToString();
  // A big request's buffer is not worth keeping for an idle connection.
  if (payload_.capacity_bytes() > kKeepBufferBytes) payload_.Release();
  SyncCharge();
  WriteReply(false);
}

void Connection::DispatchDenseSum() {
  auto self = shared_from_this();
  auto executor = stream_.get_executor();
  dense_pending_ = true;
  try {
    context_->handler->HandleDenseSum(
        session_, request_, &payload_, [self, executor](DenseSumResult result) {
          asio::post(executor,
                     [self, result = std::move(result)] { self->FinishDenseSum(result); });
        });
  } catch (const std::bad_alloc&) {
    // Before the slice was added (the sum's own allocation fails the step instead).
    dense_pending_ = false;
    RejectAndClose(Status::ResourceExhausted("out of memory handling the request"));
  }
}

void Connection::FinishDenseSum(const DenseSumResult& result) {
  dense_pending_ = false;
  if (closed_) return;  // the destructor gives the buffers back
  reply_.Clear();
  reply_.set_request_id(request_.request_id());
  reply_payload_.Resize(0);
  if (!result.status.ok()) {
    LOG(WARNING) << "request from " << peer_ << ": " << result.status.ToString();
    reply_.set_code(static_cast<proto::StatusCode>(result.status.code()));
    reply_.set_error(result.status.message());
  } else {
    reply_.set_dense_workers(result.workers_with_data);
    if (result.sum) {
      reply_.set_num_values(result.sum->size() / 4);
      shared_reply_ = result.sum;
    }
  }
  // A big request's buffer is not worth keeping for an idle connection.
  if (payload_.capacity_bytes() > kKeepBufferBytes) payload_.Release();
  SyncCharge();
  WriteReply(false);
}

void Connection::RejectAndClose(const Status& why) {
  LOG(WARNING) << "bad frame from " << peer_ << ": " << why.ToString() << "; closing";
  context_->handler->counters().bad_requests.fetch_add(1, std::memory_order_relaxed);
  reply_.Clear();
  reply_.set_code(static_cast<proto::StatusCode>(why.code()));
  reply_.set_error(why.message());
  reply_payload_.Resize(0);
  WriteReply(true);
}

void Connection::WriteReply(bool close_after) {
  const std::string header = reply_.SerializeAsString();
  reply_head_.resize(kFramePrefixBytes);
  EncodeFramePrefix(
      static_cast<uint32_t>(header.size()),
      static_cast<uint32_t>(shared_reply_ ? shared_reply_->size() : reply_payload_.size()),
      &reply_head_[0]);
  reply_head_ += header;
  const PayloadBuffer& body = shared_reply_ ? *shared_reply_ : reply_payload_;
  std::array<asio::const_buffer, 2> buffers = {asio::buffer(reply_head_),
                                               asio::buffer(body.data(), body.size())};
  // A client that stops reading its replies holds the reply only this long.
  Deadline(context_->write_timeout_ms, "writing a reply");
  auto self = shared_from_this();
  asio::async_write(stream_, buffers,
                    [this, self, close_after](const boost::system::error_code& ec, size_t) {
                      // The write is over, whatever its outcome: the shared sum is not
                      // read any more.
                      shared_reply_.reset();
                      if (closed_) return;
                      if (ec == asio::error::operation_aborted) return;
                      if (ec) {
                        Close();
                        return;
                      }
                      CancelDeadline();
                      if (close_after) {
                        DrainAndClose();
                        return;
                      }
                      if (reply_payload_.capacity_bytes() > kKeepBufferBytes ||
                          context_->budget->used() > context_->budget->limit() / 2) {
                        ReleaseBuffers();
                      }
                      ReadPrefix();
                    });
}

void Connection::DrainAndClose() {
  // Closing with unread input would make the kernel send a reset, which can destroy
  // the error reply before the peer reads it. Half-close, then swallow what the peer
  // still sends (up to a bound, for as long as a frame may take) until it closes too.
  // Under TLS this ends the TCP stream without a close_notify: the peer has its reply and
  // reads the end as the connection closing.
  boost::system::error_code ignored;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  if (!draining_) {
    draining_ = true;
    ReleaseBuffers();
    Deadline(context_->frame_timeout_ms, "draining a refused frame");
  }
  if (stopping_ || drained_bytes_ > kMaxDrainBytes) {
    Close();
    return;
  }
  drain_buffer_.Resize(64 << 10);
  auto self = shared_from_this();
  // Raw bytes from the TCP layer: what they say no longer matters.
  stream_.socket().async_read_some(asio::buffer(drain_buffer_.data(), drain_buffer_.size()),
                                   [this, self](const boost::system::error_code& ec, size_t got) {
                                     if (closed_) return;
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
