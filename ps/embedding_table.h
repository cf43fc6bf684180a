// EmbeddingTable: one server's shard of the Global Shared Embedding Table (GSET).
//
// A collisionless map from 64-bit feature keys to embedding rows. The key's top
// `slot_bits` bits name its slot, which fixes the row's dim, optimizer settings and
// memory-control policies. Rows are created on first Pull (or Push) with values derived
// from (key, seed), and updated on Push with AdaGrad.
//
// Memory control (docs/config.md, "Memory control"): a hard memory limit enforced by
// evicting the lowest-score rows, per-slot count caps, pass-end deletion by TTL, by
// minimum update count and by score, and optional admission of new keys through a
// counting filter. Every deletion is counted by reason and slot, and logged for the
// pass's publish.
//
// Thread safety: all methods may be called concurrently. The table is split into
// 2^partition_bits partitions by key hash, each behind its own mutex; a request locks
// each partition it touches once, one at a time, so requests never deadlock. The memory
// limit is split evenly over the partitions (each holds a uniform hash sample of the
// keys), so a partition makes room under its own lock, in bounded steps.
#ifndef PEPNET_PS_EMBEDDING_TABLE_H_
#define PEPNET_PS_EMBEDDING_TABLE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "common/delete_reason.h"
#include "common/status.h"
#include "ps/admission_filter.h"
#include "ps/key_log.h"
#include "ps/row_layout.h"
#include "ps/slot_shard.h"
#include "ps/table_config.h"
#include "ps/table_image.h"

namespace pepnet {

struct RowSnapshot {
  uint64_t key = 0;
  RowMeta meta;
  std::vector<float> weights;
  std::vector<float> accumulator;
};

struct SlotStatsSnapshot {
  uint32_t slot = 0;
  uint32_t dim = 0;
  uint64_t rows = 0;
  uint64_t bytes = 0;  // the slot's row chunks, indexes and shard objects
  uint64_t deleted_pass[kNumDeleteReasons] = {};   // since the current pass began
  uint64_t deleted_total[kNumDeleteReasons] = {};  // since start
};

struct TableStatsSnapshot {
  uint64_t rows = 0;
  uint64_t rows_created = 0;
  uint64_t rows_deleted = 0;             // by the policies (sum over slots and reasons)
  uint64_t rows_erased = 0;              // by Erase
  uint64_t cap_refused = 0;              // new keys refused: slot at its cap, no row to evict
  uint64_t memory_refused = 0;           // new keys refused: nothing left to evict
  std::vector<SlotStatsSnapshot> slots;  // every configured slot, in config order
  TableBytes bytes;                      // bytes.total() is every byte the table owns
  uint64_t memory_limit_bytes = 0;       // 0 = none
  uint64_t bytes_used = 0;               // the running count (equals bytes.total() when idle)
  uint64_t max_bytes_used = 0;           // its high-water mark since start
  AdmissionStats admission;
  // Feature-score quantiles over a sample of the rows: {q, score} for q in
  // 0, .25, .5, .75, .9, .99, 1; empty when the table is empty.
  std::vector<std::pair<double, float>> score_quantiles;
  // Longest a pull or push spent on one new row's slow path: evicting under a cap or the
  // memory limit, and rebuilding the row's index when due.
  uint64_t worst_eviction_pause_ns = 0;
  uint64_t worst_pass_end_pause_ns = 0;  // longest a partition was locked by EndPass
  uint64_t worst_stats_pause_ns = 0;     // longest a partition was locked by Stats
  uint32_t pass = 0;
};

// What EndPass did.
struct PassEndReport {
  uint64_t rows_before = 0;
  uint64_t rows_after = 0;
  uint64_t deleted[kNumDeleteReasons] = {};
};

class EmbeddingTable {
 public:
  // InvalidArgument if `options` does not validate, or if the memory limit cannot even
  // hold the table's fixed structures. `hash_salt` places keys in partitions and index
  // entries; 0 draws one at random (what a server should do: a peer that knows the salt
  // can choose keys that collide).
  static Status Create(const TableOptions& options, std::unique_ptr<EmbeddingTable>* table,
                       uint64_t hash_salt = 0);
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
  // rows. Duplicate keys are allowed. A key that may not have a row (its slot's
  // admission threshold not reached, or refused by a full slot or memory) reads zeros.
  Status Pull(const uint64_t* keys, size_t n, float* out);

