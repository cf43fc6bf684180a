// EmbeddingTable: one server's shard of the Global Shared Embedding Table (GSET).
//
// A collisionless map from 64-bit feature keys to embedding rows. The key's top
// `slot_bits` bits name its slot, which fixes the row's dim and optimizer settings.
// Rows are created on first Pull (or Push) with values derived from (key, seed), and
// updated on Push with AdaGrad.
//
// Thread safety: all methods may be called concurrently. The table is split into
// 2^partition_bits partitions by key hash, each behind its own mutex; a request locks
// each partition it touches once, one at a time, so requests never deadlock.
#ifndef PEPNET_PS_EMBEDDING_TABLE_H_
#define PEPNET_PS_EMBEDDING_TABLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "ps/row_layout.h"
#include "ps/slot_shard.h"
#include "ps/table_config.h"

namespace pepnet {

struct RowSnapshot {
  uint64_t key = 0;
  RowMeta meta;
  std::vector<float> weights;
  std::vector<float> accumulator;
};

struct SlotRowCount {
  uint32_t slot = 0;
  uint32_t dim = 0;
  uint64_t rows = 0;
};

struct TableStatsSnapshot {
  uint64_t rows = 0;
  uint64_t rows_created = 0;
  std::vector<SlotRowCount> slots;  // every configured slot, in config order
  TableBytes bytes;                 // bytes.total() is every byte the table owns
};

class EmbeddingTable {
 public:
  // InvalidArgument if `options` does not validate.
  static Status Create(const TableOptions& options, std::unique_ptr<EmbeddingTable>* table);
  ~EmbeddingTable();
  EmbeddingTable(const EmbeddingTable&) = delete;
  EmbeddingTable& operator=(const EmbeddingTable&) = delete;

  const TableOptions& options() const { return options_; }

  // Dim of the key's slot, or 0 if that slot is not configured.
  uint32_t DimOf(uint64_t key) const;

  // Sum of the dims of keys[0..n): the float count of their rows. InvalidArgument
  // naming the first key whose slot is not configured.
  Status CountValues(const uint64_t* keys, size_t n, uint64_t* num_values) const;

  // Writes each key's row to `out` in key order (CountValues floats), creating absent
  // rows. Duplicate keys are allowed.
  Status Pull(const uint64_t* keys, size_t n, float* out);

  // For each distinct key, sums its gradients (rows laid out as in Pull), shows and
  // clicks over the request, then applies one AdaGrad step and adds the counts. Absent
  // rows are created first. InvalidArgument (a key of an unconfigured slot) applies
  // nothing; ResourceExhausted (a slot full in a partition) may have applied the keys of
  // the partitions handled before it.
  Status Push(const uint64_t* keys, size_t n, const float* grads, const float* shows,
              const float* clicks);

  // Copy of one row; NotFound if absent.
  Status Lookup(uint64_t key, RowSnapshot* out) const;

  // The pass number recorded in rows created or updated from now on.
  void SetPass(uint32_t pass) { pass_.store(pass, std::memory_order_relaxed); }
  uint32_t pass() const { return pass_.load(std::memory_order_relaxed); }

  // Consistent per partition; partitions are read one after another.
  TableStatsSnapshot Stats() const;

  // Calls fn(key, weights, dim, meta) for every row, partition by partition under the
  // partition's lock (so consistent per partition). fn must not call into the table.
  template <typename Fn>
  void ForEachRow(Fn fn) const;

  // Sets a row's weights (creating it if absent), leaving its optimizer state and
  // counters as they are: for loading a published model. InvalidArgument for a key of
  // an unconfigured slot or a wrong dim.
  Status SetWeights(uint64_t key, const float* weights, uint32_t dim);

 private:
  struct Partition;
  struct Scratch;

  explicit EmbeddingTable(const TableOptions& options);
  // Fills scratch with hashes, slot indices, output offsets and a partition-major order.
  Status Prepare(const uint64_t* keys, size_t n, Scratch* s) const;
  // Runs `fn(key index, row)` for every key, partition by partition under its lock,
  // creating absent rows.
  template <typename Fn>
  Status ForEachRowLocked(const uint64_t* keys, Scratch* s, Fn fn);
  SlotShard* ShardFor(Partition* p, uint32_t slot_index);
  // The top partition_bits bits of a TableHash.
  uint32_t PartitionOf(uint64_t hash) const {
    return options_.partition_bits == 0
               ? 0
               : static_cast<uint32_t>(hash >> (64 - options_.partition_bits));
  }

  TableOptions options_;
  std::vector<RowLayout> layouts_;   // by dense slot index
  std::vector<int32_t> slot_index_;  // slot id -> dense index, -1 if absent
  std::vector<Partition> partitions_;
  uint32_t num_partitions_ = 1;
  std::atomic<uint32_t> pass_{0};
  const uint64_t hash_salt_;  // TableHash salt, random per table
};

struct EmbeddingTable::Partition {
  mutable std::mutex mu;
  std::vector<SlotShard*> shards;  // by dense slot index; created on first use
  uint64_t rows_created = 0;

  ~Partition() {
    for (SlotShard* s : shards) delete s;
  }
};

template <typename Fn>
void EmbeddingTable::ForEachRow(Fn fn) const {
  for (uint32_t p = 0; p < num_partitions_; ++p) {
    const Partition& part = partitions_[p];
    std::lock_guard<std::mutex> lock(part.mu);
    for (const SlotShard* shard : part.shards) {
      if (shard == nullptr) continue;
      const uint32_t dim = shard->layout().dim;
      shard->ForEachRow([&](const char* row) {
        fn(RowLayout::Key(row), RowLayout::Weights(row), dim, *RowLayout::Meta(row));
      });
    }
  }
}

}  // namespace pepnet

#endif  // PEPNET_PS_EMBEDDING_TABLE_H_
