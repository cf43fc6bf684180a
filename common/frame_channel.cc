#include "common/frame_channel.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <thread>

#include "common/tls.h"

namespace pepnet {
namespace {

std::string PeerOf(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  char ip[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &addr.sin_addr, ip, sizeof(ip));
  return std::string(ip) + ":" + std::to_string(ntohs(addr.sin_port));
}

// A send blocked this long (a peer that stopped reading) fails instead of hanging.
constexpr int kSendTimeoutSeconds = 120;

void TuneSocket(int fd) {
  const int one = 1, buffer = kSocketBufferBytes;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  timeval send_timeout{kSendTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
}

int MillisecondsLeft(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
  return left > 1 ? static_cast<int>(left) : 1;
}

Status ResolveIpv4(const std::string& host, int port, sockaddr_in* addr) {
  addrinfo hints{}, *result = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &result);
  if (rc != 0 || result == nullptr) {
    return Status::InvalidArgument("cannot resolve " + host + ": " + gai_strerror(rc));
  }
  std::memcpy(addr, result->ai_addr, sizeof(*addr));
  freeaddrinfo(result);
  return Status::OK();
}

}  // namespace

Status FrameChannel::Connect(const std::string& host, int port, int timeout_ms,
                             const Secret& secret, PeerRole role,
                             std::unique_ptr<FrameChannel>* out) {
  sockaddr_in addr{};
  PEPNET_RETURN_IF_ERROR(ResolveIpv4(host, port, &addr));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Status::Unavailable(std::string("socket: ") + strerror(errno));
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      TuneSocket(fd);
      std::unique_ptr<FrameChannel> channel(new FrameChannel(fd));
      // One deadline for both handshakes.
      const auto handshake_deadline = std::chrono::steady_clock::now() +
                                      std::chrono::milliseconds(std::max(
                                          MillisecondsLeft(deadline), kDefaultHandshakeTimeoutMs));
      if (secret.tls() != nullptr) {
        PEPNET_RETURN_IF_ERROR(channel->StartTls(secret.tls(), /*server=*/false,
                                                 MillisecondsLeft(handshake_deadline)));
      }
      PEPNET_RETURN_IF_ERROR(
          channel->ClientHandshake(secret, role, MillisecondsLeft(handshake_deadline)));
      *out = std::move(channel);
      return Status::OK();
    }
    const int err = errno;
    close(fd);
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::Unavailable("cannot connect to " + host + ":" + std::to_string(port) + ": " +
                                 strerror(err));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

FrameChannel::FrameChannel(int fd) : fd_(fd), peer_(PeerOf(fd)) {}

FrameChannel::~FrameChannel() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  close(fd_);
}

Status FrameChannel::StartTls(const TlsContext* tls, bool server, int timeout_ms) {
  ssl_ = SSL_new(tls->native());
  if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) {
    return Status::Internal(TakeTlsErrors("cannot start a TLS session"));
  }
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
  fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
  int ignored;
  return CallTls([this] { return SSL_do_handshake(ssl_); },
                 std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms),
                 "TLS handshake with", Status::kInvalidArgument, &ignored);
}

Status FrameChannel::CallTls(const std::function<int()>& op, Deadline deadline,
                             const std::string& what, Status::Code protocol_error_code,
                             int* result) {
  for (;;) {
    int r, err, sys_errno;
    std::string tls_errors;
    {
      std::lock_guard<std::mutex> lock(ssl_mu_);
      ERR_clear_error();
      errno = 0;
      r = op();
      sys_errno = errno;
      err = r > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_SSL) tls_errors = TakeTlsErrors("protocol error");
    }
    if (r > 0) {
      *result = r;
      return Status::OK();
    }
    short events = 0;
    if (err == SSL_ERROR_WANT_READ) {
      events = POLLIN;
    } else if (err == SSL_ERROR_WANT_WRITE) {
      events = POLLOUT;
    } else if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && sys_errno == 0)) {
      return Status::Unavailable("connection closed by " + peer_);
    } else if (err == SSL_ERROR_SYSCALL) {
      return Status::Unavailable(what + " " + peer_ + ": " + strerror(sys_errno));
    } else {
      return Status(protocol_error_code, what + " " + peer_ + ": TLS: " + tls_errors);
    }
    int wait_ms = -1;
    if (deadline) {
      wait_ms = static_cast<int>(std::max<int64_t>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(*deadline -
                                                                   std::chrono::steady_clock::now())
                 .count()));
    }
    pollfd p{fd_, events, 0};
    const int ready = poll(&p, 1, wait_ms);
    if (ready < 0 && errno != EINTR) {
      return Status::Unavailable(what + " " + peer_ + ": poll: " + strerror(errno));
    }
    if (ready == 0) {
      return Status::DeadlineExceeded(what + " " + peer_ + ": no progress in time");
    }
  }
}

