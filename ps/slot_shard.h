// SlotShard: the rows of one slot that fall in one table partition.
//
// Storage is built for bytes per row:
//  - rows live in fixed-size chunks of kRowsPerChunk rows (no per-row allocation; an
//    insert never moves a row, so a pointer stays valid until the next EraseAt);
//  - the index is open addressing with linear probing over 4-byte entries
//    [8-bit hash tag | 24-bit row number + 1]; 0 is empty, row number 0 a tombstone
//    (a deleted entry). The full 64-bit key lives in the row and is compared on every
//    tag match, so the table is collisionless.
//  - the index is rebuilt when rows and tombstones reach load 0.85: at 1.5x the size
//    if rows alone are above 0.6, else at the same size to drop the tombstones. Its
//    cost stays between 4.7 and 7.1 bytes per row while the table only grows.
//  - deleting a row moves the shard's last row into its place, so rows stay dense.
//
// Not thread-safe: the owning EmbeddingTable serializes access per partition.
#ifndef PEPNET_PS_SLOT_SHARD_H_
#define PEPNET_PS_SLOT_SHARD_H_

#include <cstddef>
#include <cstdint>
#include <vector>

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

// The bytes the table counts for a block of `n` bytes from malloc or new: what glibc's
// allocator takes for it, the request and its 8-byte size header in 16-byte steps (32 at
// least), and from 128 KiB on whole mmapped pages with a 16-byte header. Computed from
// the request rather than asked of the allocator (malloc_usable_size), whose answer
// depends on the heap's history (a free chunk up to 31 bytes larger than needed is handed
// out whole): the count must depend on the table alone, so that a shard restarted from
// storage counts the very bytes it counted before and evicts the same rows.
uint64_t BlockBytes(uint64_t n);

