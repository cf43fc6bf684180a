#include "common/http_server.h"

#include <glog/logging.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <map>
#include <optional>
#include <thread>
#include <vector>

namespace pepnet {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// One client connection: read a request, answer it, again while the client keeps it
// alive. Kept alive by its own operations; all of them run on its strand.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket socket, const HttpServerOptions* options,
              const std::map<std::string, HttpHandler>* handlers, std::atomic<int>* live)
      : stream_(std::move(socket)),
        options_(options),
        handlers_(handlers),
        live_(live),
        // Beast limits the headers but not a chunk-size line or a trailer: the buffer's
        // own limit bounds what any request can make it hold (a body moves out of it).
        buffer_(options->max_header_bytes + (64 << 10)) {
    boost::system::error_code ec;
    const tcp::endpoint ep = stream_.socket().remote_endpoint(ec);
    peer_ = ec ? "unknown peer" : ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  ~HttpSession() { ReleaseSlot(); }

  void Read() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(options_->max_header_bytes));
    parser_->body_limit(options_->max_body_bytes);
    stream_.expires_after(std::chrono::milliseconds(options_->request_timeout_ms));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted) {
      Close();
      return;
    }
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      Reply(431,
            "request headers too large: over " + std::to_string(options_->max_header_bytes) +
                " bytes\n",
            /*keep_alive=*/false, 11);
      return;
    }
    if (ec == http::error::body_limit) {
      Reply(413,
            "request body too large: over " + std::to_string(options_->max_body_bytes) + " bytes\n",
            /*keep_alive=*/false, 11);
      return;
    }
    if (ec) {
      // Not HTTP: say so if the socket still takes it, then close.
      Reply(400, "bad request: " + ec.message() + "\n", false, 11);
      return;
    }
    const http::request<http::string_body>& req = parser_->get();
    HttpRequest request;
    request.method = std::string(req.method_string());
    const std::string target(req.target());
    const size_t q = target.find('?');
    request.path = target.substr(0, q);
    if (q != std::string::npos) request.query = target.substr(q + 1);
    request.body = req.body();
    request.peer = peer_;
    request.authorization = std::string(req[http::field::authorization]);
    HttpResponse response;
    auto it = handlers_->find(request.path);
    const bool head = req.method() == http::verb::head;
    if (it == handlers_->end()) {
      response.status = 404;
      response.body = "no such path: " + request.path + "\n";
    } else if (!options_->allow_post && req.method() != http::verb::get && !head) {
      response.status = 405;
      response.body = request.method + " is not served here: GET or HEAD\n";
    } else {
      try {
        response = it->second(request);
      } catch (const std::exception& e) {
        LOG(ERROR) << options_->what << ": " << request.path << " for " << peer_
                   << " failed: " << e.what();
        response.status = 500;
        response.content_type = "text/plain; charset=utf-8";
        response.body = std::string("internal error: ") + e.what() + "\n";
      } catch (...) {
        response.status = 500;
        response.content_type = "text/plain; charset=utf-8";
        response.body = "internal error\n";
      }
    }
    // HEAD: the headers of the GET, Content-Length included, without the body.
    const size_t length = response.body.size();
    if (head) response.body.clear();
    Reply(response.status, std::move(response.body), req.keep_alive(), req.version(),
          response.content_type, head ? std::optional<size_t>(length) : std::nullopt);
  }

  void Reply(int status, std::string body, bool keep_alive, unsigned version,
             const std::string& content_type = "text/plain; charset=utf-8",
             std::optional<size_t> head_length = std::nullopt) {
    response_.emplace();
    response_->result(static_cast<unsigned>(status));
    response_->version(version);
    response_->set(http::field::content_type, content_type);
    response_->set(http::field::server, "pepnet-ps");
    response_->body() = std::move(body);
    response_->keep_alive(keep_alive);
    if (head_length) {
      response_->content_length(*head_length);
    } else {
      response_->prepare_payload();
    }
    stream_.expires_after(std::chrono::milliseconds(options_->request_timeout_ms));
    http::async_write(stream_, *response_,
                      [self = shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                        if (ec) {
                          self->Close();
                        } else if (!keep_alive) {
                          self->Linger();
                        } else {
                          self->Read();
                        }
                      });
  }

  // Closing with unread input makes the kernel send a reset, which can destroy the reply
  // (a 413 for a request still arriving) before the client reads it: end our side, then
  // swallow what the client still sends, up to a bound, until it closes or the deadline.
  void Linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::milliseconds(options_->request_timeout_ms));
    Drain();
  }
  void Drain() {
    drain_.resize(64 << 10);
    stream_.async_read_some(asio::buffer(drain_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > kMaxDrainBytes) {
                                self->Close();
                                return;
                              }
                              self->Drain();
                            });
  }
  static constexpr size_t kMaxDrainBytes = 4 << 20;

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    ReleaseSlot();  // now, not when the last queued handler lets go of the session
  }
  void ReleaseSlot() {
    if (!released_) {
      released_ = true;
      live_->fetch_sub(1);
    }
  }

  beast::tcp_stream stream_;
  const HttpServerOptions* options_;
  const std::map<std::string, HttpHandler>* handlers_;
  std::atomic<int>* live_;
  std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
  std::vector<char> drain_;
  size_t drained_ = 0;
  bool released_ = false;
};

}  // namespace

