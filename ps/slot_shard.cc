#include "ps/slot_shard.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <glog/logging.h>

namespace pepnet {
namespace {

constexpr uint32_t kInitialCapacity = 16;
constexpr uint32_t kRowMask = 0x00FFFFFFu;
// An entry whose row was deleted: probes go on past it, inserts may reuse it. Row field
// 0 never names a row (live entries hold row id + 1).
constexpr uint32_t kTombstone = 0xFF000000u;
// glibc keeps one size word in front of every block.
constexpr uint64_t kMallocHeaderBytes = sizeof(size_t);

void* CheckedCalloc(size_t n, size_t size) {
  void* p = std::calloc(n, size);
  CHECK(p != nullptr) << "out of memory allocating " << n * size << " bytes";
  return p;
}

}  // namespace

uint64_t BlockBytes(uint64_t n) {
  // glibc serves large blocks with mmap (whole pages, 16 bytes of header) and small ones
  // from the heap in 16-byte steps with one size word; 32 bytes at least.
  constexpr uint64_t kMmapThreshold = 128 << 10;
  const uint64_t chunk = std::max<uint64_t>(32, (n + kMallocHeaderBytes + 15) / 16 * 16);
  // An mmapped chunk takes one more size word and whole pages.
  if (n >= kMmapThreshold) return (chunk + kMallocHeaderBytes + 4095) / 4096 * 4096;
  return chunk;
}

SlotShard::SlotShard(const RowLayout* layout, uint64_t salt)
    : layout_(layout),
      salt_(salt),
      chunk_bytes_(BlockBytes(uint64_t{kRowsPerChunk} * layout->row_bytes)) {}

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
    if ((entry & ~kRowMask) == tag && (entry & kRowMask) != 0) {
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
    if ((entry & ~kRowMask) == tag && (entry & kRowMask) != 0) {
      char* row = RowAt((entry & kRowMask) - 1);
      if (RowLayout::Key(row) == key) return row;
    }
  }
}

bool SlotShard::FindId(uint64_t key, uint64_t hash, uint32_t* id) const {
  if (capacity_ == 0) return false;
  const uint32_t tag = Tag(hash);
  for (uint32_t pos = HomeSlot(hash);; pos = Next(pos)) {
    const uint32_t entry = index_[pos];
    if (entry == 0) return false;
    if ((entry & ~kRowMask) == tag && (entry & kRowMask) != 0 &&
        RowLayout::Key(RowAt((entry & kRowMask) - 1)) == key) {
      *id = (entry & kRowMask) - 1;
      return true;
    }
  }
}

bool SlotShard::IndexFull() const {
  return capacity_ == 0 || (uint64_t{num_rows_} + tombstones_ + 1) * 100 > uint64_t{capacity_} * 85;
}

uint32_t SlotShard::CapacityAfterRehash() const {
  if (capacity_ == 0) return kInitialCapacity;
  // Mostly tombstones: clean them out at the same size; else grow.
  if ((uint64_t{num_rows_} + 1) * 100 <= uint64_t{capacity_} * 60) return capacity_;
  return static_cast<uint32_t>(uint64_t{capacity_} * 3 / 2);
}

char* SlotShard::Insert(uint64_t key, uint64_t hash, uint64_t seed, uint16_t pass) {
  if (num_rows_ >= kMaxRows) return nullptr;
  if (IndexFull()) Rehash(CapacityAfterRehash());
  char* row = AppendRow();
  layout_->InitRow(row, key, seed, pass);
  PlaceEntry(hash, num_rows_ - 1);
  return row;
}

char* SlotShard::FindOrInsert(uint64_t key, uint64_t hash, uint64_t seed, uint16_t pass,
                              bool* created) {
  char* row = Find(key, hash);
  *created = row == nullptr;
  return row != nullptr ? row : Insert(key, hash, seed, pass);
}

uint64_t SlotShard::GrowthForInsert() const {
  uint64_t bytes = 0;
  if (num_rows_ == uint64_t{num_chunks_} * kRowsPerChunk) {
    bytes += chunk_bytes_;
    if (num_chunks_ == chunk_slots_) {
      bytes += BlockBytes(sizeof(char*) * (chunk_slots_ == 0 ? 4 : chunk_slots_ * 2));
    }
  }
  if (IndexFull()) bytes += BlockBytes(uint64_t{CapacityAfterRehash()} * 4);
  return bytes;
}

char* SlotShard::AppendRow() {
  const uint32_t id = num_rows_;
  if (id == num_chunks_ * kRowsPerChunk) {
    if (num_chunks_ == chunk_slots_) ResizeChunkDirectory(chunk_slots_ == 0 ? 4 : chunk_slots_ * 2);
    chunks_[num_chunks_++] = static_cast<char*>(CheckedCalloc(kRowsPerChunk, layout_->row_bytes));
    allocated_bytes_ += chunk_bytes_;
  }
  ++num_rows_;
  return RowAt(id);
}

void SlotShard::ResizeChunkDirectory(uint32_t slots) {
  auto* fresh = static_cast<char**>(std::malloc(sizeof(char*) * slots));
  CHECK(fresh != nullptr) << "out of memory growing the chunk directory";
  if (num_chunks_ > 0) std::memcpy(fresh, chunks_, sizeof(char*) * num_chunks_);
  if (chunks_ != nullptr) allocated_bytes_ -= BlockBytes(sizeof(char*) * chunk_slots_);
  std::free(chunks_);
  chunks_ = fresh;
  chunk_slots_ = slots;
  allocated_bytes_ += BlockBytes(sizeof(char*) * chunk_slots_);
}

