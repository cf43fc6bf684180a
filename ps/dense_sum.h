// DenseSum: this shard's slice of the workers' dense gradient sum, one step at a time
// (docs/architecture.md, "The dense sum"). Every worker of a step sends its slice; once
// the last one arrived, the slice's sum over the workers with data, in worker order (so
// every replica applies the same bits, and a cluster sums what the coordinator's star
// summed), goes back to all of them. A step that cannot complete fails for all of its
// workers with a Status that says why: a non-finite contribution (naming its worker), a
// worker silent past the timeout (naming the missing ones), workers that disagree on the
// step or its shape, or Reset (the coordinator gave up on the pass, or the shard rolled
// back).
//
// Thread-safe. `done` callbacks run exactly once each, on the thread that completed or
// failed the step (a contributor's, the watchdog's or Reset's caller), never under the
// internal lock; they must not block.
#ifndef PEPNET_PS_DENSE_SUM_H_
#define PEPNET_PS_DENSE_SUM_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/dense_slice.h"
#include "common/frame.h"
#include "common/status.h"

namespace pepnet {

// Who contributes what to which step.
struct DenseContribution {
  uint32_t pass = 0;
  uint64_t step = 0;
  uint32_t worker_index = 0;
  uint32_t num_workers = 0;
  bool has_data = false;
  uint64_t dense_size = 0;  // floats of the whole gradient
  std::string peer;         // for messages
};

struct DenseSumResult {
  Status status;
  uint32_t workers_with_data = 0;
  // The slice's sum (float32), shared by every worker's reply; null on failure or when no
  // worker had data.
  std::shared_ptr<const PayloadBuffer> sum;
};

class DenseSum {
 public:
  using Done = std::function<void(DenseSumResult)>;
  // Workers in one cluster at most (a bound on what a request may make the shard hold).
  static constexpr uint32_t kMaxWorkers = 4096;

  // A step whose first slice arrived `timeout_ms` ago and that still misses some fails.
  DenseSum(uint32_t shard_id, uint32_t num_shards, int timeout_ms);
  ~DenseSum();  // fails what waits with Unavailable
  DenseSum(const DenseSum&) = delete;
  DenseSum& operator=(const DenseSum&) = delete;

  // Adds one worker's slice. `payload` holds its floats when c.has_data; it is borrowed
  // until `done` runs and must not change meanwhile (the caller's connection keeps it, and
  // charges it to its buffer budget: what a step holds is what its workers sent).
  void Contribute(const DenseContribution& c, const PayloadBuffer* payload, Done done);

  // Fails the open step with `why`, and every later slice of `pass` (its workers wait
  // for steps that will not complete): the coordinator gave up on the pass.
  void Abort(uint32_t pass, const Status& why);
  // Fails the open step with `why` and forgets earlier failures: the shard begins a pass
  // or rolls back, so the steps of a pass tried again start afresh.
  void Reset(const Status& why);

  // Fails the open step and every later slice with `why`: the shard is stopping.
  void Close(const Status& why);

  // Steps summed and failed since start.
  uint64_t steps() const;
  uint64_t failed_steps() const;

 private:
  struct Slot {
    bool arrived = false;
    bool has_data = false;
    std::string peer;
    const float* grad = nullptr;  // borrowed, see Contribute
    Done done;
  };
  using Callbacks = std::vector<std::pair<Done, DenseSumResult>>;

  // Under mu_: ends the open step with `result` for every worker waiting in it.
  void FinishLocked(const DenseSumResult& result, Callbacks* out);
  void FailLocked(const Status& why, Callbacks* out);
  // Fails the open step with `why`, runs `then` under the lock, then the callbacks.
  template <typename Then>
  void FailOpenStep(const Status& why, Then then);
  // Under mu_, with every slot arrived: the sum, or the error that replaces it.
  DenseSumResult SumLocked();
  std::string StepName() const;
  void Watch();
  static void Run(Callbacks* callbacks);

  const uint32_t shard_id_;
  const uint32_t num_shards_;
  const std::chrono::milliseconds timeout_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  // The open step; open_ is false between steps.
  bool open_ = false;
  uint32_t pass_ = 0;
  uint64_t step_ = 0;
  uint32_t num_workers_ = 0;
  uint64_t dense_size_ = 0;
  uint32_t arrived_ = 0;
  std::chrono::steady_clock::time_point deadline_;
  std::vector<Slot> slots_;
  // The last step that failed, so that its late slices fail at once.
  bool failed_ = false;
  uint32_t failed_pass_ = 0;
  uint64_t failed_step_ = 0;
  Status failure_;
  bool closed_ = false;
  Status closed_why_;
  uint32_t aborted_pass_ = 0;  // 0: none
  Status abort_;
  uint64_t steps_ = 0, failed_steps_ = 0;
  std::thread watchdog_;
};

}  // namespace pepnet

#endif  // PEPNET_PS_DENSE_SUM_H_
