// KeyDeduper: finds the distinct keys of a batch in one pass over a scratch hash table.
// Reuses its memory across calls; one instance per thread (not thread-safe).
#ifndef PEPNET_COMMON_KEY_DEDUP_H_
#define PEPNET_COMMON_KEY_DEDUP_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common/hash.h"

namespace pepnet {

class KeyDeduper {
 public:
  // Fills `unique` with the distinct keys in order of first appearance and `position[i]`
  // with the index in `unique` of keys[i]. Returns unique->size().
  size_t Dedup(const uint64_t* keys, size_t n, std::vector<uint64_t>* unique,
               std::vector<uint32_t>* position) {
    Reset(n);
    unique->clear();
    position->resize(n);
    for (size_t i = 0; i < n; ++i) {
      const uint64_t key = keys[i];
      size_t pos = Mix64(key ^ seed_) & mask_;
      while (true) {
        const uint32_t v = slots_[pos];
        if (v == 0) {
          slots_[pos] = static_cast<uint32_t>(unique->size()) + 1;
          keys_[pos] = key;
          (*position)[i] = static_cast<uint32_t>(unique->size());
          unique->push_back(key);
          break;
        }
        if (keys_[pos] == key) {
          (*position)[i] = v - 1;
          break;
        }
        pos = (pos + 1) & mask_;
      }
    }
    return unique->size();
  }

  // True when keys[0..n) are pairwise distinct.
  bool AllDistinct(const uint64_t* keys, size_t n) {
    Reset(n);
    for (size_t i = 0; i < n; ++i) {
      const uint64_t key = keys[i];
      size_t pos = Mix64(key ^ seed_) & mask_;
      while (slots_[pos] != 0) {
        if (keys_[pos] == key) return false;
        pos = (pos + 1) & mask_;
      }
      slots_[pos] = 1;
      keys_[pos] = key;
    }
    return true;
  }

 private:
  void Reset(size_t n) {
    size_t capacity = 16;
    while (capacity < 2 * n) capacity *= 2;
    if (slots_.size() != capacity) {
      // Sized to the request: a huge request's table is not kept for small ones.
      std::vector<uint32_t>(capacity, 0).swap(slots_);
      std::vector<uint64_t>(capacity).swap(keys_);
    } else {
      std::memset(slots_.data(), 0, capacity * sizeof(uint32_t));
    }
    mask_ = capacity - 1;
  }

  // Random per instance, so that chosen keys cannot all land on one probe sequence.
  uint64_t seed_ = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  std::vector<uint32_t> slots_;  // 0 = empty, else unique index + 1
  std::vector<uint64_t> keys_;
  size_t mask_ = 0;
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_KEY_DEDUP_H_
