// Stable 64-bit mixing used for key routing, table placement and row initialization.
// These functions define persisted and on-the-wire behaviour (which shard owns a key,
// what a new row's initial values are): never change them.
#ifndef PEPNET_COMMON_HASH_H_
#define PEPNET_COMMON_HASH_H_

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>

namespace pepnet {

// splitmix64 finalizer: a bijection on 64-bit values with good avalanche.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The shard that owns `key` among `num_shards` (see docs/architecture.md).
inline uint32_t ShardOfKey(uint64_t key, uint32_t num_shards) {
  return static_cast<uint32_t>((static_cast<unsigned __int128>(Mix64(key)) * num_shards) >> 64);
}

// Slot of a feature key: its top `slot_bits` bits.
inline uint32_t SlotOfKey(uint64_t key, uint32_t slot_bits) {
  return static_cast<uint32_t>(key >> (64 - slot_bits));
}

// How keys appear in messages: fixed-width hex, so the slot bits stand out.
inline std::string FormatKey(uint64_t key) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%016" PRIx64, key);
  return buf;
}

// A feature key: `slot` in the top slot_bits bits, the top bits of `value_hash` below.
inline uint64_t MakeFeatureKey(uint32_t slot, uint64_t value_hash, uint32_t slot_bits) {
  return (uint64_t{slot} << (64 - slot_bits)) | (value_hash >> slot_bits);
}

}  // namespace pepnet

#endif  // PEPNET_COMMON_HASH_H_
