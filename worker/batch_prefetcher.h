// BatchPrefetcher: parses the next batches on a background thread while the trainer works
// on the current one, so reading and parsing overlap training.
//
// Owns nothing but its thread; the reader is borrowed and must outlive the prefetcher. The
// reader is used only by the background thread until Next reports done or an error; its
// stats() may be read after that. Next is called from one thread.
#ifndef PEPNET_WORKER_BATCH_PREFETCHER_H_
#define PEPNET_WORKER_BATCH_PREFETCHER_H_

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "common/status.h"
#include "worker/data_reader.h"

namespace pepnet {

class BatchPrefetcher {
 public:
  // Keeps up to `depth` batches of `batch_size` samples parsed ahead.
  BatchPrefetcher(DataReader* reader, size_t batch_size, size_t depth = 2);
  // Stops the background thread (waiting for the batch it is parsing).
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  // As DataReader::Next: the next batch into *batch (whose old buffers are recycled), and
  // *done once the data has ended.
  Status Next(Batch* batch, bool* done);

 private:
  struct Item {
    Status status;
    Batch batch;
    bool done = false;
  };
  void Produce();

  DataReader* reader_;
  const size_t batch_size_, depth_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<Item> queue_;
  std::deque<Batch> spare_;  // consumed batches, reused for their allocations
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace pepnet

#endif  // PEPNET_WORKER_BATCH_PREFETCHER_H_
