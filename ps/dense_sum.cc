#include "ps/dense_sum.h"

#include <glog/logging.h>

#include <cmath>
#include <cstring>
#include <new>

namespace pepnet {
namespace {

size_t FirstNonFinite(const float* v, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) return i;
  }
  return n;
}

// Branch-free, so that it vectorizes: a float is finite unless its exponent bits are
// all ones.
bool AllFinite(const float* v, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, v + i, 4);
    bad |= (bits & 0x7f800000u) == 0x7f800000u;
  }
  return bad == 0;
}

std::string FloatText(float x) {
  if (std::isnan(x)) return "nan";
  return std::to_string(x);
}

}  // namespace

DenseSum::DenseSum(uint32_t shard_id, uint32_t num_shards, int timeout_ms)
    : shard_id_(shard_id), num_shards_(num_shards), timeout_(timeout_ms) {
  watchdog_ = std::thread([this] { Watch(); });
}

DenseSum::~DenseSum() {
  Callbacks callbacks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    FailLocked(Status::Unavailable("shard " + std::to_string(shard_id_) + " is shutting down"),
               &callbacks);
  }
  cv_.notify_all();
  watchdog_.join();
  Run(&callbacks);
}

uint64_t DenseSum::steps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return steps_;
}

uint64_t DenseSum::failed_steps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_steps_;
}

std::string DenseSum::StepName() const {
  return "pass " + std::to_string(pass_) + " step " + std::to_string(step_);
}

void DenseSum::Run(Callbacks* callbacks) {
  for (auto& [done, result] : *callbacks) done(std::move(result));
  callbacks->clear();
}

void DenseSum::Contribute(const DenseContribution& c, const PayloadBuffer* payload, Done done) {
  const std::string who = "worker " + std::to_string(c.worker_index) + " (" + c.peer + ")";
  const auto refuse = [&](const Status& st) {
    DenseSumResult r;
    r.status = st;
    done(std::move(r));
  };
  if (c.num_workers < 2 || c.num_workers > kMaxWorkers || c.worker_index >= c.num_workers) {
    refuse(Status::InvalidArgument("DENSE_SUM from " + who + ": worker " +
                                   std::to_string(c.worker_index) + " of " +
                                   std::to_string(c.num_workers) + " (a dense sum needs 2 to " +
                                   std::to_string(kMaxWorkers) + " workers)"));
    return;
  }
  const DenseSlice slice = DenseSliceOf(c.dense_size, shard_id_, num_shards_);
  const uint64_t want = c.has_data ? 4 * slice.size() : 0;
  if (payload->size() != want) {
    refuse(Status::InvalidArgument(
        "DENSE_SUM from " + who + ": " + std::to_string(payload->size()) +
        " bytes of gradient; shard " + std::to_string(shard_id_) + " of " +
        std::to_string(num_shards_) + " sums " + std::to_string(slice.size()) + " of the " +
        std::to_string(c.dense_size) + " floats" + (c.has_data ? "" : ", and none without data")));
    return;
  }
  Callbacks callbacks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) {
      DenseSumResult r;
      r.status = closed_why_;
      callbacks.emplace_back(std::move(done), std::move(r));
    } else if ((failed_ && c.pass == failed_pass_ && c.step == failed_step_) ||
               (aborted_pass_ != 0 && c.pass == aborted_pass_)) {
      DenseSumResult r;
      r.status = aborted_pass_ != 0 && c.pass == aborted_pass_ ? abort_ : failure_;
      callbacks.emplace_back(std::move(done), std::move(r));
    } else if (open_ && (c.pass != pass_ || c.step != step_ || c.num_workers != num_workers_ ||
                         c.dense_size != dense_size_)) {
      // Workers out of step with each other: nothing of this step can be trusted.
      const Status why = Status::Internal(
          "dense sum of " + StepName() + " (" + std::to_string(num_workers_) + " workers, " +
          std::to_string(dense_size_) + " floats): " + who + " sent pass " +
          std::to_string(c.pass) + " step " + std::to_string(c.step) + " (" +
          std::to_string(c.num_workers) + " workers, " + std::to_string(c.dense_size) + " floats)");
      FailLocked(why, &callbacks);
      DenseSumResult r;
      r.status = why;
      callbacks.emplace_back(std::move(done), std::move(r));
    } else {
      if (!open_) {
        open_ = true;
        pass_ = c.pass;
        step_ = c.step;
        num_workers_ = c.num_workers;
        dense_size_ = c.dense_size;
        arrived_ = 0;
        if (slots_.size() < num_workers_) slots_.resize(num_workers_);
        for (uint32_t i = 0; i < num_workers_; ++i) slots_[i].arrived = false;
        deadline_ = std::chrono::steady_clock::now() + timeout_;
        cv_.notify_all();
      }
      Slot& slot = slots_[c.worker_index];
      if (slot.arrived) {
        DenseSumResult r;
        r.status = Status::InvalidArgument("dense sum of " + StepName() + ": " + who +
                                           " sent its slice twice");
        callbacks.emplace_back(std::move(done), std::move(r));
      } else {
        slot.arrived = true;
        slot.has_data = c.has_data;
        slot.peer = c.peer;
        slot.grad = reinterpret_cast<const float*>(payload->data());
        slot.done = std::move(done);
        if (++arrived_ == num_workers_) FinishLocked(SumLocked(), &callbacks);
      }
    }
  }
  Run(&callbacks);
}