template <typename T>
uint64_t VectorBytes(const std::vector<T>& v) {
  return v.capacity() == 0 ? 0 : BlockBytes(v.capacity() * sizeof(T));
}

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
  // PrefetchIndex has had time to land), so Find's key compare does not stall.
  void PrefetchRow(uint64_t hash) const;

  // The key's row, or nullptr. Row pointers stay valid until the next Insert or Erase.
  char* Find(uint64_t key, uint64_t hash) const;

  // The key's row id (for EraseAt); false if absent.
  bool FindId(uint64_t key, uint64_t hash, uint32_t* id) const;

  // Creates the row of a key that Find did not find, with InitRow(key, seed, pass).
  // Returns nullptr only when the shard holds kMaxRows rows already.
  char* Insert(uint64_t key, uint64_t hash, uint64_t seed, uint16_t pass);

  // Find, then Insert if absent.
  char* FindOrInsert(uint64_t key, uint64_t hash, uint64_t seed, uint16_t pass, bool* created);

  // Bytes the next Insert would allocate (a chunk, a bigger chunk directory or index),
  // so a memory limit can make room first. Counts the new index whole: the old one is
  // freed only after the copy.
  uint64_t GrowthForInsert() const;

  // Whether the next Insert rebuilds the index first (a pause proportional to rows()).
  bool IndexRebuildDue() const { return IndexFull(); }

  // Deletes row `id` (< rows()): its index entry goes by backward shift, the last row
  // moves into its place (so rows stay dense and row ids change), and an emptied last
  // chunk is freed.
  void EraseAt(uint32_t id);

  // Gives row `id` (< rows()) to a key that Find did not find: the old key's index entry
  // goes, the row is InitRow(key, seed, pass) in the same place, and no other row moves
  // (the eviction of a row and the creation of another, without the move of the last
  // row into the hole and its index update, nor a chunk freed and allocated again).
  // Allocates nothing. Only while !IndexRebuildDue(): the old entry's tombstone then
  // still leaves the index under its load limit.
  char* ReplaceAt(uint32_t id, uint64_t key, uint64_t hash, uint64_t seed, uint16_t pass);

  // Rebuilds the index at a smaller capacity when rows fill under a quarter of it (after
  // bulk deletions), giving the memory back.
  void ShrinkIndexIfSparse();

  // Rebuilds the index at its capacity from the rows in id order, dropping tombstones: the
  // layout then depends only on the rows and the capacity, which a commit records, so a
  // shard loaded from storage gets the very same index. A no-op when the layout is that
  // already: no deletion since the last rebuild (inserts in id order fill the entries a
  // rebuild would), or no index.
  void RebuildIndex();

  // For loading from storage: allocates what a shard of `rows` rows with these sizes
  // holds (the chunk directory, the chunks, an empty index of `index_capacity`) and makes
  // the rows exist, their bytes zero: the loader fills each with RowAt, then calls
  // RebuildIndex. Only on a new shard (rows() == 0 and nothing allocated). False if the
  // sizes cannot hold the rows.
  bool AllocateForLoad(uint32_t rows, uint32_t index_capacity, uint32_t chunk_slots);

  uint32_t rows() const { return num_rows_; }
  uint32_t index_capacity() const { return capacity_; }
  uint32_t chunk_slots() const { return chunk_slots_; }
  const RowLayout& layout() const { return *layout_; }
  char* RowAt(uint32_t id) const {
    return chunks_[id / kRowsPerChunk] + size_t{id % kRowsPerChunk} * layout_->row_bytes;
  }

  // Calls fn(const char* row) for every live row.
  template <typename Fn>
  void ForEachRow(Fn fn) const {
    for (uint32_t i = 0; i < num_rows_; ++i) fn(RowAt(i));
  }

  TableBytes Bytes() const;
  // Bytes().total() without the walk: every block this shard allocated (not the shard
  // object itself), as BlockBytes counts them, kept up to date on every allocation and
  // free.
  uint64_t allocated_bytes() const { return allocated_bytes_; }

 private:
  uint32_t HomeSlot(uint64_t hash) const {
    return static_cast<uint32_t>((uint64_t{static_cast<uint32_t>(hash)} * capacity_) >> 32);
  }
  uint32_t Next(uint32_t pos) const { return pos + 1 == capacity_ ? 0 : pos + 1; }
  // Bits 48..55: the partition uses the top bits and HomeSlot the low 32.
  static uint32_t Tag(uint64_t hash) { return static_cast<uint32_t>(hash >> 24) & 0xFF000000u; }
  // The index position holding row `id`.
  uint32_t PositionOf(uint32_t id) const;
  // Index entry of row `id` for an absent key of `hash`.
  void PlaceEntry(uint64_t hash, uint32_t id);
  // Removes the entry at `pos` (a tombstone unless it ends its probe run).
  void FreeEntry(uint32_t pos);
  // Rebuilds the index at `new_capacity` from the rows, dropping tombstones.
  void Rehash(uint32_t new_capacity);
  bool IndexFull() const;
  uint32_t CapacityAfterRehash() const;
  char* AppendRow();
  // A chunk directory of `slots` entries holding the current chunks.
  void ResizeChunkDirectory(uint32_t slots);

  const RowLayout* layout_;
  const uint64_t salt_;
  uint32_t* index_ = nullptr;
  uint32_t capacity_ = 0;
  uint32_t num_rows_ = 0;
  uint32_t tombstones_ = 0;
  bool canonical_ = true;  // the index is what Rehash would build (no deletion since)
  char** chunks_ = nullptr;
  uint32_t num_chunks_ = 0;
  uint32_t chunk_slots_ = 0;  // capacity of chunks_
  uint64_t allocated_bytes_ = 0;
  uint64_t chunk_bytes_ = 0;  // BlockBytes of one chunk
};

// The hash that places keys inside a server's table. The salt is drawn at random per
// table: it makes the placement independent of ShardOfKey (which fixed the high bits of
// Mix64(key) for every key on this shard), and keeps a peer that knows Mix64 from
// choosing keys that all probe the same index entries.
inline uint64_t TableHash(uint64_t key, uint64_t salt) { return Mix64(key ^ salt); }

}  // namespace pepnet

#endif  // PEPNET_PS_SLOT_SHARD_H_
