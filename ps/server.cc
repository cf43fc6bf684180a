#include "ps/server.h"

#include <glog/logging.h>

#include <atomic>
#include <boost/asio.hpp>
#include <thread>
#include <vector>

#include "ps/connection.h"
#include "ps/request_handler.h"

namespace pepnet {

namespace asio = boost::asio;
using asio::ip::tcp;

class Server::Impl {
 public:
  Impl(const ServerOptions& options, RequestHandler* handler)
      : options_(options), handler_(handler) {
    const int n = std::max(1, options_.threads);
    for (int i = 0; i < n; ++i) {
      workers_.push_back(std::make_unique<Worker>());
      workers_.back()->connections.set_live_counter(&live_connections_);
    }
  }

  Status Start() {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(options_.host, ec);
    if (ec) return Status::InvalidArgument("bad listen host '" + options_.host + "'");
    tcp::endpoint endpoint(address, options_.port);
    acceptor_ = std::make_unique<tcp::acceptor>(workers_[0]->io);
    acceptor_->open(endpoint.protocol(), ec);
    if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_->bind(endpoint, ec);
    if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Unavailable("cannot listen on " + options_.host + ":" +
                                 std::to_string(options_.port) + ": " + ec.message());
    }
    port_ = acceptor_->local_endpoint().port();
    accept_retry_timer_ = std::make_unique<asio::steady_timer>(workers_[0]->io);
    Accept();
    return Status::OK();
  }

  uint16_t port() const { return port_; }

  void Run(bool handle_signals) {
    if (handle_signals) {
      signals_ = std::make_unique<asio::signal_set>(workers_[0]->io, SIGINT, SIGTERM);
      WaitForSignal();
    }
    std::vector<std::thread> threads;
    for (size_t i = 1; i < workers_.size(); ++i) {
      threads.emplace_back([w = workers_[i].get()] { w->io.run(); });
    }
    workers_[0]->io.run();
    for (auto& t : threads) t.join();
    signals_.reset();
  }

  // The first signal starts a graceful stop; a second one cuts it short.
  void WaitForSignal() {
    signals_->async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (!stopping_) {
        LOG(INFO) << "signal " << sig << " received; shutting down";
        Stop();
        WaitForSignal();
      } else {
        LOG(WARNING) << "signal " << sig << " received again; stopping now";
        for (auto& w : workers_) w->io.stop();
      }
    });
  }

  void Stop() {
    asio::post(workers_[0]->io, [this] {
      if (stopping_) return;
      stopping_ = true;
      boost::system::error_code ignored;
      if (acceptor_) acceptor_->close(ignored);
      if (accept_retry_timer_) accept_retry_timer_->cancel();
      for (auto& w : workers_) {
        asio::post(w->io, [w = w.get()] {
          w->connections.ShutdownAll();
          w->guard.reset();
        });
      }
      grace_deadline_ =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.shutdown_grace_ms);
      grace_timer_ = std::make_unique<asio::steady_timer>(workers_[0]->io);
      WatchShutdown();
    });
  }

 private:
  struct Worker {
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{asio::make_work_guard(io)};
    ConnectionSet connections;
  };

  // Polls until every connection has closed; whatever is still open after the grace
  // period is cut off.
  void WatchShutdown() {
    if (live_connections_.load() == 0) {
      FinishShutdown();
      return;
    }
    if (std::chrono::steady_clock::now() >= grace_deadline_) {
      LOG(WARNING) << "shutdown grace period over; closing " << live_connections_.load()
                   << " remaining connections";
      for (auto& w : workers_) w->io.stop();
      return;
    }
    grace_timer_->expires_after(std::chrono::milliseconds(20));
    grace_timer_->async_wait([this](const boost::system::error_code& ec) {
      if (!ec) WatchShutdown();
    });
  }

  // Nothing is left to serve: drop the last thing keeping thread 0's loop alive.
  void FinishShutdown() {
    boost::system::error_code ignored;
    if (signals_) signals_->cancel(ignored);
  }

  void Accept() {
    Worker* target = workers_[next_worker_++ % workers_.size()].get();
    acceptor_->async_accept(
        target->io, [this, target](const boost::system::error_code& ec, tcp::socket socket) {
          if (ec) {
            if (ec == asio::error::operation_aborted || stopping_) return;
            // Out of descriptors, say: the backlog stays readable, so retrying at once
            // would spin. Back off and let connections close.
            LOG(WARNING) << "accept failed: " << ec.message() << "; retrying in 100 ms";
            accept_retry_timer_->expires_after(std::chrono::milliseconds(100));
            accept_retry_timer_->async_wait([this](const boost::system::error_code& e) {
              if (!e && !stopping_) Accept();
            });
            return;
          } else if (stopping_) {
            return;  // the socket closes as it goes out of scope
          } else if (live_connections_.load() >= options_.max_connections) {
            boost::system::error_code ignored;
            auto peer = socket.remote_endpoint(ignored);
            LOG(WARNING) << "refusing connection from " << peer.address().to_string() << ":"
                         << peer.port() << ": " << options_.max_connections
                         << " connections open (--max_connections)";
          } else {
            handler_->counters().connections.fetch_add(1, std::memory_order_relaxed);
            // The socket belongs to target's io_context; start it on that thread.
            auto conn = std::make_shared<Connection>(
                std::move(socket), handler_, &target->connections, options_.max_frame_bytes);
            asio::post(target->io, [target, conn] {
              target->connections.Add(conn);
              conn->Start();
            });
          }
          if (!stopping_) Accept();
        });
  }

  ServerOptions options_;
  RequestHandler* handler_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::unique_ptr<asio::steady_timer> grace_timer_;
  std::unique_ptr<asio::signal_set> signals_;  // only with Run(handle_signals=true)
  std::unique_ptr<asio::steady_timer> accept_retry_timer_;
  std::chrono::steady_clock::time_point grace_deadline_;
  std::atomic<size_t> live_connections_{0};
  uint16_t port_ = 0;
  size_t next_worker_ = 0;
  bool stopping_ = false;  // touched only on workers_[0]'s thread
};

Server::Server(const ServerOptions& options, RequestHandler* handler)
    : impl_(new Impl(options, handler)) {}
Server::~Server() = default;
Status Server::Start() { return impl_->Start(); }
uint16_t Server::port() const { return impl_->port(); }
void Server::Run(bool handle_signals) { impl_->Run(handle_signals); }
void Server::Stop() { impl_->Stop(); }

}  // namespace pepnet
