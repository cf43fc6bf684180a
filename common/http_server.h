// HttpServer: a small HTTP/1.1 server (Boost.Beast) for the processes' admin endpoints and
// for serving: exact-path handlers, keep-alive, and bounds a slow or hostile client cannot
// get around (header and body size, one deadline per request, a connection cap).
//
// Threading: handlers run on the server's own threads (`threads` of them, one io_context),
// concurrently with each other and with the rest of the process: a handler must be
// thread-safe and should not block for long. Handle() is called before Start(); Stop() and
// the destructor join the threads. Beast stays out of this header.
#ifndef PEPNET_COMMON_HTTP_SERVER_H_
#define PEPNET_COMMON_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace pepnet {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target up to '?'
  std::string query;   // after '?', undecoded; empty when none
  std::string body;
  std::string peer;           // address:port
  std::string authorization;  // the Authorization header; empty when none
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;                       // 0: a free port chosen by the kernel (see port())
  int threads = 2;                    // so one slow handler does not hold up the others
  size_t max_header_bytes = 8 << 10;  // 431 beyond
  size_t max_body_bytes = 64 << 10;   // 413 beyond, from the announced length
  // Methods other than GET and HEAD get 405 unless this is set (a handler then sees
  // request.method).
  bool allow_post = false;
  // A request must arrive whole within this long of the connection's accept, or of the
  // previous reply on a kept-alive connection (so a silent client is dropped too); a
  // reply must be written within it.
  int request_timeout_ms = 10000;
  int max_connections = 64;
  // For log lines and errors: "--admin_port", "--port".
  std::string what = "--admin_port";
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Serves `path` (exact match) with `handler`. Unknown paths get 404.
  void Handle(const std::string& path, HttpHandler handler);
  // Binds and starts the threads. Unavailable naming the flag, host and port when the
  // address is in use or cannot be bound; InvalidArgument for a bad host.
  Status Start();
  uint16_t port() const;
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Escapes text for HTML element content and attribute values.
std::string HtmlEscape(const std::string& text);

}  // namespace pepnet

#endif  // PEPNET_COMMON_HTTP_SERVER_H_
