// Which floats of the dense gradient each shard sums (docs/architecture.md, "The dense
// sum"): workers and shards must agree on it, so it lives in one place.
#ifndef PEPNET_COMMON_DENSE_SLICE_H_
#define PEPNET_COMMON_DENSE_SLICE_H_

#include <cstdint>

namespace pepnet {

// The floats [begin, end) of a `dense_size`-float gradient that shard `shard` of
// `num_shards` sums: contiguous, in shard order, sizes differing by at most one.
struct DenseSlice {
  uint64_t begin = 0, end = 0;
  uint64_t size() const { return end - begin; }
};

inline DenseSlice DenseSliceOf(uint64_t dense_size, uint32_t shard, uint32_t num_shards) {
  // 128-bit products: dense_size * (shard + 1) cannot overflow.
  using u128 = unsigned __int128;
  DenseSlice s;
  s.begin = static_cast<uint64_t>(static_cast<u128>(dense_size) * shard / num_shards);
  s.end = static_cast<uint64_t>(static_cast<u128>(dense_size) * (shard + 1) / num_shards);
  return s;
}

}  // namespace pepnet

#endif  // PEPNET_COMMON_DENSE_SLICE_H_
