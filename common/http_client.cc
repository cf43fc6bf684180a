#include "common/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace pepnet {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The value of header `name` (lower case) in `head`, or "".
std::string HeaderValue(const std::string& head, const std::string& name) {
  size_t at = 0;
  while ((at = head.find("\r\n", at)) != std::string::npos) {
    at += 2;
    const size_t colon = head.find(':', at);
    const size_t end = std::min(head.find("\r\n", at), head.size());
    if (colon == std::string::npos || colon > end) continue;
    std::string key = head.substr(at, colon - at);
    std::transform(key.begin(), key.end(), key.begin(), ::tolower);
    if (key != name) continue;
    size_t v = colon + 1;
    while (v < end && head[v] == ' ') ++v;
    return head.substr(v, end - v);
  }
  return "";
}

}  // namespace

HttpClient::HttpClient(uint16_t port, int timeout_ms) : port_(port), timeout_ms_(timeout_ms) {}

HttpClient::~HttpClient() { Close(); }

void HttpClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  buffer_.clear();
}

Status HttpClient::Connect() {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Status::Unavailable(std::string("socket: ") + strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const std::string why = strerror(errno);
    Close();
    return Status::Unavailable("127.0.0.1:" + std::to_string(port_) + ": " + why);
  }
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return Status::OK();
}

Status HttpClient::Fill(size_t n, const char* what, bool* closed) {
  *closed = false;
  char buf[16384];
  while (buffer_.size() < n) {
    const int64_t left = deadline_ms_ - NowMs();
    pollfd p{fd_, POLLIN, 0};
    const int ready = left > 0 ? poll(&p, 1, static_cast<int>(left)) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      Close();
      return Status::DeadlineExceeded(std::string(what) + ": no whole reply in " +
                                      std::to_string(timeout_ms_) + " ms");
    }
    const ssize_t got = read(fd_, buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      *closed = true;
      return Status::OK();
    }
    buffer_.append(buf, static_cast<size_t>(got));
  }
  return Status::OK();
}

Status HttpClient::Request(const std::string& method, const std::string& path,
                           const std::string& body, HttpReply* reply, const std::string& headers) {
  deadline_ms_ = NowMs() + timeout_ms_;
  const std::string what = method + " " + path;
  std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers;
  if (method == "POST" || !body.empty()) {
    request +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "\r\n" + body;
  // A kept-alive connection the server has closed meanwhile fails on its first use: that
  // request is sent once more, on a new connection.
  for (int attempt = 0;; ++attempt) {
    const bool fresh = fd_ < 0;
    if (fresh) PEPNET_RETURN_IF_ERROR(Connect());
    buffer_.clear();
    size_t sent = 0;
    while (sent < request.size()) {
      const ssize_t n = send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    // A server may answer before it has read the whole request (413 for a body too
    // large) and close: its reply is read even when the send broke off.
    size_t split = std::string::npos;
    bool closed = false;
    while ((split = buffer_.find("\r\n\r\n")) == std::string::npos && !closed) {
      PEPNET_RETURN_IF_ERROR(Fill(buffer_.size() + 1, what.c_str(), &closed));
    }
    if (split == std::string::npos) {
      Close();
      if (!fresh && attempt == 0) continue;
      return Status::Unavailable(what + ": the connection closed before a reply");
    }
    const std::string head = buffer_.substr(0, split);
    if (head.compare(0, 9, "HTTP/1.1 ") != 0) {
      Close();
      return Status::Corruption(what + ": not an HTTP reply");
    }
    reply->status = std::atoi(head.c_str() + 9);
    const std::string length = HeaderValue(head, "content-length");
    const size_t start = split + 4;
    if (method == "HEAD") {  // a length, but no body
      reply->body.clear();
      buffer_.clear();
      return Status::OK();
    }
    if (length.empty()) {
      // No length: the body runs to the close.
      while (!closed) PEPNET_RETURN_IF_ERROR(Fill(buffer_.size() + 1, what.c_str(), &closed));
      reply->body = buffer_.substr(start);
      Close();
      return Status::OK();
    }
    const size_t n = std::strtoull(length.c_str(), nullptr, 10);
    PEPNET_RETURN_IF_ERROR(Fill(start + n, what.c_str(), &closed));
    if (closed) {
      Close();
      return Status::Unavailable(what + ": the connection closed inside the reply");
    }
    reply->body = buffer_.substr(start, n);
    std::string connection = HeaderValue(head, "connection");
    std::transform(connection.begin(), connection.end(), connection.begin(), ::tolower);
    if (connection == "close") Close();
    return Status::OK();
  }
}

}  // namespace pepnet
