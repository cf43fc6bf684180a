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
      Entry& e = Probe(keys[i]);
      if (e.index_plus_one == 0) {
        e.key = keys[i];
        e.index_plus_one = static_cast<uint32_t>(unique->size()) + 1;
        unique->push_back(keys[i]);
      }
      (*position)[i] = e.index_plus_one - 1;
    }
    return unique->size();
  }

  // True when keys[0..n) are pairwise distinct.
  bool AllDistinct(const uint64_t* keys, size_t n) {
    Reset(n);
    for (size_t i = 0; i < n; ++i) {
      Entry& e = Probe(keys[i]);
      if (e.index_plus_one != 0) return false;
      e.key = keys[i];
      e.index_plus_one = 1;
    }
    return true;
  }

 private:
  // Key and mark side by side: one cache line per probe.
  struct Entry {
    uint64_t key;
    uint32_t index_plus_one;  // 0 = empty
  };

  // The entry holding `key`, or the empty entry where it belongs.
  Entry& Probe(uint64_t key) {
    size_t pos = Mix64(key ^ seed_) & mask_;
    while (table_[pos].index_plus_one != 0 && table_[pos].key != key) pos = (pos + 1) & mask_;
    return table_[pos];
  }

  void Reset(size_t n) {
    size_t capacity = 16;
    while (capacity < 2 * n) capacity *= 2;
    if (table_.size() != capacity) {
      // Sized to the request: a huge request's table is not kept for small ones.
      std::vector<Entry>(capacity, Entry{0, 0}).swap(table_);
    } else {
      std::memset(static_cast<void*>(table_.data()), 0, capacity * sizeof(Entry));
    }
    mask_ = capacity - 1;
  }

  // Random per instance, so that chosen keys cannot all land on one probe sequence.
  uint64_t seed_ = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  std::vector<Entry> table_;
  size_t mask_ = 0;
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_KEY_DEDUP_H_
