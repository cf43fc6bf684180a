// SlotShard: the rows of one slot that fall in one table partition.
//
// Storage is built for bytes per row:
//  - rows live in fixed-size chunks of kRowsPerChunk rows (no per-row allocation, row
//    addresses never move, so a pointer stays valid while the partition lock is held);
//  - the index is open addressing with linear probing over 4-byte entries
//    [8-bit hash tag | 24-bit row number + 1]; 0 is empty. The full 64-bit key lives in
//    the row and is compared on every tag match, so the table is collisionless.
//  - the index grows by 1.5x at load 0.85, keeping its cost between 4.7 and 7.1 bytes
//    per row.
//
// Not thread-safe: the owning EmbeddingTable serializes access per partition.
#ifndef PEPNET_PS_SLOT_SHARD_H_
#define PEPNET_PS_SLOT_SHARD_H_

#include <cstddef>
#include <cstdint>

#include "ps/row_layout.h"

namespace pepnet {

// Bytes owned by a part of the table, by category; they sum to `total()`.
struct TableBytes {
  uint64_t payload = 0;
  uint64_t optimizer = 0;
  uint64_t metadata = 0;
  uint64_t index = 0;
  uint64_t slack = 0;
  uint64_t total() const { return payload + optimizer + metadata + index + slack; }
  void Add(const TableBytes& o) {
    payload += o.payload;
    optimizer += o.optimizer;
    metadata += o.metadata;
    index += o.index;
    slack += o.slack;
  }
};

// Bytes the allocator really holds for a block from malloc/new: its usable size plus the
// per-block header of glibc's allocator.
uint64_t AllocatedBytes(const void* block);

class SlotShard {
 public:
  static constexpr uint32_t kRowsPerChunk = 128;
  static constexpr uint32_t kMaxRows = (1u << 24) - 1;

  // `layout` is borrowed; `salt` is the owning table's TableHash salt.
  SlotShard(const RowLayout* layout, uint64_t salt);
  ~SlotShard();
  SlotShard(const SlotShard&) = delete;
  SlotShard& operator=(const SlotShard&) = delete;

  // `hash` must be TableHash(key, salt). Brings the key's first index entry toward the cache.
  void PrefetchIndex(uint64_t hash) const;

  // Brings the row the key's index entries point to toward the cache (call after
  // PrefetchIndex has had time to land), so FindOrInsert's key compare does not stall.
  void PrefetchRow(uint64_t hash) const;

  // The key's row, or nullptr.
  char* Find(uint64_t key, uint64_t hash) const;

  // The key's row, created with InitRow(key, seed, pass) if absent. Returns nullptr only
  // when the shard holds kMaxRows rows already.
  char* FindOrInsert(uint64_t key, uint64_t hash, uint64_t seed, uint16_t pass, bool* created);

  uint32_t rows() const { return num_rows_; }
  const RowLayout& layout() const { return *layout_; }

  // Calls fn(const char* row) for every live row.
  template <typename Fn>
  void ForEachRow(Fn fn) const {
    for (uint32_t i = 0; i < num_rows_; ++i) fn(RowAt(i));
  }

  TableBytes Bytes() const;

 private:
  char* RowAt(uint32_t id) const {
    return chunks_[id / kRowsPerChunk] + size_t{id % kRowsPerChunk} * layout_->row_bytes;
  }
  uint32_t HomeSlot(uint64_t hash) const {
    return static_cast<uint32_t>((uint64_t{static_cast<uint32_t>(hash)} * capacity_) >> 32);
  }
  // Bits 48..55: the partition uses the top bits and HomeSlot the low 32.
  static uint32_t Tag(uint64_t hash) { return static_cast<uint32_t>(hash >> 24) & 0xFF000000u; }
  void GrowIndex();
  char* AppendRow();

  const RowLayout* layout_;
  const uint64_t salt_;
  uint32_t* index_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t num_rows_ = 0;
  char** chunks_ = nullptr;
  uint32_t num_chunks_ = 0;
  uint32_t chunk_slots_ = 0;  // capacity of chunks_
};

// The hash that places keys inside a server's table. The salt is drawn at random per
// table: it makes the placement independent of ShardOfKey (which fixed the high bits of
// Mix64(key) for every key on this shard), and keeps a peer that knows Mix64 from
// choosing keys that all probe the same index entries.
inline uint64_t TableHash(uint64_t key, uint64_t salt) { return Mix64(key ^ salt); }

}  // namespace pepnet

#endif  // PEPNET_PS_SLOT_SHARD_H_
