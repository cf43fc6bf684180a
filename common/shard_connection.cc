#include "common/shard_connection.h"

#include <glog/logging.h>

#include <cstring>

namespace pepnet {

namespace asio = boost::asio;
using asio::ip::tcp;

ShardConnection::ShardConnection(asio::io_context& io, uint32_t shard, std::string address,
                                 std::vector<tcp::endpoint> endpoints, int timeout_ms,
                                 int connect_timeout_ms, uint64_t max_frame_bytes,
                                 const Secret* secret, PeerRole role)
    : io_(io),
      shard_(shard),
      address_(std::move(address)),
      endpoints_(std::move(endpoints)),
      timeout_(timeout_ms),
      connect_timeout_(connect_timeout_ms),
      max_frame_bytes_(max_frame_bytes),
      secret_(secret),
      role_(role),
      timer_(io) {}

namespace {
// The server ended the connection: a TCP end, or, under TLS, one without close_notify.
bool Closed(const boost::system::error_code& ec) {
  return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}
}  // namespace

Status ShardConnection::Named(const Status& st) const {
  return Status(st.code(),
                "shard " + std::to_string(shard_) + " (" + address_ + "): " + st.message());
}

Status ShardConnection::Error(const std::string& what) const {
  return Status::Unavailable("shard " + std::to_string(shard_) + " (" + address_ + "): " + what);
}

void ShardConnection::Send(std::shared_ptr<ShardRequest> request) {
  queued_.push_back(std::move(request));
  if (state_ == State::kDisconnected) {
    StartConnect();
  } else {
    WriteNext();
  }
}

void ShardConnection::Close() {
  ++generation_;
  boost::system::error_code ignored;
  if (stream_) stream_->socket().close(ignored);
  CancelTimer();
  state_ = State::kDisconnected;
  writing_ = false;
}

void ShardConnection::Fail(const Status& why) {
  Close();
  std::deque<std::shared_ptr<ShardRequest>> doomed;
  doomed.swap(sent_);
  for (auto& r : queued_) doomed.push_back(std::move(r));
  queued_.clear();
  for (auto& r : doomed) r->Complete(why, nullptr, nullptr);
}

void ShardConnection::OnReceiveError(const boost::system::error_code& ec) {
  if (sent_.empty()) {
    // The server closed a connection with nothing in flight (a restart, a graceful
    // stop): nobody loses anything. Requests not yet written go out on a new one.
    Close();
    if (!queued_.empty()) StartConnect();
    return;
  }
  Fail(Error(Closed(ec) ? "server closed the connection" : "receive failed: " + ec.message()));
}

void ShardConnection::StartConnect() {
  state_ = State::kConnecting;
  handshake_.emplace(secret_, role_);
  // A new stream per connection (a TLS session cannot be reused); the old one lives on in
  // the handlers of its cancelled operations until they have run.
  stream_ = std::make_shared<MaybeTlsStream>(tcp::socket(io_), secret_ ? secret_->tls() : nullptr);
  const uint64_t gen = ++generation_;
  auto self = shared_from_this();
  const uint64_t seq = ++timer_seq_;
  timer_.expires_after(connect_timeout_);
  timer_.async_wait([this, self, gen, seq](const boost::system::error_code& ec) {
    if (ec || gen != generation_ || seq != timer_seq_ || state_ != State::kConnecting) return;
    Fail(Error("connect timed out after " + std::to_string(connect_timeout_.count()) +
               " ms, waiting for " + connect_step_));
  });
  connect_step_ = "the TCP connection";
  // Every resolved address is tried in turn ("localhost" may give ::1 first).
  auto stream = stream_;
  asio::async_connect(
      stream->socket(), endpoints_,
      [this, self, stream, gen](const boost::system::error_code& ec, const tcp::endpoint&) {
        if (gen != generation_) return;
        if (ec) {
          Fail(Error("connect failed: " + ec.message()));
          return;
        }
        boost::system::error_code ignored;
        tcp::socket& socket = stream->socket();
        socket.set_option(tcp::no_delay(true), ignored);
        socket.set_option(asio::socket_base::send_buffer_size(kSocketBufferBytes), ignored);
        socket.set_option(asio::socket_base::receive_buffer_size(kSocketBufferBytes), ignored);
        connect_step_ = stream->tls() ? "the TLS handshake"
                                      : "the server's hello (does the server run TLS while "
                                        "this end does not?)";
        stream->async_handshake(asio::ssl::stream_base::client,
                                [this, self, stream, gen](const boost::system::error_code& ec) {
                                  if (gen != generation_) return;
                                  if (ec) {
                                    // A TLS refusal (another CA, a plain server) is a
                                    // misconfiguration that retrying cannot fix; a connection that
                                    // broke is not.
                                    const std::string what =
                                        "TLS handshake failed: " + MaybeTlsStream::Describe(ec) +
                                        " (every process of a cluster needs the same TLS flags)";
                                    Fail(ec.category() == asio::error::get_ssl_category() &&
                                                 ec != asio::ssl::error::stream_truncated
                                             ? Named(Status::InvalidArgument(what))
                                             : Error(what));
                                    return;
                                  }
                                  connect_step_ = "the server's hello";
                                  ReadServerHello();
                                });
      });
}

void ShardConnection::ReadServerHello() {
  const uint64_t gen = generation_;
  auto self = shared_from_this();
  auto stream = stream_;
  asio::async_read(
      *stream, asio::buffer(hello_),
      [this, self, stream, gen](const boost::system::error_code& ec, size_t) {
        if (gen != generation_) return;
        if (ec) {
          Fail(Error(
              Closed(ec)
                  ? "server closed the connection before its hello (does it run TLS while this end "
                    "does not?)"
                  : "handshake failed: " + ec.message()));
          return;
        }
        Status st = handshake_->Answer(hello_, client_hello_);
        if (!st.ok()) {
          Fail(Named(st));
          return;
        }
        asio::async_write(*stream, asio::buffer(client_hello_),
                          [this, self, stream, gen](const boost::system::error_code& ec, size_t) {
                            if (gen != generation_) return;
                            if (ec) {
                              Fail(Error("handshake failed: " + ec.message()));
                              return;
                            }
                            ReadServerProof();
                          });
      });
}

void ShardConnection::ReadServerProof() {
  const uint64_t gen = generation_;
  auto self = shared_from_this();
  auto stream = stream_;
  asio::async_read(*stream, asio::buffer(proof_),
                   [this, self, stream, gen](const boost::system::error_code& ec, size_t) {
                     if (gen != generation_) return;
                     if (ec) {
                       Fail(Error(Closed(ec) ? "server closed the connection during the handshake "
                                               "(a wrong secret, or too many connections)"
                                             : "handshake failed: " + ec.message()));
                       return;
                     }
                     Status st = handshake_->Verify(proof_);
                     if (!st.ok()) {
                       Fail(Named(st));
                       return;
                     }
                     OnConnected();
                   });
}

void ShardConnection::OnConnected() {
  CancelTimer();
  state_ = State::kConnected;
  // A read stays armed for the life of the connection, so a server closing an idle
  // connection is noticed at once rather than by the next request.
  ReadReply();
  WriteNext();
}

void ShardConnection::CancelTimer() {
  ++timer_seq_;  // a wait already queued for completion is ignored
  timer_.cancel();
}

void ShardConnection::ArmTimer() {
  const uint64_t gen = generation_;
  const uint64_t seq = ++timer_seq_;
  auto self = shared_from_this();
  timer_.expires_after(timeout_);
  timer_.async_wait([this, self, gen, seq](const boost::system::error_code& ec) {
    if (ec || gen != generation_ || seq != timer_seq_ || sent_.empty()) return;
    Fail(Status::DeadlineExceeded("shard " + std::to_string(shard_) + " (" + address_ +
                                  "): no reply within " + std::to_string(timeout_.count()) +
                                  " ms"));
  });
}

void ShardConnection::WriteNext() {
  if (writing_ || queued_.empty() || state_ != State::kConnected) return;
  std::shared_ptr<ShardRequest> request = std::move(queued_.front());
  queued_.pop_front();
  request->header.set_request_id(next_request_id_++);
  std::string header_bytes = request->header.SerializeAsString();
  write_head_.resize(kFramePrefixBytes);
  EncodeFramePrefix(static_cast<uint32_t>(header_bytes.size()),
                    static_cast<uint32_t>(request->payload.size()), &write_head_[0]);
  write_head_ += header_bytes;
  if (sent_.empty()) ArmTimer();
  sent_.push_back(request);
  writing_ = true;
  const uint64_t gen = generation_;
  auto self = shared_from_this();
  auto stream = stream_;
  std::array<asio::const_buffer, 2> buffers = {
      asio::buffer(write_head_), asio::buffer(request->payload.data(), request->payload.size())};
  asio::async_write(
      *stream, buffers,
      [this, self, stream, gen, request](const boost::system::error_code& ec, size_t) {
        if (gen != generation_) return;
        writing_ = false;
        if (ec) {
          // The request is in sent_, so the armed read reports the failure:
          // the server's own reason if it refused the frame and closed, or
          // the broken connection. The reply timer is the backstop.
          return;
        }
        WriteNext();
      });
}

void ShardConnection::ReadReply() {
  const uint64_t gen = generation_;
  auto self = shared_from_this();
  auto stream = stream_;
  asio::async_read(*stream, asio::buffer(prefix_),
                   [this, self, stream, gen](const boost::system::error_code& ec, size_t) {
                     if (gen != generation_) return;
                     if (ec) {
                       OnReceiveError(ec);
                       return;
                     }
                     OnPrefix();
                   });
}

void ShardConnection::OnPrefix() {
  Status st = DecodeFramePrefix(prefix_, max_frame_bytes_, &reply_prefix_);
  if (!st.ok()) {
    Fail(Error("bad reply frame: " + st.ToString()));
    return;
  }
  reply_header_bytes_.resize(reply_prefix_.header_len);
  const uint64_t gen = generation_;
  auto self = shared_from_this();
  auto stream = stream_;
  asio::async_read(*stream, asio::buffer(&reply_header_bytes_[0], reply_header_bytes_.size()),
                   [this, self, stream, gen](const boost::system::error_code& ec, size_t) {
                     if (gen != generation_) return;
                     if (ec) {
                       OnReceiveError(ec);
                       return;
                     }
                     OnHeader();
                   });
}

void ShardConnection::OnHeader() {
  if (!reply_header_.ParseFromString(reply_header_bytes_)) {
    Fail(Error("unparsable reply header"));
    return;
  }
  if (reply_header_.request_id() == 0 && reply_header_.code() != proto::OK) {
    // The server could not read our frame at all and says why; keep its code.
    Fail(Status(static_cast<Status::Code>(reply_header_.code()),
                "shard " + std::to_string(shard_) + " (" + address_ +
                    "): server rejected a frame: " + reply_header_.error()));
    return;
  }
  if (sent_.empty()) {
    Fail(Error("reply for request " + std::to_string(reply_header_.request_id()) +
               " that was never sent"));
    return;
  }
  std::shared_ptr<ShardRequest> request = sent_.front();
  if (reply_header_.request_id() != request->header.request_id()) {
    Fail(Error("reply for request " + std::to_string(reply_header_.request_id()) +
               " while expecting " + std::to_string(request->header.request_id())));
    return;
  }
  const bool ok = reply_header_.code() == proto::OK;
  if (ok && !request->AcceptsReplyBytes(reply_prefix_.payload_len)) {
    Fail(Error("reply payload of " + std::to_string(reply_prefix_.payload_len) +
               " bytes, expected " + std::to_string(request->expected_reply_bytes)));
    return;
  }
  // An error reply's payload (normally empty) must never land in the caller's buffer.
  char* dest;
  if (ok) {
    dest = request->ReplyBuffer(reply_prefix_.payload_len);
  } else {
    error_scratch_.Resize(reply_prefix_.payload_len);
    dest = error_scratch_.data();
  }
  auto finish = [this, request, ok, dest]() {
    sent_.pop_front();
    if (ok) {
      request->Complete(Status::OK(), &reply_header_, dest);
    } else {
      request->Complete(Status(static_cast<Status::Code>(reply_header_.code()),
                               "shard " + std::to_string(shard_) + " (" + address_ +
                                   "): " + reply_header_.error()),
                        &reply_header_, nullptr);
    }
    if (sent_.empty()) {
      CancelTimer();
    } else {
      ArmTimer();
    }
    ReadReply();
  };
  if (reply_prefix_.payload_len == 0) {
    finish();
    return;
  }
  const uint64_t gen = generation_;
  auto self = shared_from_this();
  auto stream = stream_;
  const size_t bytes = reply_prefix_.payload_len;
  if (stream->tls()) {
    // Asio's TLS stream decrypts into the buffer when the operation completes, which can
    // be after Fail() handed the caller's buffer back (a reply timeout): decrypt into a
    // buffer the operation owns, then copy.
    if (!staging_ || staging_.use_count() > 1) staging_ = std::make_shared<PayloadBuffer>();
    staging_->Resize(bytes);
    auto staging = staging_;
    asio::async_read(*stream, asio::buffer(staging->data(), bytes),
                     [this, self, stream, staging, gen, dest, bytes, finish](
                         const boost::system::error_code& ec, size_t) {
                       if (gen != generation_) return;
                       if (ec) {
                         OnReceiveError(ec);
                         return;
                       }
                       std::memcpy(dest, staging->data(), bytes);
                       finish();
                     });
    return;
  }
  asio::async_read(
      *stream, asio::buffer(dest, bytes),
      [this, self, stream, gen, request, finish](const boost::system::error_code& ec, size_t) {
        if (gen != generation_) return;
        if (ec) {
          OnReceiveError(ec);
          return;
        }
        finish();
      });
}

}  // namespace pepnet