  // For each distinct key, sums its gradients (rows laid out as in Pull), shows and
  // clicks over the request, then applies one AdaGrad step and adds the counts. Absent
  // rows are created first; a key that may not have a row drops its update (counted in
  // the stats). InvalidArgument (a key of an unconfigured slot) applies nothing;
  // ResourceExhausted (a slot full in a partition) may have applied the keys of the
  // partitions handled before it.
  Status Push(const uint64_t* keys, size_t n, const float* grads, const float* shows,
              const float* clicks);

  // Copy of one row; NotFound if absent.
  Status Lookup(uint64_t key, RowSnapshot* out) const;

  // Starts pass `pass`: rows created or updated from now on record it, and the log of
  // deleted keys and the per-pass deletion counters start empty. InvalidArgument for a
  // pass lower than the running one (row ages would wrap and TTL delete everything).
  Status BeginPass(uint32_t pass);
  uint32_t pass() const { return pass_.load(std::memory_order_relaxed); }

  // The pass-end policies, partition by partition: decays every row's show and click,
  // then deletes rows by TTL, by minimum update count and by score; shrinks sparse
  // indexes; halves the admission filter when due. Call once per pass, between the
  // pass's last push and its export. InvalidArgument if this pass has already ended.
  Status EndPass(PassEndReport* report = nullptr);
  // The pass EndPass last ran for; -1 before the first.
  int64_t last_ended_pass() const;

  // Calls fn(key) for every key deleted since BeginPass that existed before the pass
  // and has no row now: what serving must drop. Under each partition's lock in turn.
  template <typename Fn>
  void ForEachDeletedKey(Fn fn) const;

  // Consistent per partition; partitions are read one after another.
  TableStatsSnapshot Stats() const;

  // Bytes the table owns now (every allocation: rows, indexes, logs, filter, the table
  // itself), kept current on every allocation and free; and its high-water mark.
  uint64_t bytes_used() const { return bytes_used_.load(std::memory_order_relaxed); }
  uint64_t max_bytes_used() const { return max_bytes_used_.load(std::memory_order_relaxed); }

  // Calls fn(key, weights, dim, meta) for every row, partition by partition under the
  // partition's lock (so consistent per partition). fn must not call into the table.
  template <typename Fn>
  void ForEachRow(Fn fn) const;

  // Sets a row's weights (creating it if absent, past every policy), leaving its
  // optimizer state and counters as they are: for loading a published model.
  // InvalidArgument for a key of an unconfigured slot or a wrong dim.
  Status SetWeights(uint64_t key, const float* weights, uint32_t dim);

  // Deletes a key's row if present (for applying a published model's deletions); not
  // logged and not counted as an eviction.
  Status Erase(uint64_t key);

  uint64_t hash_salt() const { return hash_salt_; }

  // Whether the row was created or updated in `pass`: the rows a delta publishes and a
  // commit stores (pass numbers compare modulo 2^16, as rows keep them).
  static bool ChangedIn(const RowMeta& meta, uint32_t pass) {
    const uint16_t p16 = static_cast<uint16_t>(pass);
    return meta.created_pass == p16 || meta.last_update_pass == p16;
  }

  // ForEachRow restricted to the rows ChangedIn(pass).
  template <typename Fn>
  void ForEachRowChangedIn(uint32_t pass, Fn fn) const;

  // Whether a call that can change the table (Pull, Push, BeginPass, EndPass, SetWeights,
  // Erase) began since the last ClearChanged: storage reloads a table that moved past its
  // last committed image, and only then.
  bool changed() const { return changed_.load(std::memory_order_relaxed); }
  void ClearChanged() { changed_.store(false, std::memory_order_relaxed); }

  // ---- What storage needs (ps/table_persistence.cc; only for a durable table) ----

