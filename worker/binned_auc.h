// A streaming AUC over a whole run, binned as TensorFlow's tf.metrics.AUC computes it:
// predictions are counted, not kept, in kBins equal-width score buckets per class, and
// the ROC is integrated by the trapezoid rule over the bucket edges. Memory is fixed
// (2 x kBins counters), so it runs over every pass of a stream. kBins is TF's
// num_thresholds set to 1000: its default of 200 leaves a wide error for tasks whose
// scores crowd near 0 (rare positives).
//
// Its error against the exact AUC: pairs of a positive and a negative in the same bucket
// are counted as half a correctly ordered pair (a tie), whatever their order, so
//   |binned - exact| <= sum_b pos_b * neg_b / (2 * P * N)
// which ErrorBound() reports. Not thread-safe.
#ifndef PEPNET_WORKER_BINNED_AUC_H_
#define PEPNET_WORKER_BINNED_AUC_H_

#include <array>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace pepnet {

class BinnedAuc {
 public:
  static constexpr int kBins = 1000;

  void Add(float score, bool positive);
  double Auc() const;  // NaN with only one class
  double ErrorBound() const;
  uint64_t samples() const;

  // Fixed-size counters (host byte order), for a record that survives restarts.
  std::string Serialize() const;
  Status Deserialize(const std::string& bytes);

 private:
  std::array<uint64_t, kBins> pos_{};
  std::array<uint64_t, kBins> neg_{};
};

}  // namespace pepnet

#endif  // PEPNET_WORKER_BINNED_AUC_H_
