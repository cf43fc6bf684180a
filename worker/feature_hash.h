// Feature keys from raw values: slot ID in the top slot_bits bits, a stable 64-bit hash
// of the raw bytes below. The hash is part of the model's identity (a changed hash
// would orphan every trained row): never change it.
//
// Collisions: two distinct raw values of one slot share a key with probability
// 2^-(64 - slot_bits) (2^-54 with the default 10 bits); among n distinct values of a slot
// about n^2 / 2^(65 - slot_bits) pairs collide: ~0.003 pairs for 10^7 values, ~0.28 for
// 10^8. A collision merges the two values into one embedding row.
#ifndef PEPNET_WORKER_FEATURE_HASH_H_
#define PEPNET_WORKER_FEATURE_HASH_H_

#include <cstddef>
#include <cstdint>

#include "common/hash.h"

namespace pepnet {

// Stable across machines and runs: 8-byte little-endian words chained through Mix64.
inline uint64_t HashBytes(const char* data, size_t size) {
  uint64_t h = Mix64(0x243f6a8885a308d3ULL ^ size);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word = 0;
    for (int b = 7; b >= 0; --b) word = (word << 8) | static_cast<unsigned char>(data[i + b]);
    h = Mix64(h ^ word);
  }
  uint64_t tail = 0;
  for (size_t b = size; b > i; --b) tail = (tail << 8) | static_cast<unsigned char>(data[b - 1]);
  return Mix64(h ^ tail ^ 0x13198a2e03707344ULL);
}

inline uint64_t FeatureKeyOf(uint32_t slot, const char* value, size_t size, uint32_t slot_bits) {
  return MakeFeatureKey(slot, HashBytes(value, size), slot_bits);
}

}  // namespace pepnet

#endif  // PEPNET_WORKER_FEATURE_HASH_H_