  // A stored row: its key, slot and place, and its bytes (valid while the partition lock
  // is held, that is during the CaptureCommit callback).
  struct RowRef {
    uint64_t key;
    uint32_t slot_index;
    uint32_t id;
    const char* row;  // RowLayout bytes, the key first
    uint32_t row_bytes;
  };
  // One partition as a commit of the running pass stores it.
  struct PartitionCommit {
    uint32_t partition = 0;
    // Rows created or updated in the pass, and rows deletions moved to another place
    // since the last commit: each once, in no particular order.
    std::vector<RowRef> rows;
    // Keys the partition deleted in the pass that existed before it and have no row now
    // (storage deletes them), each once; and the raw log they come from, in order (a
    // restarted shard republishes the pass with it).
    std::vector<uint64_t> deleted, deleted_log;
    const uint8_t* filter = nullptr;  // the admission counters, if any slot admits
    uint64_t filter_bytes = 0;
    PartitionImage image;
  };
  // For each partition in order, under its lock: rebuilds its indexes canonically, fills
  // a PartitionCommit and calls fn with it, then forgets the moved rows. Stops at the
  // first error fn returns. *image gets the table's part and every partition's image.
  Status CaptureCommit(uint32_t pass, TableImage* image,
                       const std::function<Status(const PartitionCommit&)>& fn);

  // Loading a stored table: BeginLoad empties the table and gives it the image's sizes
  // and counters; then LoadRow places each stored row (concurrently for rows of different
  // partitions), LoadFilter and LoadDeletedKey restore the rest, and FinishLoad checks
  // that every place was filled and rebuilds the indexes. Corruption naming the key or
  // partition for anything that does not fit the image. No other call may run
  // meanwhile.
  Status BeginLoad(const TableImage& image);
  uint32_t PartitionOfKey(uint64_t key) const { return PartitionOf(TableHash(key, hash_salt_)); }
  // `body` is the row without its key (RowMeta, weights, accumulator); the row was stored
  // after `written_pass_ends` pass ends, and gets the decays of the ones since.
  Status LoadRow(uint64_t key, uint32_t id, uint32_t written_pass_ends, const char* body,
                 size_t body_bytes);
  Status LoadFilter(uint32_t partition, const char* data, size_t n);
  void LoadDeletedKey(uint32_t partition, uint64_t key);
  Status FinishLoad();

 private:
  struct Partition;
  struct Scratch;

