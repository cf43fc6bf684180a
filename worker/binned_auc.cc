#include "worker/binned_auc.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace pepnet {

void BinnedAuc::Add(float score, bool positive) {
  // NaN and below 0 go to the first bucket, 1 and above (infinity too) to the last.
  int b = 0;
  if (score >= 1) {
    b = kBins - 1;
  } else if (score > 0) {
    b = std::min(kBins - 1, static_cast<int>(score * kBins));
  }
  ++(positive ? pos_ : neg_)[b];
}

uint64_t BinnedAuc::samples() const {
  uint64_t n = 0;
  for (int b = 0; b < kBins; ++b) n += pos_[b] + neg_[b];
  return n;
}

double BinnedAuc::Auc() const {
  double p = 0, n = 0, ordered = 0;
  // From the lowest bucket up: a positive ranks above every negative below its bucket
  // and ties with those in it.
  for (int b = 0; b < kBins; ++b) {
    ordered += pos_[b] * (n + 0.5 * neg_[b]);
    p += pos_[b];
    n += neg_[b];
  }
  if (p == 0 || n == 0) return std::numeric_limits<double>::quiet_NaN();
  return ordered / (p * n);
}

double BinnedAuc::ErrorBound() const {
  double p = 0, n = 0, tied = 0;
  for (int b = 0; b < kBins; ++b) {
    tied += double(pos_[b]) * neg_[b];
    p += pos_[b];
    n += neg_[b];
  }
  if (p == 0 || n == 0) return std::numeric_limits<double>::quiet_NaN();
  return tied / (2 * p * n);
}

std::string BinnedAuc::Serialize() const {
  std::string out(2 * kBins * 8, '\0');
  std::memcpy(&out[0], pos_.data(), kBins * 8);
  std::memcpy(&out[kBins * 8], neg_.data(), kBins * 8);
  return out;
}

Status BinnedAuc::Deserialize(const std::string& bytes) {
  if (bytes.size() != 2 * kBins * 8) {
    return Status::Corruption("run AUC counters of " + std::to_string(bytes.size()) +
                              " bytes; expected " + std::to_string(2 * kBins * 8));
  }
  std::memcpy(pos_.data(), bytes.data(), kBins * 8);
  std::memcpy(neg_.data(), bytes.data() + kBins * 8, kBins * 8);
  return Status::OK();
}

}  // namespace pepnet
