// HttpClient: a minimal blocking HTTP/1.1 client over one kept-alive loopback TCP
// connection, for tools, benchmarks and tests that talk to the processes' HTTP ports
// (pepnet_bench_serve's clients, pepnet_bench_ps's scrapes of /metrics). Not a general
// client: replies must carry Content-Length (as every reply of common/http_server.h
// does); no chunked bodies, no redirects. Not thread-safe: one client per thread.
#ifndef PEPNET_COMMON_HTTP_CLIENT_H_
#define PEPNET_COMMON_HTTP_CLIENT_H_

#include <cstdint>
#include <string>

#include "common/status.h"

namespace pepnet {

struct HttpReply {
  int status = 0;
  std::string body;
};

class HttpClient {
 public:
  // Every call gives up after `timeout_ms` (DeadlineExceeded).
  HttpClient(uint16_t port, int timeout_ms);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request on the connection (opening it first if needed) and reads its reply.
  // Unavailable when the connection cannot be made or breaks; a reply that asks to close
  // closes it, and the next request opens a new one. `headers` are extra header lines,
  // each ending in "\r\n".
  Status Request(const std::string& method, const std::string& path, const std::string& body,
                 HttpReply* reply, const std::string& headers = "");
  Status Get(const std::string& path, HttpReply* reply) { return Request("GET", path, "", reply); }
  Status Post(const std::string& path, const std::string& body, HttpReply* reply) {
    return Request("POST", path, body, reply);
  }
  void Close();

 private:
  Status Connect();
  // Reads until `buffer_` holds at least `n` bytes, or until the peer closes (false).
  Status Fill(size_t n, const char* what, bool* closed);

  const uint16_t port_;
  const int timeout_ms_;
  int fd_ = -1;
  std::string buffer_;
  int64_t deadline_ms_ = 0;  // of the call in progress, on the steady clock
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_HTTP_CLIENT_H_
