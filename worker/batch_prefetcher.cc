#include "worker/batch_prefetcher.h"

#include <utility>

namespace pepnet {

BatchPrefetcher::BatchPrefetcher(DataReader* reader, size_t batch_size, size_t depth)
    : reader_(reader), batch_size_(batch_size), depth_(depth < 1 ? 1 : depth) {
  thread_ = std::thread([this] { Produce(); });
}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  space_.notify_all();
  thread_.join();
}

void BatchPrefetcher::Produce() {
  for (;;) {
    Item item;
    {
      std::unique_lock<std::mutex> lock(mu_);
      space_.wait(lock, [this] { return stopping_ || queue_.size() < depth_; });
      if (stopping_) return;
      if (!spare_.empty()) {
        item.batch = std::move(spare_.front());
        spare_.pop_front();
      }
    }
    item.status = reader_->Next(batch_size_, &item.batch, &item.done);
    const bool last = item.done || !item.status.ok();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(item));
    }
    ready_.notify_one();
    if (last) return;
  }
}

Status BatchPrefetcher::Next(Batch* batch, bool* done) {
  std::unique_lock<std::mutex> lock(mu_);
  ready_.wait(lock, [this] { return !queue_.empty(); });
  Item item = std::move(queue_.front());
  queue_.pop_front();
  spare_.push_back(std::move(*batch));
  *batch = std::move(item.batch);
  *done = item.done;
  lock.unlock();
  space_.notify_one();
  return item.status;
}

}  // namespace pepnet