class HttpServer::Impl {
 public:
  explicit Impl(HttpServerOptions options)
      : options_(std::move(options)), acceptor_(io_), retry_timer_(io_) {}
  ~Impl() { Stop(); }

  Status Start() {
    boost::system::error_code ec;
    asio::ip::address address = asio::ip::make_address(options_.host, ec);
    if (ec) {
      // A name ("localhost"): its first address.
      tcp::resolver resolver(io_);
      auto results = resolver.resolve(options_.host, "", ec);
      if (ec || results.empty()) {
        return Status::InvalidArgument(options_.what + ": cannot resolve host '" + options_.host +
                                       "'");
      }
      address = results.begin()->endpoint().address();
    }
    const tcp::endpoint endpoint(address, static_cast<uint16_t>(options_.port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Unavailable(options_.what + "=" + std::to_string(options_.port) +
                                 ": cannot listen on " + options_.host + ":" +
                                 std::to_string(options_.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    Accept();
    for (int i = 0; i < std::max(1, options_.threads); ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
    return Status::OK();
  }

  void Stop() {
    io_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    boost::system::error_code ignored;
    acceptor_.close(ignored);  // later connections are refused, not left hanging
  }

  void Accept() {
    acceptor_.async_accept(
        asio::make_strand(io_), [this](boost::system::error_code ec, tcp::socket socket) {
          if (ec == asio::error::operation_aborted) return;
          if (ec) {
            // Out of descriptors or buffers: the connection stays in the backlog, and
            // accepting again at once would spin. Wait a little.
            LOG_EVERY_N(WARNING, 100) << options_.what << ": accept failed: " << ec.message();
            retry_timer_.expires_after(std::chrono::milliseconds(100));
            retry_timer_.async_wait([this](boost::system::error_code wait_ec) {
              if (!wait_ec) Accept();
            });
            return;
          }
          if (live_.fetch_add(1) >= options_.max_connections) {
            // Over the cap: say so, without waiting for the socket, and close; the
            // connections already open go on.
            live_.fetch_sub(1);
            static const char kBusy[] =
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                "Content-Length: 24\r\nConnection: close\r\n\r\ntoo many connections now\n";
            boost::system::error_code ignored;
            socket.non_blocking(true, ignored);
            socket.send(asio::buffer(kBusy, sizeof(kBusy) - 1), 0, ignored);
            socket.shutdown(tcp::socket::shutdown_both, ignored);
            socket.close(ignored);
          } else {
            std::make_shared<HttpSession>(std::move(socket), &options_, &handlers_, &live_)->Read();
          }
          Accept();
        });
  }

  // Declared before io_: sessions destroyed with it still use them.
  HttpServerOptions options_;
  std::map<std::string, HttpHandler> handlers_;  // fixed before Start
  std::atomic<int> live_{0};
  uint16_t port_ = 0;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  std::vector<std::thread> threads_;
};

HttpServer::HttpServer(HttpServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
HttpServer::~HttpServer() = default;

void HttpServer::Handle(const std::string& path, HttpHandler handler) {
  impl_->handlers_[path] = std::move(handler);
}
Status HttpServer::Start() { return impl_->Start(); }
uint16_t HttpServer::port() const { return impl_->port_; }
void HttpServer::Stop() { impl_->Stop(); }

std::string HtmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace pepnet
