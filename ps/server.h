// Server: the network side of one pepnet_ps shard.
//
// Threading model: `threads` io_contexts, one per thread. The acceptor lives on the
// first; each accepted connection is handed round-robin to a thread and stays there, so
// a connection's handlers never race. Request handling runs inline on that thread; the
// table's partition locks are the only synchronization between threads.
#ifndef PEPNET_PS_SERVER_H_
#define PEPNET_PS_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/auth.h"
#include "common/frame.h"
#include "common/status.h"

namespace pepnet {

class RequestHandler;

struct ServerOptions {
  std::string host = "127.0.0.1";
  // 0 picks a free port; port() tells which.
  uint16_t port = 0;
  int threads = 2;
  // The cluster's secret (borrowed; nullptr or empty: none, and the host must be
  // loopback). Every connection proves it holds it before its first request.
  const Secret* secret = nullptr;
  // Authenticated connections; a new one beyond this many is refused at the end of its
  // handshake (with a log line), so a flood of peers cannot exhaust descriptors or
  // memory. The last reserved_for_tools of them only take tool sessions, so that an
  // operator's pepnet_ctl can always connect.
  size_t max_connections = 1024;
  size_t reserved_for_tools = 8;
  // Authenticated connections from one IP address.
  size_t max_connections_per_peer = 256;
  // Connections still in their handshake; a new one beyond this closes the oldest.
  size_t max_pending = 64;
  uint64_t max_frame_bytes = kDefaultMaxFrameBytes;
  // Request and reply buffers of all connections together; a frame that does not fit is
  // refused (RESOURCE_EXHAUSTED) and its connection closed.
  uint64_t buffer_budget_bytes = 1ull << 30;
  // Deadlines (docs/security.md): the handshake, the rest of a frame after its prefix,
  // the write of a reply, and the silence between frames of an authenticated connection.
  int handshake_timeout_ms = kDefaultHandshakeTimeoutMs;
  int frame_timeout_ms = 30000;
  int write_timeout_ms = 30000;
  int idle_timeout_ms = 300000;
  // How long Stop() lets requests in progress finish before closing everything.
  int shutdown_grace_ms = 5000;
  // Called once, on a server thread, when a stop begins (Stop() or a signal): the
  // process stops saying it is ready.
  std::function<void()> on_stopping;
};

class Server {
 public:
  // `handler` is borrowed and must outlive the server.
  Server(const ServerOptions& options, RequestHandler* handler);
  ~Server();

  // Binds and listens. Unavailable naming the address if that fails.
  Status Start();
  uint16_t port() const;

  // Serves until Stop() or, if `handle_signals`, SIGINT/SIGTERM. Blocks.
  void Run(bool handle_signals);

  // Thread-safe and idempotent: stops accepting, lets requests in progress finish.
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pepnet

#endif  // PEPNET_PS_SERVER_H_