bool SlotShard::AllocateForLoad(uint32_t rows, uint32_t index_capacity, uint32_t chunk_slots) {
  CHECK(num_rows_ == 0 && chunks_ == nullptr && index_ == nullptr);
  const uint32_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  if (rows > kMaxRows || chunks > chunk_slots || (rows > 0 && chunk_slots == 0) ||
      (rows > 0 && uint64_t{rows} * 100 > uint64_t{index_capacity} * 85)) {
    return false;
  }
  if (chunk_slots > 0) ResizeChunkDirectory(chunk_slots);
  for (uint32_t i = 0; i < chunks; ++i) {
    chunks_[num_chunks_++] = static_cast<char*>(CheckedCalloc(kRowsPerChunk, layout_->row_bytes));
    allocated_bytes_ += chunk_bytes_;
  }
  num_rows_ = rows;
  if (index_capacity > 0) {
    index_ = static_cast<uint32_t*>(CheckedCalloc(index_capacity, sizeof(uint32_t)));
    allocated_bytes_ += BlockBytes(4ull * index_capacity);
    capacity_ = index_capacity;
    canonical_ = false;  // empty until RebuildIndex
  }
  return true;
}

void SlotShard::RebuildIndex() {
  if (capacity_ > 0 && !canonical_) Rehash(capacity_);
}

uint32_t SlotShard::PositionOf(uint32_t id) const {
  const uint64_t hash = TableHash(RowLayout::Key(RowAt(id)), salt_);
  const uint32_t entry = Tag(hash) | (id + 1);
  uint32_t pos = HomeSlot(hash);
  while (index_[pos] != entry) {
    DCHECK_NE(index_[pos], 0u) << "row " << id << " is not in the index";
    pos = Next(pos);
  }
  return pos;
}

void SlotShard::PlaceEntry(uint64_t hash, uint32_t id) {
  // The key is absent (the caller's Find said so): the first tombstone on its probe
  // sequence, or else the empty entry ending it, takes it.
  uint32_t pos = HomeSlot(hash);
  while (index_[pos] != 0 && index_[pos] != kTombstone) pos = Next(pos);
  if (index_[pos] == kTombstone) --tombstones_;
  index_[pos] = Tag(hash) | (id + 1);
}

void SlotShard::FreeEntry(uint32_t pos) {
  // A tombstone keeps the probe sequences that pass here intact; an entry followed by an
  // empty one ends every sequence through it and can simply be emptied. (Backward-shift
  // deletion would need every later entry's key, a cache miss each.)
  canonical_ = false;
  if (index_[Next(pos)] == 0) {
    index_[pos] = 0;
  } else {
    index_[pos] = kTombstone;
    ++tombstones_;
  }
}

void SlotShard::EraseAt(uint32_t id) {
  DCHECK_LT(id, num_rows_);
  FreeEntry(PositionOf(id));
  const uint32_t last = num_rows_ - 1;
  if (id != last) {
    const uint32_t moved = PositionOf(last);
    std::memcpy(RowAt(id), RowAt(last), layout_->row_bytes);
    index_[moved] = (index_[moved] & ~kRowMask) | (id + 1);
  }
  num_rows_ = last;
  if (num_chunks_ > 0 && num_rows_ <= (num_chunks_ - 1) * kRowsPerChunk) {
    std::free(chunks_[--num_chunks_]);
    allocated_bytes_ -= chunk_bytes_;
  }
}

char* SlotShard::ReplaceAt(uint32_t id, uint64_t key, uint64_t hash, uint64_t seed, uint16_t pass) {
  DCHECK_LT(id, num_rows_);
  DCHECK(!IndexFull());
  FreeEntry(PositionOf(id));
  char* row = RowAt(id);
  layout_->InitRow(row, key, seed, pass);
  PlaceEntry(hash, id);
  return row;
}

void SlotShard::ShrinkIndexIfSparse() {
  if (capacity_ > kInitialCapacity && uint64_t{num_rows_} * 4 < capacity_) {
    // Load 0.6 after the rebuild leaves room to grow before the next rehash.
    const uint32_t target = static_cast<uint32_t>(uint64_t{num_rows_} * 10 / 6) + 1;
    Rehash(std::max(kInitialCapacity, target));
  } else if (tombstones_ > capacity_ / 8) {
    Rehash(capacity_);
  }
}

void SlotShard::Rehash(uint32_t new_capacity) {
  auto* fresh = static_cast<uint32_t*>(CheckedCalloc(new_capacity, sizeof(uint32_t)));
  allocated_bytes_ += BlockBytes(4ull * new_capacity);
  if (index_ != nullptr) allocated_bytes_ -= BlockBytes(4ull * capacity_);
  std::free(index_);
  index_ = fresh;
  capacity_ = new_capacity;
  tombstones_ = 0;
  canonical_ = true;
  // From the rows, which are dense and read in order, rather than from the old entries,
  // whose rows would be read at random.
  for (uint32_t id = 0; id < num_rows_; ++id) {
    const uint64_t hash = TableHash(RowLayout::Key(RowAt(id)), salt_);
    uint32_t pos = HomeSlot(hash);
    while (index_[pos] != 0) pos = Next(pos);
    index_[pos] = Tag(hash) | (id + 1);
  }
}

TableBytes SlotShard::Bytes() const {
  TableBytes b;
  const uint64_t rows = num_rows_;
  b.payload = rows * (8 + 4ull * layout_->dim);
  b.metadata = rows * sizeof(RowMeta);
  b.optimizer = rows * 4ull * layout_->acc_floats;
  b.index = index_ != nullptr ? BlockBytes(4ull * capacity_) : 0;
  b.slack = num_chunks_ * chunk_bytes_ - rows * layout_->row_bytes +
            (chunks_ != nullptr ? BlockBytes(sizeof(char*) * chunk_slots_) : 0);
  return b;
}

}  // namespace pepnet
