// WorkerAcceptor: takes connections on the coordinator's port and turns them into
// workers that have proven the cluster's secret and said hello. Each connection's
// handshake and first message run on a thread of their own, so a silent or stray peer (a
// port scan, an HTTP probe, a client without the secret) delays no real worker: it is
// dropped with a log line naming its address once it fails or its time is up, and the
// run goes on.
//
// Lives for one round of joining (Coordinator::AcceptWorkers). Next() is called by one
// thread; the destructor closes what is still pending and joins every thread.
#ifndef PEPNET_COORD_WORKER_ACCEPTOR_H_
#define PEPNET_COORD_WORKER_ACCEPTOR_H_

#include <condition_variable>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include "common/auth.h"
#include "common/frame_channel.h"
#include "common/status.h"
#include "coord/worker_link.h"
#include "proto/cluster.pb.h"

namespace pepnet {

struct WorkerAcceptorOptions {
  const Secret* secret = nullptr;  // borrowed; empty: no secret
  // The handshake and then the hello must each arrive within this.
  int handshake_timeout_ms = kDefaultHandshakeTimeoutMs;
  // Connections in their handshake at once; a new one beyond this is closed at once.
  size_t max_pending = 32;
  // A first message larger than this is not a worker's hello.
  uint64_t max_hello_bytes = 1 << 20;
};

class WorkerAcceptor {
 public:
  // `listener` is borrowed and must outlive the acceptor.
  WorkerAcceptor(FrameListener* listener, const WorkerAcceptorOptions& options);
  ~WorkerAcceptor();
  WorkerAcceptor(const WorkerAcceptor&) = delete;
  WorkerAcceptor& operator=(const WorkerAcceptor&) = delete;

  // The next peer that authenticated as a worker and sent COORD_HELLO (in `hello`), or
  // DeadlineExceeded after `timeout_ms`; Unavailable if the listener broke.
  Status Next(int timeout_ms, std::unique_ptr<WorkerLink>* link, proto::CoordMessage* hello);

 private:
  struct Pending {
    std::unique_ptr<FrameChannel> channel;
    std::thread thread;
    bool done = false;
    bool evicted = false;  // closed to make room; its thread is ending
  };
  struct Joined {
    std::unique_ptr<WorkerLink> link;
    proto::CoordMessage hello;
  };
  void AcceptLoop();
  void Greet(Pending* p);
  // Joins the threads of finished handshakes. Needs mu_.
  void Reap(std::unique_lock<std::mutex>* lock);

  FrameListener* const listener_;
  const WorkerAcceptorOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  Status listen_error_;
  std::list<Pending> pending_;
  std::deque<Joined> joined_;
  std::thread acceptor_;
};

}  // namespace pepnet

#endif  // PEPNET_COORD_WORKER_ACCEPTOR_H_
