// A request latency histogram with fixed buckets, recorded from any thread with two
// relaxed atomic adds (no lock on the request path) and read for /metrics.
#ifndef PEPNET_COMMON_LATENCY_HISTOGRAM_H_
#define PEPNET_COMMON_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace pepnet {

class LatencyHistogram {
 public:
  // Upper bounds in seconds, 50 µs to 10 s: pulls of a few rows to whole-pass requests.
  static constexpr std::array<double, 16> kBounds = {50e-6,  100e-6, 250e-6, 500e-6, 1e-3,   2.5e-3,
                                                     5e-3,   10e-3,  25e-3,  50e-3,  100e-3, 250e-3,
                                                     500e-3, 1.0,    2.5,    10.0};

  void Observe(std::chrono::steady_clock::duration d) {
    const double s = std::chrono::duration<double>(d).count();
    size_t i = 0;
    while (i < kBounds.size() && s > kBounds[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()),
        std::memory_order_relaxed);
  }
  void ObserveSince(std::chrono::steady_clock::time_point start) {
    Observe(std::chrono::steady_clock::now() - start);
  }

  // Per bucket (the last: over the largest bound), not cumulative. Buckets are read one
  // after another, so a read during requests may be one observation off the sum.
  uint64_t count(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
  static constexpr size_t num_buckets() { return kBounds.size() + 1; }
  double sum_seconds() const { return sum_ns_.load(std::memory_order_relaxed) / 1e9; }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> counts_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_LATENCY_HISTOGRAM_H_