  EmbeddingTable(const TableOptions& options, uint64_t hash_salt);
  void NoteChange() {
    if (!changed_.load(std::memory_order_relaxed)) changed_.store(true, std::memory_order_relaxed);
  }
  // Logs that deleting row `id` of a shard moves its last row there (durable tables).
  void NoteMove(Partition* part, uint32_t slot_index, const SlotShard& shard, uint32_t id);
  // Fills scratch with hashes, slot indices, output offsets and a partition-major order.
  Status Prepare(const uint64_t* keys, size_t n, Scratch* s) const;
  // Runs `fn(key index, row)` for every key, partition by partition under its lock,
  // creating absent rows as the policies allow; row is nullptr when they do not.
  // `shows` (per key) is given by pushes and nullptr for pulls.
  template <typename Fn>
  Status ForEachRowLocked(const uint64_t* keys, const float* shows, Scratch* s, Fn fn);
  SlotShard* ShardFor(Partition* p, uint32_t slot_index);
  // The key's row, created if the policies allow (nullptr if not). `show` is the push's
  // show for the key, nullptr for a pull. Evicts to make room under a cap or the memory
  // limit.
  char* AcquireRow(Partition* part, uint32_t slot_index, uint64_t key, uint64_t hash,
                   const float* show, Status* error);
  // Under the memory limit, when the eviction sweep's next victim is a row of
  // `slot_index`: the new key takes its place (SlotShard::ReplaceAt), counted as an
  // eviction. nullptr when the next victim is of another slot, none is found within a
  // step's scan, or the shard's index is due a rebuild: the caller evicts and inserts.
  char* ReplaceVictim(Partition* part, uint32_t slot_index, uint64_t key, uint64_t hash);
  // Deletes row `id` of the partition's shard of `slot_index`, logging its key for
  // the publish when it existed before this pass.
  void DeleteRow(Partition* part, uint32_t slot_index, uint32_t id, DeleteReason reason);
  // Evicts under the memory limit until a row of `shard` (in `part`) fits under the high
  // watermark; false if the partition has nothing left to evict.
  bool MakeRoom(Partition* part, const SlotShard& shard);
  // One bounded step of MakeRoom: evicts up to a batch of rows whose score is in the
  // partition's lowest few percent, stopping at the low watermark. Returns the rows
  // evicted.
  uint32_t EvictStep(Partition* part, uint64_t need);
  void ResampleThreshold(Partition* part, uint64_t need);
  // Evicts the lowest-score rows of a capped slot in this partition; false if it has none.
  bool EvictForCap(Partition* part, uint32_t slot_index);
  void AddBytes(Partition* part, int64_t delta);
  // The table object, its arrays and the partition array; a partition's filter.
  uint64_t FixedBytes() const;
  static uint64_t FilterBytes(const Partition& part);
  void NotePause(std::atomic<uint64_t>* worst, uint64_t ns);
  static uint64_t NanosSince(std::chrono::steady_clock::time_point start);
  float Score(const char* row) const {
    return FeatureScore(*RowLayout::Meta(row), options_.score.coefficients);
  }
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
  std::atomic<uint32_t> pass_ends_{0};
  // The pass EndPass last ran for (guarded by end_pass_mu_): a repeated END_PASS would
  // decay the scores twice.
  mutable std::mutex end_pass_mu_;
  int64_t last_ended_pass_ = -1;  // EndPass calls, for the admission filter's halving
  uint64_t hash_salt_;            // TableHash salt; changes only in BeginLoad
  bool any_admission_ = false;
  std::atomic<bool> changed_{false};
  struct LoadState;
  std::unique_ptr<LoadState> load_;  // between BeginLoad and FinishLoad
  // Row counts of capped slots over all partitions (a new row reserves its place here
  // before it is created, so the cap holds exactly across partitions).
  std::unique_ptr<std::atomic<uint64_t>[]> capped_rows_;
  // Memory limit per partition (every partition holds a uniform hash sample of keys).
  uint64_t part_high_bytes_ = 0, part_low_bytes_ = 0;
  std::atomic<uint64_t> bytes_used_{0};
  std::atomic<uint64_t> max_bytes_used_{0};
  std::atomic<uint64_t> worst_eviction_pause_ns_{0};
  std::atomic<uint64_t> worst_pass_end_pause_ns_{0};
  mutable std::atomic<uint64_t> worst_stats_pause_ns_{0};
};

// The counters and eviction cursor (PartitionState) are what a commit stores of the
// partition beside its rows and sizes.
struct EmbeddingTable::Partition : PartitionState {
  mutable std::mutex mu;
  std::vector<SlotShard*> shards;           // by dense slot index; created on first use
  std::unique_ptr<AdmissionFilter> filter;  // only if a slot has admission
  // Keys deleted in this pass that existed before it.
  KeyLog deleted_keys;
  // Durable tables: (slot index << 32 | id) of every place a deletion moved a row into
  // since the last commit, which must store the row at its new place.
  KeyLog moved_rows;
  // Bytes owned by this partition: shards and their objects, the shard directory,
  // counters, log and filter.
  uint64_t bytes = 0;
  // Rows given to another key in place (ReplaceVictim): a row pointer taken before holds
  // another key now if it was the victim; no row moved.
  uint64_t replacements = 0;

  ~Partition() {
    for (SlotShard* s : shards) delete s;
  }

  uint64_t rows() const {
    uint64_t n = 0;
    for (const SlotShard* s : shards) n += s ? s->rows() : 0;
    return n;
  }
};

// What a load in progress checks against (BeginLoad to FinishLoad).
struct EmbeddingTable::LoadState {
  TableImage image;
  // placed[partition][slot index]: one byte per row id, set once the row is loaded.
  std::vector<std::vector<std::vector<uint8_t>>> placed;
};

template <typename Fn>
void EmbeddingTable::ForEachDeletedKey(Fn fn) const {
  for (uint32_t p = 0; p < num_partitions_; ++p) {
    const Partition& part = partitions_[p];
    std::lock_guard<std::mutex> lock(part.mu);
    part.deleted_keys.ForEach([&](uint64_t key) {
      const int32_t index = slot_index_[SlotOfKey(key, options_.slot_bits)];
      const SlotShard* shard = part.shards[index];
      if (shard == nullptr || shard->Find(key, TableHash(key, hash_salt_)) == nullptr) fn(key);
    });
  }
}

template <typename Fn>
void EmbeddingTable::ForEachRowChangedIn(uint32_t pass, Fn fn) const {
  ForEachRow([&](uint64_t key, const float* weights, uint32_t dim, const RowMeta& meta) {
    if (ChangedIn(meta, pass)) fn(key, weights, dim, meta);
  });
}

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
