// The shard's dense sum: the workers' slices summed in worker order whatever order they
// arrive in, and every way a step can fail reported to all of its workers with a reason.
#include "ps/dense_sum.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <limits>
#include <random>
#include <thread>

namespace pepnet {
namespace {

constexpr uint64_t kDense = 1001;  // odd: the two shards' slices differ in size

DenseContribution Step(uint32_t worker, uint32_t workers, uint64_t step, bool has_data,
                       uint32_t pass = 1) {
  DenseContribution c;
  c.pass = pass;
  c.step = step;
  c.worker_index = worker;
  c.num_workers = workers;
  c.has_data = has_data;
  c.dense_size = kDense;
  c.peer = "127.0.0.1:" + std::to_string(4000 + worker);
  return c;
}

std::future<DenseSumResult> Send(DenseSum* sum, const DenseContribution& c,
                                 const std::vector<float>& slice) {
  auto promise = std::make_shared<std::promise<DenseSumResult>>();
  std::future<DenseSumResult> future = promise->get_future();
  // Borrowed until the answer, as a connection lends its buffer.
  auto payload = std::make_shared<PayloadBuffer>();
  payload->Resize(c.has_data ? 4 * slice.size() : 0);
  if (c.has_data) std::memcpy(payload->data(), slice.data(), 4 * slice.size());
  sum->Contribute(c, payload.get(),
                  [promise, payload](DenseSumResult r) { promise->set_value(std::move(r)); });
  return future;
}

DenseSumResult Get(std::future<DenseSumResult>* f) {
  EXPECT_EQ(f->wait_for(std::chrono::seconds(30)), std::future_status::ready);
  return f->get();
}

std::vector<float> Random(uint64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1e3f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(DenseSliceTest, SlicesCoverTheGradientInShardOrder) {
  uint64_t next = 0;
  for (uint32_t s = 0; s < 3; ++s) {
    const DenseSlice slice = DenseSliceOf(kDense, s, 3);
    EXPECT_EQ(slice.begin, next);
    EXPECT_GE(slice.size(), kDense / 3);
    EXPECT_LE(slice.size(), kDense / 3 + 1);
    next = slice.end;
  }
  EXPECT_EQ(next, kDense);
}

TEST(DenseSumTest, SumsInWorkerOrderWhateverTheArrivalOrder) {
  DenseSum sum(1, 2, 30000);
  const uint64_t n = DenseSliceOf(kDense, 1, 2).size();
  std::vector<std::vector<float>> g;
  for (uint32_t w = 0; w < 4; ++w) g.push_back(Random(n, w));
  // ((g0 + g1) + g3), element by element; worker 2 has no data.
  std::vector<float> want = g[0];
  for (uint64_t k = 0; k < n; ++k) want[k] += g[1][k];
  for (uint64_t k = 0; k < n; ++k) want[k] += g[3][k];
  for (uint64_t step = 0; step < 3; ++step) {
    std::vector<std::future<DenseSumResult>> replies(4);
    // The arrivals in a different order every step.
    for (uint32_t w : {3u, 1u, 2u, 0u}) {
      const uint32_t worker = (w + step) % 4;
      replies[worker] = Send(&sum, Step(worker, 4, step, worker != 2), g[worker]);
    }
    for (uint32_t w = 0; w < 4; ++w) {
      DenseSumResult r = Get(&replies[w]);
      ASSERT_TRUE(r.status.ok()) << r.status.ToString();
      EXPECT_EQ(r.workers_with_data, 3u);
      ASSERT_NE(r.sum, nullptr);
      ASSERT_EQ(r.sum->size(), 4 * n);
      EXPECT_EQ(std::memcmp(r.sum->data(), want.data(), 4 * n), 0) << "worker " << w;
    }
  }
  EXPECT_EQ(sum.steps(), 3u);
  EXPECT_EQ(sum.failed_steps(), 0u);
}

TEST(DenseSumTest, ConcurrentWorkersAgreeOnEveryStep) {
  DenseSum sum(0, 1, 30000);
  constexpr int kWorkers = 3, kSteps = 50;
  std::vector<std::thread> threads;
  std::vector<std::vector<std::vector<float>>> seen(kWorkers);
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      for (int s = 0; s < kSteps; ++s) {
        auto f = Send(&sum, Step(w, kWorkers, s, true), Random(kDense, 100 * s + w));
        DenseSumResult r = Get(&f);
        ASSERT_TRUE(r.status.ok()) << r.status.ToString();
        const float* p = reinterpret_cast<const float*>(r.sum->data());
        seen[w].emplace_back(p, p + kDense);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int w = 1; w < kWorkers; ++w) EXPECT_EQ(seen[w], seen[0]);
}

TEST(DenseSumTest, AStepWithoutDataTellsEveryWorkerTheTrainingIsOver) {
  DenseSum sum(0, 2, 30000);
  auto a = Send(&sum, Step(0, 2, 7, false), {});
  auto b = Send(&sum, Step(1, 2, 7, false), {});
  for (auto* f : {&a, &b}) {
    DenseSumResult r = Get(f);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_EQ(r.workers_with_data, 0u);
    EXPECT_EQ(r.sum, nullptr);
  }
}

TEST(DenseSumTest, ANonFiniteSliceFailsTheStepNamingItsWorker) {
  DenseSum sum(1, 2, 30000);
  const DenseSlice slice = DenseSliceOf(kDense, 1, 2);
  std::vector<float> good = Random(slice.size(), 1), bad = good;
  bad[5] = std::numeric_limits<float>::infinity();
  auto a = Send(&sum, Step(0, 3, 0, true), good);
  auto b = Send(&sum, Step(1, 3, 0, true), bad);
  auto c = Send(&sum, Step(2, 3, 0, true), good);
  for (auto* f : {&a, &b, &c}) {
    DenseSumResult r = Get(f);
    EXPECT_EQ(r.status.code(), Status::kInvalidArgument);
    EXPECT_NE(r.status.message().find("worker 1 (127.0.0.1:4001) sent a non-finite dense "
                                      "gradient in pass 1 step 0 (value " +
                                      std::to_string(slice.begin + 5) + " is inf"),
              std::string::npos)
        << r.status.ToString();
  }
  // Finite parts whose sum overflows are refused too.
  std::vector<float> huge(slice.size(), 3e38f);
  auto d = Send(&sum, Step(0, 2, 1, true), huge);
  auto e = Send(&sum, Step(1, 2, 1, true), huge);
  for (auto* f : {&d, &e}) {
    DenseSumResult r = Get(f);
    EXPECT_NE(r.status.message().find("sum to a non-finite value"), std::string::npos)
        << r.status.ToString();
  }
  EXPECT_EQ(sum.failed_steps(), 2u);
}

TEST(DenseSumTest, AMissingWorkerFailsTheStepWithinTheTimeoutNamingIt) {
  DenseSum sum(0, 1, 300);
  const auto start = std::chrono::steady_clock::now();
  auto a = Send(&sum, Step(0, 4, 3, true), Random(kDense, 1));
  auto c = Send(&sum, Step(2, 4, 3, false), {});
  for (auto* f : {&a, &c}) {
    DenseSumResult r = Get(f);
    EXPECT_EQ(r.status.code(), Status::kDeadlineExceeded);
    EXPECT_NE(r.status.message().find("no slice from workers 1, 3 within 300 ms"),
              std::string::npos)
        << r.status.ToString();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300));
  // The latecomer of that step hears the same at once instead of waiting again.
  auto late = Send(&sum, Step(1, 4, 3, false), {});
  EXPECT_EQ(late.wait_for(std::chrono::milliseconds(100)), std::future_status::ready);
  EXPECT_EQ(late.get().status.code(), Status::kDeadlineExceeded);
}

TEST(DenseSumTest, WorkersOutOfStepFailTheStep) {
  DenseSum sum(0, 1, 30000);
  auto a = Send(&sum, Step(0, 2, 4, false), {});
  auto b = Send(&sum, Step(1, 2, 5, false), {});
  for (auto* f : {&a, &b}) {
    DenseSumResult r = Get(f);
    EXPECT_EQ(r.status.code(), Status::kInternal);
    EXPECT_NE(r.status.message().find("worker 1 (127.0.0.1:4001) sent pass 1 step 5"),
              std::string::npos)
        << r.status.ToString();
  }
}

TEST(DenseSumTest, MalformedSlicesAreRefusedAlone) {
  DenseSum sum(0, 2, 30000);
  const uint64_t n = DenseSliceOf(kDense, 0, 2).size();
  auto open = Send(&sum, Step(0, 2, 0, true), Random(n, 1));
  auto short_slice = Send(&sum, Step(1, 2, 0, true), Random(n - 1, 1));
  DenseSumResult r = Get(&short_slice);
  EXPECT_EQ(r.status.code(), Status::kInvalidArgument);
  EXPECT_NE(r.status.message().find("sums " + std::to_string(n) + " of the 1001 floats"),
            std::string::npos)
      << r.status.ToString();
  auto twice = Send(&sum, Step(0, 2, 0, true), Random(n, 1));
  EXPECT_NE(Get(&twice).status.message().find("sent its slice twice"), std::string::npos);
  auto alone = Send(&sum, Step(0, 1, 0, true), Random(n, 1));
  EXPECT_EQ(Get(&alone).status.code(), Status::kInvalidArgument);
  // The step still completes with its real second worker.
  auto second = Send(&sum, Step(1, 2, 0, true), Random(n, 2));
  EXPECT_TRUE(Get(&second).status.ok());
  EXPECT_TRUE(Get(&open).status.ok());
}

TEST(DenseSumTest, AbortFailsThePassUntilResetStartsAfresh) {
  DenseSum sum(0, 1, 30000);
  auto waiting = Send(&sum, Step(0, 2, 9, false), {});
  sum.Abort(1, Status::Unavailable("the coordinator gave up on pass 1"));
  EXPECT_EQ(Get(&waiting).status.code(), Status::kUnavailable);
  auto later = Send(&sum, Step(1, 2, 10, false), {});
  EXPECT_EQ(Get(&later).status.message(), "the coordinator gave up on pass 1");
  // After the rollback the pass is tried again from step 0.
  sum.Reset(Status::Unavailable("rolled back"));
  auto a = Send(&sum, Step(0, 2, 0, false, 1), {});
  auto b = Send(&sum, Step(1, 2, 0, false, 1), {});
  EXPECT_TRUE(Get(&a).status.ok());
  EXPECT_TRUE(Get(&b).status.ok());
}

TEST(DenseSumTest, CloseFailsWhatWaitsAndWhatComes) {
  DenseSum sum(0, 1, 30000);
  auto waiting = Send(&sum, Step(0, 2, 0, false), {});
  sum.Close(Status::Unavailable("shard 0 is shutting down"));
  EXPECT_EQ(Get(&waiting).status.code(), Status::kUnavailable);
  auto later = Send(&sum, Step(1, 2, 0, false), {});
  EXPECT_EQ(Get(&later).status.message(), "shard 0 is shutting down");
}

}  // namespace
}  // namespace pepnet
