// TableImage: what an EmbeddingTable holds besides its rows, captured at a commit and
// given back at a load, so that a restarted shard is the same table and not just the same
// rows: the same row order in every slot shard, index and chunk-directory sizes, eviction
// cursors, admission counts and counters. Eviction reads all of these (it sweeps rows in
// order, samples them by position and counts every allocated byte against the limit), so
// without them a restart would evict other rows than an undisturbed run, and training
// with one worker would no longer be reproducible across a crash.
//
// Plain values; no locking.
#ifndef PEPNET_PS_TABLE_IMAGE_H_
#define PEPNET_PS_TABLE_IMAGE_H_

#include <cstdint>
#include <vector>

namespace pepnet {

struct AdmissionStats {
  uint64_t admitted = 0;        // keys given a row on reaching the threshold
  uint64_t pushes_dropped = 0;  // pushed keys below the threshold (gradient dropped)
  uint64_t pulls_default = 0;   // pulled keys without a row (answered with zeros)
};

// Eviction bookkeeping of a partition; fields are guarded by the partition's lock.
struct EvictionCursor {
  float threshold = 0;
  bool valid = false;
  uint32_t shard = 0;    // dense slot index of the sweep position
  uint32_t row = 0;      // row id in that shard
  uint64_t scanned = 0;  // rows looked at since the threshold was sampled
  uint64_t lap = 0;      // rows in the partition when it was sampled
  uint64_t rng = 0x9E3779B97F4A7C15ull;

  // xorshift64: sampling rows needs speed, not quality.
  uint64_t NextRandom() {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  }
};

// One slot's rows in one partition (a SlotShard): its sizes, not its rows.
struct SlotShardImage {
  uint32_t slot_index = 0;  // dense index in the table config's slots
  uint32_t rows = 0;
  uint32_t index_capacity = 0;  // index entries (0: no index allocated yet)
  uint32_t chunk_slots = 0;     // capacity of the chunk directory
};

// A table partition's counters and eviction bookkeeping: part of the live partition
// (guarded by its lock there) and of its image.
struct PartitionState {
  uint64_t rows_created = 0;
  uint64_t rows_erased = 0;
  // Rows deleted by any path: row pointers taken before a change of it may have moved.
  uint64_t deletions = 0;
  uint64_t cap_refused = 0;
  uint64_t memory_refused = 0;
  AdmissionStats admission;
  // Deletions by [slot index * kNumDeleteReasons + reason], since the pass began and
  // since start.
  std::vector<uint64_t> deleted_pass, deleted_total;
  EvictionCursor evict;
};

struct PartitionImage : PartitionState {
  std::vector<SlotShardImage> shards;  // the SlotShards that exist, by slot index
};

struct TableImage {
  uint64_t hash_salt = 0;
  uint32_t pass = 0;
  // END_PASS calls since the table was created: each decayed every row's show and click
  // once, so a stored row written after the k-th is decayed pass_ends - k times at load.
  uint32_t pass_ends = 0;
  int64_t last_ended_pass = -1;
  std::vector<PartitionImage> partitions;
};

}  // namespace pepnet

#endif  // PEPNET_PS_TABLE_IMAGE_H_
