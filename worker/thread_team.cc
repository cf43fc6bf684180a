#include "worker/thread_team.h"

namespace pepnet {

ThreadTeam::ThreadTeam(int size) {
  for (int i = 1; i < size; ++i) helpers_.emplace_back([this, i] { HelperLoop(i); });
}

ThreadTeam::~ThreadTeam() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  start_.notify_all();
  for (std::thread& t : helpers_) t.join();
}

void ThreadTeam::Run(const std::function<void(int)>& fn) {
  if (helpers_.empty()) {
    fn(0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    running_ = static_cast<int>(helpers_.size());
    ++generation_;
  }
  start_.notify_all();
  fn(0);
  std::unique_lock<std::mutex> lock(mu_);
  done_.wait(lock, [this] { return running_ == 0; });
  job_ = nullptr;
}

void ThreadTeam::HelperLoop(int member) {
  unsigned long seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    start_.wait(lock, [&] { return stopping_ || generation_ != seen; });
    if (stopping_) return;
    seen = generation_;
    const std::function<void(int)>* job = job_;
    lock.unlock();
    (*job)(member);
    lock.lock();
    if (--running_ == 0) done_.notify_one();
  }
}

}  // namespace pepnet
