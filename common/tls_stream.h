// MaybeTlsStream: a TCP connection that runs inside TLS when the process has a TLS
// identity (common/tls.h) and is plain otherwise, so the shard server's connections and
// the client's have one code path for both. It is an Asio AsyncStream: asio::async_read
// and asio::async_write work on it as on a socket.
//
// Internal to the server and the client library (it pulls in Asio's SSL headers). Used on
// one io_context thread, like the socket it wraps; at most one read and one write in
// flight, as Asio's ssl::stream requires.
#ifndef PEPNET_COMMON_TLS_STREAM_H_
#define PEPNET_COMMON_TLS_STREAM_H_

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <memory>
#include <utility>

#include "common/tls.h"

namespace pepnet {

class MaybeTlsStream {
 public:
  using tcp = boost::asio::ip::tcp;
  using executor_type = tcp::socket::executor_type;
  using Handshake = boost::asio::ssl::stream_base::handshake_type;

  // `tls` (borrowed, may be null for plain TCP) must outlive the stream's construction.
  MaybeTlsStream(tcp::socket socket, const TlsContext* tls) : plain_(socket.get_executor()) {
    if (tls != nullptr) {
      tls_ =
          std::make_unique<boost::asio::ssl::stream<tcp::socket>>(std::move(socket), tls->asio());
    } else {
      plain_ = std::move(socket);
    }
  }

  bool tls() const { return tls_ != nullptr; }
  // The TCP layer, for options, endpoints, shutdown and close.
  tcp::socket& socket() { return tls_ ? tls_->next_layer() : plain_; }
  executor_type get_executor() { return socket().get_executor(); }

  // Completes at once, successfully, on a plain stream.
  template <class Handler>
  void async_handshake(Handshake type, Handler&& handler) {
    if (tls_) {
      tls_->async_handshake(type, std::forward<Handler>(handler));
    } else {
      boost::asio::post(plain_.get_executor(), [h = std::forward<Handler>(handler)]() mutable {
        h(boost::system::error_code());
      });
    }
  }

  template <class Buffers, class Handler>
  void async_read_some(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_read_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_.async_read_some(buffers, std::forward<Handler>(handler));
    }
  }

  template <class Buffers, class Handler>
  void async_write_some(const Buffers& buffers, Handler&& handler) {
    if (tls_) {
      tls_->async_write_some(buffers, std::forward<Handler>(handler));
    } else {
      plain_.async_write_some(buffers, std::forward<Handler>(handler));
    }
  }

  // The peer's verification failure, or the TLS alert it sent, as text; for log lines.
  static std::string Describe(const boost::system::error_code& ec) {
    if (ec.category() == boost::asio::error::get_ssl_category()) {
      return "TLS: " + ec.message();
    }
    return ec.message();
  }

 private:
  tcp::socket plain_;
  std::unique_ptr<boost::asio::ssl::stream<tcp::socket>> tls_;
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_TLS_STREAM_H_