void FrameChannel::Close() {
  if (!closed_.exchange(true)) shutdown(fd_, SHUT_RDWR);
}

void FrameChannel::ShutdownWrite() { shutdown(fd_, SHUT_WR); }

Status FrameChannel::SendAll(const char* data, size_t n) {
  size_t done = 0;
  if (ssl_ != nullptr) {
    while (done < n) {
      const int chunk = static_cast<int>(std::min<size_t>(n - done, INT_MAX));
      int sent = 0;
      // As SO_SNDTIMEO on plain TCP: the limit is on a send that makes no progress.
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::seconds(kSendTimeoutSeconds);
      Status st = CallTls([&] { return SSL_write(ssl_, data + done, chunk); }, deadline, "send to",
                          Status::kUnavailable, &sent);
      if (st.code() == Status::kDeadlineExceeded) {
        return Status::Unavailable("send to " + peer_ + ": the peer has not read for " +
                                   std::to_string(kSendTimeoutSeconds) + " s");
      }
      PEPNET_RETURN_IF_ERROR(st);
      done += static_cast<size_t>(sent);
    }
    return Status::OK();
  }
  while (done < n) {
    const ssize_t sent = send(fd_, data + done, n - done, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) {
      return Status::Unavailable(
          "send to " + peer_ + ": " +
          (errno == EAGAIN || errno == EWOULDBLOCK
               ? "the peer has not read for " + std::to_string(kSendTimeoutSeconds) + " s"
               : std::string(strerror(errno))));
    }
    done += static_cast<size_t>(sent);
  }
  return Status::OK();
}

Status FrameChannel::ClientHandshake(const Secret& secret, PeerRole role, int timeout_ms) {
  pepnet::ClientHandshake handshake(&secret, role);
  char hello[kServerHelloBytes], answer[kClientHelloBytes], proof[kServerProofBytes];
  auto named = [this](const Status& st) {
    return Status(st.code(), "handshake with " + peer_ + ": " + st.message());
  };
  Status st = ReadExactly(hello, sizeof(hello), timeout_ms);
  if (st.ok()) st = handshake.Answer(hello, answer);
  if (st.ok()) st = SendAll(answer, sizeof(answer));
  if (st.ok()) st = ReadExactly(proof, sizeof(proof), timeout_ms);
  if (st.ok()) st = handshake.Verify(proof);
  return st.ok() ? st : named(st);
}

Status FrameChannel::AcceptHandshake(const Secret& secret, int timeout_ms, PeerRole* role) {
  // One deadline for both handshakes.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  if (secret.tls() != nullptr) {
    PEPNET_RETURN_IF_ERROR(StartTls(secret.tls(), /*server=*/true, timeout_ms));
    timeout_ms = MillisecondsLeft(deadline);
  }
  pepnet::ServerHandshake handshake(&secret);
  char hello[kServerHelloBytes], answer[kClientHelloBytes], proof[kServerProofBytes];
  handshake.Hello(hello);
  PEPNET_RETURN_IF_ERROR(SendAll(hello, sizeof(hello)));
  PEPNET_RETURN_IF_ERROR(ReadExactly(answer, sizeof(answer), timeout_ms));
  Status st = handshake.Check(answer, role, proof);
  if (st.code() != Status::kInvalidArgument) SendAll(proof, sizeof(proof));
  return st;
}

Status FrameChannel::Send(const std::string& header, const void* payload, size_t payload_len) {
  if (header.size() > kMaxHeaderBytes || payload_len > UINT32_MAX) {
    return Status::InvalidArgument("frame to " + peer_ + " too large");
  }
  char prefix[kFramePrefixBytes];
  EncodeFramePrefix(static_cast<uint32_t>(header.size()), static_cast<uint32_t>(payload_len),
                    prefix);
  PEPNET_RETURN_IF_ERROR(SendAll(prefix, sizeof(prefix)));
  PEPNET_RETURN_IF_ERROR(SendAll(header.data(), header.size()));
  return SendAll(static_cast<const char*>(payload), payload_len);
}

