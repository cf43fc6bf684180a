#include "ps/slot_shard.h"

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include <glog/logging.h>

namespace pepnet {
namespace {

constexpr uint32_t kInitialCapacity = 16;
constexpr uint32_t kRowMask = 0x00FFFFFFu;
// glibc keeps one size word in front of every block.
constexpr uint64_t kMallocHeaderBytes = sizeof(size_t);

void* CheckedCalloc(size_t n, size_t size) {
  void* p = std::calloc(n, size);
  CHECK(p != nullptr) << "out of memory allocating " << n * size << " bytes";
  return p;
}

}  // namespace

uint64_t AllocatedBytes(const void* block) {
  return block ? malloc_usable_size(const_cast<void*>(block)) + kMallocHeaderBytes : 0;
}

SlotShard::SlotShard(const RowLayout* layout, uint64_t salt) : layout_(layout), salt_(salt) {}

SlotShard::~SlotShard() {
  std::free(index_);
  for (uint32_t i = 0; i < num_chunks_; ++i) std::free(chunks_[i]);
  std::free(chunks_);
}

void SlotShard::PrefetchIndex(uint64_t hash) const {
  if (capacity_ != 0) __builtin_prefetch(&index_[HomeSlot(hash)]);
}

void SlotShard::PrefetchRow(uint64_t hash) const {
  if (capacity_ == 0) return;
  const uint32_t tag = Tag(hash);
  uint32_t pos = HomeSlot(hash);
  // Probe sequences are short at load <= 0.85; a few entries cover nearly all keys.
  for (int i = 0; i < 4; ++i) {
    const uint32_t entry = index_[pos];
    if (entry == 0) return;
    if ((entry & ~kRowMask) == tag) {
      const char* row = RowAt((entry & kRowMask) - 1);
      __builtin_prefetch(row);
      __builtin_prefetch(row + layout_->row_bytes - 1);
      return;
    }
    pos = (pos + 1 == capacity_) ? 0 : pos + 1;
  }
}

char* SlotShard::Find(uint64_t key, uint64_t hash) const {
  if (capacity_ == 0) return nullptr;
  const uint32_t tag = Tag(hash);
  for (uint32_t pos = HomeSlot(hash);; pos = (pos + 1 == capacity_) ? 0 : pos + 1) {
    const uint32_t entry = index_[pos];
    if (entry == 0) return nullptr;
    if ((entry & ~kRowMask) == tag) {
      char* row = RowAt((entry & kRowMask) - 1);
      if (RowLayout::Key(row) == key) return row;
    }
  }
}

char* SlotShard::FindOrInsert(uint64_t key, uint64_t hash, uint64_t seed, uint16_t pass,
                              bool* created) {
  *created = false;
  if (capacity_ != 0) {
    const uint32_t tag = Tag(hash);
    uint32_t pos = HomeSlot(hash);
    for (;; pos = (pos + 1 == capacity_) ? 0 : pos + 1) {
      const uint32_t entry = index_[pos];
      if (entry == 0) break;
      if ((entry & ~kRowMask) == tag) {
        char* row = RowAt((entry & kRowMask) - 1);
        if (RowLayout::Key(row) == key) return row;
      }
    }
    // `pos` is the empty entry ending the probe; use it unless the index must grow.
    if (uint64_t{num_rows_ + 1} * 100 <= uint64_t{capacity_} * 85) {
      if (num_rows_ >= kMaxRows) return nullptr;
      char* row = AppendRow();
      layout_->InitRow(row, key, seed, pass);
      index_[pos] = tag | num_rows_;  // num_rows_ is now this row's id + 1
      *created = true;
      return row;
    }
  }
  if (num_rows_ >= kMaxRows) return nullptr;
  GrowIndex();
  char* row = AppendRow();
  layout_->InitRow(row, key, seed, pass);
  uint32_t pos = HomeSlot(hash);
  while (index_[pos] != 0) pos = (pos + 1 == capacity_) ? 0 : pos + 1;
  index_[pos] = Tag(hash) | num_rows_;
  *created = true;
  return row;
}

char* SlotShard::AppendRow() {
  const uint32_t id = num_rows_;
  if (id % kRowsPerChunk == 0 && id / kRowsPerChunk == num_chunks_) {
    if (num_chunks_ == chunk_slots_) {
      chunk_slots_ = chunk_slots_ == 0 ? 4 : chunk_slots_ * 2;
      chunks_ = static_cast<char**>(std::realloc(chunks_, sizeof(char*) * chunk_slots_));
      CHECK(chunks_ != nullptr) << "out of memory growing the chunk directory";
    }
    chunks_[num_chunks_++] = static_cast<char*>(CheckedCalloc(kRowsPerChunk, layout_->row_bytes));
  }
  ++num_rows_;
  return RowAt(id);
}

void SlotShard::GrowIndex() {
  const uint32_t new_capacity =
      capacity_ == 0 ? kInitialCapacity : static_cast<uint32_t>(uint64_t{capacity_} * 3 / 2);
  auto* fresh = static_cast<uint32_t*>(CheckedCalloc(new_capacity, sizeof(uint32_t)));
  uint32_t* old = index_;
  const uint32_t old_capacity = capacity_;
  index_ = fresh;
  capacity_ = new_capacity;
  for (uint32_t i = 0; i < old_capacity; ++i) {
    const uint32_t entry = old[i];
    if (entry == 0) continue;
    const uint64_t hash = TableHash(RowLayout::Key(RowAt((entry & kRowMask) - 1)), salt_);
    uint32_t pos = HomeSlot(hash);
    while (index_[pos] != 0) pos = (pos + 1 == capacity_) ? 0 : pos + 1;
    index_[pos] = entry;
  }
  std::free(old);
}

TableBytes SlotShard::Bytes() const {
  TableBytes b;
  const uint64_t rows = num_rows_;
  b.payload = rows * (8 + 4ull * layout_->dim);
  b.metadata = rows * sizeof(RowMeta);
  b.optimizer = rows * 4ull * layout_->acc_floats;
  b.index = AllocatedBytes(index_);
  uint64_t chunk_bytes = 0;
  for (uint32_t i = 0; i < num_chunks_; ++i) chunk_bytes += AllocatedBytes(chunks_[i]);
  b.slack = chunk_bytes - rows * layout_->row_bytes + AllocatedBytes(chunks_);
  return b;
}

}  // namespace pepnet
