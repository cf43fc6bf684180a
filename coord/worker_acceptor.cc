#include "coord/worker_acceptor.h"

#include <cstdio>

namespace pepnet {
namespace {
// How often the accept loop looks whether it should stop.
constexpr int kAcceptPollMs = 200;
}  // namespace

WorkerAcceptor::WorkerAcceptor(FrameListener* listener, const WorkerAcceptorOptions& options)
    : listener_(listener), options_(options) {
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

WorkerAcceptor::~WorkerAcceptor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    // A blocked handshake returns at once.
    for (Pending& p : pending_) {
      if (p.channel) p.channel->Close();  // nullptr: handed to joined_
    }
  }
  acceptor_.join();
  std::unique_lock<std::mutex> lock(mu_);
  for (Pending& p : pending_) {
    std::thread t = std::move(p.thread);
    lock.unlock();
    if (t.joinable()) t.join();
    lock.lock();
  }
  pending_.clear();
}

void WorkerAcceptor::AcceptLoop() {
  for (;;) {
    std::unique_ptr<FrameChannel> channel;
    Status st = listener_->Accept(&channel, kAcceptPollMs);
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    Reap(&lock);
    if (st.code() == Status::kDeadlineExceeded) continue;
    if (!st.ok()) {
      listen_error_ = st;
      cv_.notify_all();
      return;
    }
    size_t waiting = 0;
    for (const Pending& p : pending_) waiting += !p.done && !p.evicted;
    if (waiting >= options_.max_pending) {
      // A flood of connections that never finish pushes out its own oldest, so a worker
      // that connects now still gets its turn. The evicted one's thread logs and ends.
      for (Pending& p : pending_) {
        if (!p.done && !p.evicted) {
          fprintf(stderr,
                  "pepnet_coord: closing %s: still in its handshake while %zu others wait\n",
                  p.channel->peer().c_str(), waiting - 1);
          p.evicted = true;
          p.channel->Close();
          break;
        }
      }
    }
    pending_.emplace_back();
    Pending* p = &pending_.back();
    p->channel = std::move(channel);
    p->thread = std::thread([this, p] { Greet(p); });
  }
}

void WorkerAcceptor::Greet(Pending* p) {
  FrameChannel* channel = p->channel.get();
  PeerRole role = PeerRole::kTool;
  Status st = channel->AcceptHandshake(*options_.secret, options_.handshake_timeout_ms, &role);
  if (st.ok() && role != PeerRole::kWorker) {
    st = Status::InvalidArgument(std::string("it declared the role ") + RoleName(role) +
                                 ", not worker");
  }
  std::string header;
  PayloadBuffer payload;
  proto::CoordMessage hello;
  if (st.ok()) {
    st = channel->Receive(&header, &payload, options_.handshake_timeout_ms,
                          options_.max_hello_bytes);
  }
  if (st.ok() && (!hello.ParseFromString(header) || hello.type() != proto::COORD_HELLO)) {
    st = Status::InvalidArgument("its first message is not a worker's hello");
  }
  std::lock_guard<std::mutex> lock(mu_);
  p->done = true;
  if (!st.ok()) {
    if (!stopping_) {
      fprintf(stderr, "pepnet_coord: dropping a connection from %s: %s\n", channel->peer().c_str(),
              st.ToString().c_str());
    }
  } else {
    joined_.push_back({std::make_unique<WorkerLink>(std::move(p->channel)), std::move(hello)});
  }
  cv_.notify_all();
}

void WorkerAcceptor::Reap(std::unique_lock<std::mutex>* lock) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (!it->done) {
      ++it;
      continue;
    }
    std::thread t = std::move(it->thread);
    it = pending_.erase(it);
    lock->unlock();
    t.join();
    lock->lock();
  }
}

Status WorkerAcceptor::Next(int timeout_ms, std::unique_ptr<WorkerLink>* link,
                            proto::CoordMessage* hello) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool ready = cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                  [this] { return !joined_.empty() || !listen_error_.ok(); });
  if (!joined_.empty()) {
    *link = std::move(joined_.front().link);
    *hello = std::move(joined_.front().hello);
    joined_.pop_front();
    return Status::OK();
  }
  if (!listen_error_.ok()) return listen_error_;
  (void)ready;
  return Status::DeadlineExceeded("no worker joined in time");
}

}  // namespace pepnet
