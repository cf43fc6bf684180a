// AdmissionFilter: how many times keys without a row have been seen, in bounded memory.
//
// A count-min sketch of one-byte saturating counters, 3 counters per key, updated
// conservatively (only the counters at the key's current minimum grow), so a key's
// estimate never undercounts and overcounts only through collisions. A table with an
// admission threshold k gives a new key its row once the estimate reaches k.
//
// Not thread-safe: each table partition owns one and uses it under its lock.
#ifndef PEPNET_PS_ADMISSION_FILTER_H_
#define PEPNET_PS_ADMISSION_FILTER_H_

#include <cstdint>
#include <memory>

namespace pepnet {

class AdmissionFilter {
 public:
  // `bytes` counters (at least 1); `salt` decorrelates the positions from the table index.
  AdmissionFilter(uint64_t bytes, uint64_t salt);

  // Adds `count` sightings of the key and returns its new estimate (at most 255).
  uint32_t Add(uint64_t key, uint32_t count);
  // The key's current estimate.
  uint32_t Estimate(uint64_t key) const;
  // Halves every counter (rounding down): the filter forgets keys that stopped coming.
  void Halve();

  uint64_t size() const { return size_; }
  // The counter array (its allocation is what the filter costs).
  const void* data() const { return counters_.get(); }
  // Replaces the counters with `n` stored ones (a load from storage); false if n != size().
  bool Restore(const void* counters, uint64_t n);

 private:
  static constexpr int kHashes = 3;
  void Positions(uint64_t key, uint64_t pos[kHashes]) const;

  const uint64_t size_;
  const uint64_t salt_;
  std::unique_ptr<uint8_t[]> counters_;
};

}  // namespace pepnet

#endif  // PEPNET_PS_ADMISSION_FILTER_H_