Status FrameChannel::ReadExactly(char* out, size_t n, int timeout_ms) {
  // The timeout bounds the whole read, not the wait for each byte: a peer that trickles
  // bytes holds the channel no longer than one that sends nothing.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  size_t done = 0;
  if (ssl_ != nullptr) {
    while (done < n) {
      const int chunk = static_cast<int>(std::min<size_t>(n - done, INT_MAX));
      int got = 0;
      Status st = CallTls([&] { return SSL_read(ssl_, out + done, chunk); },
                          timeout_ms > 0 ? Deadline(deadline) : Deadline(), "receive from",
                          Status::kUnavailable, &got);
      if (st.code() == Status::kDeadlineExceeded) {
        return Status::DeadlineExceeded("no whole message from " + peer_ + " in " +
                                        std::to_string(timeout_ms) + " ms");
      }
      PEPNET_RETURN_IF_ERROR(st);
      done += static_cast<size_t>(got);
    }
    return Status::OK();
  }
  while (done < n) {
    int wait_ms = -1;
    if (timeout_ms > 0) {
      wait_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     deadline - std::chrono::steady_clock::now())
                                     .count());
      wait_ms = std::max(wait_ms, 0);
    }
    pollfd p{fd_, POLLIN, 0};
    const int ready = poll(&p, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      return Status::DeadlineExceeded("no whole message from " + peer_ + " in " +
                                      std::to_string(timeout_ms) + " ms");
    }
    const ssize_t got = recv(fd_, out + done, n - done, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got == 0) return Status::Unavailable("connection closed by " + peer_);
    if (got < 0) return Status::Unavailable("receive from " + peer_ + ": " + strerror(errno));
    done += static_cast<size_t>(got);
  }
  return Status::OK();
}

Status FrameChannel::Receive(std::string* header, PayloadBuffer* payload, int timeout_ms,
                             uint64_t max_frame_bytes) {
  const auto start = std::chrono::steady_clock::now();
  // What is left of `timeout_ms` for the next part of the frame (at least 1 ms, so that
  // the part's read reports the deadline); 0 stays "no timeout".
  auto left = [&] {
    if (timeout_ms <= 0) return 0;
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - start)
                           .count();
    return static_cast<int>(std::max<int64_t>(1, timeout_ms - spent));
  };
  char prefix[kFramePrefixBytes];
  PEPNET_RETURN_IF_ERROR(ReadExactly(prefix, sizeof(prefix), timeout_ms));
  FramePrefix fp;
  Status st = DecodeFramePrefix(prefix, max_frame_bytes, &fp);
  if (!st.ok()) return Status(st.code(), "frame from " + peer_ + ": " + st.message());
  header->resize(fp.header_len);
  PEPNET_RETURN_IF_ERROR(ReadExactly(header->data(), fp.header_len, left()));
  payload->Resize(fp.payload_len);
  return ReadExactly(payload->data(), fp.payload_len, left());
}

Status FrameListener::Listen(const std::string& host, int port,
                             std::unique_ptr<FrameListener>* out) {
  sockaddr_in addr{};
  PEPNET_RETURN_IF_ERROR(ResolveIpv4(host, port, &addr));
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Unavailable(std::string("socket: ") + strerror(errno));
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0) {
    const int err = errno;
    close(fd);
    return Status::Unavailable("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                               strerror(err));
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  out->reset(new FrameListener(fd, ntohs(addr.sin_port)));
  return Status::OK();
}

FrameListener::~FrameListener() { close(fd_); }

Status FrameListener::Accept(std::unique_ptr<FrameChannel>* out, int timeout_ms) {
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    const int ready = poll(&p, 1, timeout_ms > 0 ? timeout_ms : -1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) return Status::DeadlineExceeded("no connection in time");
    const int fd = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0 && (errno == EINTR || errno == ECONNABORTED)) continue;
    if (fd < 0) return Status::Unavailable(std::string("accept: ") + strerror(errno));
    TuneSocket(fd);
    out->reset(new FrameChannel(fd));
    return Status::OK();
  }
}

}  // namespace pepnet