DenseSumResult DenseSum::SumLocked() {
  DenseSumResult r;
  const DenseSlice slice = DenseSliceOf(dense_size_, shard_id_, num_shards_);
  const uint64_t n = slice.size();
  // The sum first, then one check of it: a non-finite part makes the sum non-finite (an
  // infinity stays one or meets its opposite as a NaN), so only then are the parts
  // searched, in worker order, for the one to name. The workers wait meanwhile: these
  // loops must vectorize.
  std::shared_ptr<PayloadBuffer> sum;
  float* out = nullptr;
  for (uint32_t i = 0; i < num_workers_; ++i) {
    Slot& s = slots_[i];
    if (!s.has_data) continue;
    ++r.workers_with_data;
    const float* g = s.grad;
    if (!sum) {
      try {
        sum = std::make_shared<PayloadBuffer>();
        sum->Resize(4 * n);
      } catch (const std::bad_alloc&) {
        r.status =
            Status::ResourceExhausted("shard " + std::to_string(shard_id_) +
                                      " is out of memory for the dense sum of " + StepName());
        r.workers_with_data = 0;
        return r;
      }
      out = reinterpret_cast<float*>(sum->data());
      std::memcpy(out, g, 4 * n);
    } else {
      // The star's order: ((g0 + g1) + g2) + ..., element by element.
      for (uint64_t k = 0; k < n; ++k) out[k] += g[k];
    }
  }
  if (!sum || AllFinite(out, n)) {
    r.sum = std::move(sum);
    return r;
  }
  r.workers_with_data = 0;
  for (uint32_t i = 0; i < num_workers_; ++i) {
    const Slot& s = slots_[i];
    if (!s.has_data) continue;
    const float* g = s.grad;
    const size_t bad = FirstNonFinite(g, n);
    if (bad < n) {
      r.status = Status::InvalidArgument(
          "worker " + std::to_string(i) + " (" + s.peer + ") sent a non-finite dense gradient in " +
          StepName() + " (value " + std::to_string(slice.begin + bad) + " is " + FloatText(g[bad]) +
          "); nothing of the pass is committed or published");
      return r;
    }
  }
  r.status = Status::InvalidArgument("the workers' dense gradients of " + StepName() +
                                     " sum to a non-finite value; nothing of the pass is "
                                     "committed or published");
  return r;
}

void DenseSum::FinishLocked(const DenseSumResult& result, Callbacks* out) {
  if (!open_) return;
  for (uint32_t i = 0; i < num_workers_; ++i) {
    Slot& s = slots_[i];
    if (!s.arrived) continue;
    out->emplace_back(std::move(s.done), result);
    s.done = nullptr;
    s.grad = nullptr;  // the connection may reuse it once its reply is out
    s.arrived = false;
  }
  if (result.status.ok()) {
    ++steps_;
  } else {
    ++failed_steps_;
    failed_ = true;
    failed_pass_ = pass_;
    failed_step_ = step_;
    failure_ = result.status;
    LOG(WARNING) << "shard " << shard_id_ << ": dense sum failed: " << result.status.ToString();
  }
  open_ = false;
}

void DenseSum::FailLocked(const Status& why, Callbacks* out) {
  DenseSumResult r;
  r.status = why;
  FinishLocked(r, out);
}

template <typename Then>
void DenseSum::FailOpenStep(const Status& why, Then then) {
  Callbacks callbacks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    FailLocked(why, &callbacks);
    then();
  }
  Run(&callbacks);
}

void DenseSum::Abort(uint32_t pass, const Status& why) {
  FailOpenStep(why, [&] {
    aborted_pass_ = pass;
    abort_ = why;
  });
}

void DenseSum::Close(const Status& why) {
  FailOpenStep(why, [&] {
    closed_ = true;
    closed_why_ = why;
  });
}

void DenseSum::Reset(const Status& why) {
  FailOpenStep(why, [&] {
    failed_ = false;
    aborted_pass_ = 0;
  });
}

void DenseSum::Watch() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (!open_) {
      cv_.wait(lock);
      continue;
    }
    const auto deadline = deadline_;
    if (std::chrono::steady_clock::now() < deadline) {
      cv_.wait_until(lock, deadline);
      continue;
    }
    std::string missing;
    for (uint32_t i = 0; i < num_workers_; ++i) {
      if (slots_[i].arrived) continue;
      missing += (missing.empty() ? "" : ", ") + std::to_string(i);
    }
    Callbacks callbacks;
    FailLocked(
        Status::DeadlineExceeded("dense sum of " + StepName() + " on shard " +
                                 std::to_string(shard_id_) + ": no slice from worker" +
                                 (missing.find(',') == std::string::npos ? " " : "s ") + missing +
                                 " within " + std::to_string(timeout_.count()) + " ms"),
        &callbacks);
    lock.unlock();
    Run(&callbacks);
    lock.lock();
  }
}

}  // namespace pepnet
