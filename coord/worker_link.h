// WorkerLink: the coordinator's side of one worker's connection. A reader thread queues
// the worker's messages; a broken connection is recorded as the link's error. The queue
// and the error are guarded by the mutex given to Start, which the coordinator waits on.
#ifndef PEPNET_COORD_WORKER_LINK_H_
#define PEPNET_COORD_WORKER_LINK_H_

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/frame_channel.h"
#include "common/status.h"
#include "proto/cluster.pb.h"

namespace pepnet {

struct CoordEnvelope {
  proto::CoordMessage header;
  std::string payload;
};

class WorkerLink {
 public:
  explicit WorkerLink(std::unique_ptr<FrameChannel> channel) : channel_(std::move(channel)) {}
  ~WorkerLink();

  // Starts the reader thread; every message or error notifies `cv` under `mu`.
  void Start(std::mutex* mu, std::condition_variable* cv);

  Status Send(const proto::CoordMessage& m, const void* payload = nullptr, size_t len = 0) {
    return channel_->Send(m.SerializeAsString(), payload, len);
  }
  const std::string& peer() const { return channel_->peer(); }
  void ShutdownWrite() { channel_->ShutdownWrite(); }

  // Guarded by the mutex given to Start.
  std::deque<CoordEnvelope> queue_;
  Status error_;

 private:
  std::unique_ptr<FrameChannel> channel_;
  std::thread reader_;
};

}  // namespace pepnet

#endif  // PEPNET_COORD_WORKER_LINK_H_
