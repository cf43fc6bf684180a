#include "ps/admission_filter.h"

#include <algorithm>
#include <cstring>

#include "common/hash.h"

namespace pepnet {

AdmissionFilter::AdmissionFilter(uint64_t bytes, uint64_t salt)
    : size_(std::max<uint64_t>(bytes, 1)), salt_(salt), counters_(new uint8_t[size_]) {
  std::memset(counters_.get(), 0, size_);
}

void AdmissionFilter::Positions(uint64_t key, uint64_t pos[kHashes]) const {
  // Double hashing from one 64-bit hash: h1 + i * h2, with h2 odd.
  const uint64_t h = Mix64(key ^ salt_);
  const uint64_t h1 = h >> 32, h2 = (h & 0xFFFFFFFFu) | 1;
  for (int i = 0; i < kHashes; ++i) pos[i] = (h1 + i * h2) % size_;
}

uint32_t AdmissionFilter::Estimate(uint64_t key) const {
  uint64_t pos[kHashes];
  Positions(key, pos);
  uint32_t est = 255;
  for (int i = 0; i < kHashes; ++i) est = std::min<uint32_t>(est, counters_[pos[i]]);
  return est;
}

uint32_t AdmissionFilter::Add(uint64_t key, uint32_t count) {
  uint64_t pos[kHashes];
  Positions(key, pos);
  uint32_t est = 255;
  for (int i = 0; i < kHashes; ++i) est = std::min<uint32_t>(est, counters_[pos[i]]);
  const uint32_t updated = std::min<uint32_t>(255, est + count);
  for (int i = 0; i < kHashes; ++i) {
    counters_[pos[i]] = static_cast<uint8_t>(std::max<uint32_t>(counters_[pos[i]], updated));
  }
  return updated;
}

bool AdmissionFilter::Restore(const void* counters, uint64_t n) {
  if (n != size_) return false;
  std::memcpy(counters_.get(), counters, n);
  return true;
}

void AdmissionFilter::Halve() {
  for (uint64_t i = 0; i < size_; ++i) counters_[i] >>= 1;
}

}  // namespace pepnet
