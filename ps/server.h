// Server: the network side of one pepnet_ps shard.
//
// Threading model: `threads` io_contexts, one per thread. The acceptor lives on the
// first; each accepted connection is handed round-robin to a thread and stays there, so
// a connection's handlers never race. Request handling runs inline on that thread; the
// table's partition locks are the only synchronization between threads.
#ifndef PEPNET_PS_SERVER_H_
#define PEPNET_PS_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "common/frame.h"
#include "common/status.h"

namespace pepnet {

class RequestHandler;

struct ServerOptions {
  std::string host = "0.0.0.0";
  // 0 picks a free port; port() tells which.
  uint16_t port = 0;
  int threads = 2;
  // Connections beyond this many are accepted and closed at once (with a log line), so
  // a flood of peers cannot exhaust descriptors or memory.
  size_t max_connections = 1024;
  uint64_t max_frame_bytes = kDefaultMaxFrameBytes;
  // How long Stop() lets requests in progress finish before closing everything.
  int shutdown_grace_ms = 5000;
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
