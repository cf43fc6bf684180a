#include "ps/server.h"

#include <glog/logging.h>

#include <atomic>
#include <boost/asio.hpp>
#include <list>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ps/connection.h"
#include "ps/request_handler.h"

namespace pepnet {

namespace asio = boost::asio;
using asio::ip::tcp;

class Server::Impl {
 public:
  Impl(const ServerOptions& options, RequestHandler* handler)
      : options_(options), handler_(handler), budget_(options.buffer_budget_bytes), no_secret_() {
    const int n = std::max(1, options_.threads);
    for (int i = 0; i < n; ++i) {
      workers_.push_back(std::make_unique<Worker>());
      workers_.back()->connections.set_live_counter(&handler_->counters().open_connections);
    }
    context_.handler = handler_;
    context_.secret = options_.secret ? options_.secret : &no_secret_;
    context_.budget = &budget_;
    context_.max_frame_bytes = options_.max_frame_bytes;
    context_.handshake_timeout_ms = options_.handshake_timeout_ms;
    context_.frame_timeout_ms = options_.frame_timeout_ms;
    context_.write_timeout_ms = options_.write_timeout_ms;
    context_.idle_timeout_ms = options_.idle_timeout_ms;
    context_.on_authenticated = [this](Connection* c, PeerRole role) { return Admit(c, role); };
    context_.on_closed = [this](Connection* c, bool authenticated) { Forget(c, authenticated); };
  }

  Status Start() {
    PEPNET_RETURN_IF_ERROR(CheckListenSecurity(options_.host, *context_.secret, "--host"));
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
      if (options_.on_stopping) options_.on_stopping();
      // A dense step waiting for a worker would hold its connections past the grace.
      handler_->StopDenseSums();
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
    if (handler_->counters().open_connections.load() == 0) {
      FinishShutdown();
      return;
    }
    if (std::chrono::steady_clock::now() >= grace_deadline_) {
      LOG(WARNING) << "shutdown grace period over; closing "
                   << handler_->counters().open_connections.load() << " remaining connections";
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
          } else {
            handler_->counters().connections.fetch_add(1, std::memory_order_relaxed);
            // The socket belongs to target's io_context; start it on that thread.
            auto conn =
                std::make_shared<Connection>(std::move(socket), &context_, &target->connections);
            AddPending(conn, target);
            asio::post(target->io, [target, conn] {
              target->connections.Add(conn);
              conn->Start();
            });
          }
          if (!stopping_) Accept();
        });
  }

  // Connections in their handshake, oldest first. A flood of connections that never
  // authenticate pushes out its own oldest, not the connections that prove the secret.
  struct Pending {
    Connection* raw;  // the index's key, valid or not
    std::weak_ptr<Connection> connection;
    Worker* worker;
  };
  void AddPending(const std::shared_ptr<Connection>& c, Worker* worker) {
    std::lock_guard<std::mutex> lock(admission_mu_);
    if (pending_.size() >= std::max<size_t>(1, options_.max_pending)) {
      Pending oldest = pending_.front();
      pending_index_.erase(oldest.raw);
      pending_.pop_front();
      if (auto victim = oldest.connection.lock()) {
        LOG(WARNING) << "closing " << victim->peer() << ": still in its handshake while "
                     << options_.max_pending << " others wait (--max_pending_handshakes)";
        asio::post(oldest.worker->io, [victim] { victim->Close(); });
      }
    }
    pending_.push_back({c.get(), c, worker});
    pending_index_[c.get()] = std::prev(pending_.end());
  }

  // A connection has proven itself as `role`: admitted unless the limits are reached.
  bool Admit(Connection* c, PeerRole role) {
    std::lock_guard<std::mutex> lock(admission_mu_);
    auto it = pending_index_.find(c);
    if (it != pending_index_.end()) {
      pending_.erase(it->second);
      pending_index_.erase(it);
    }
    const size_t limit = role == PeerRole::kTool
                             ? options_.max_connections
                             : options_.max_connections -
                                   std::min(options_.max_connections, options_.reserved_for_tools);
    size_t& from_peer = per_peer_[c->peer_address()];
    // An operator's tool is held to the total only: its room must not depend on how many
    // connections its host's workers hold.
    const bool peer_full =
        role != PeerRole::kTool && from_peer >= options_.max_connections_per_peer;
    if (authenticated_ >= limit || peer_full) {
      LOG(WARNING) << "refusing connection from " << c->peer() << " (" << RoleName(role)
                   << "): " << authenticated_ << " connections open, " << from_peer
                   << " from its address (--max_connections, --max_connections_per_peer)";
      if (from_peer == 0) per_peer_.erase(c->peer_address());
      return false;
    }
    ++authenticated_;
    ++from_peer;
    admitted_.insert(c);
    return true;
  }

  void Forget(Connection* c, bool authenticated) {
    std::lock_guard<std::mutex> lock(admission_mu_);
    auto it = pending_index_.find(c);
    if (it != pending_index_.end()) {
      pending_.erase(it->second);
      pending_index_.erase(it);
    }
    if (authenticated && admitted_.erase(c) > 0) {
      --authenticated_;
      auto peer = per_peer_.find(c->peer_address());
      if (peer != per_peer_.end() && --peer->second == 0) per_peer_.erase(peer);
    }
  }

  ServerOptions options_;
  RequestHandler* handler_;
  BufferBudget budget_;
  const Secret no_secret_;
  ConnectionContext context_;
  std::mutex admission_mu_;
  std::list<Pending> pending_;
  std::unordered_map<Connection*, std::list<Pending>::iterator> pending_index_;
  std::unordered_set<Connection*> admitted_;
  size_t authenticated_ = 0;
  std::map<std::string, size_t> per_peer_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::unique_ptr<asio::steady_timer> grace_timer_;
  std::unique_ptr<asio::signal_set> signals_;  // only with Run(handle_signals=true)
  std::unique_ptr<asio::steady_timer> accept_retry_timer_;
  std::chrono::steady_clock::time_point grace_deadline_;
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
