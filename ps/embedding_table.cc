#include "ps/embedding_table.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>

#include "common/hash.h"
#include "common/key_dedup.h"

namespace pepnet {

// Per-thread working memory of one request, kept between requests to avoid allocation.
struct EmbeddingTable::Scratch {
  std::vector<uint64_t> hash;
  std::vector<uint32_t> slot;    // dense slot index per key
  std::vector<uint64_t> offset;  // first float of the key's row in values
  std::vector<uint32_t> order;   // key indices grouped by partition
  std::vector<uint32_t> part_begin;
  std::vector<uint32_t> part_next;
  std::vector<char*> rows;  // per position in `order`, for the current partition
  // Push with duplicate keys: the summed request.
  KeyDeduper dedup;
  std::vector<uint64_t> unique_keys;
  std::vector<uint32_t> position;
  std::vector<float> sum_grads, sum_shows, sum_clicks;
  std::vector<uint64_t> unique_offset;
};

namespace {

std::string KeyError(uint64_t key, uint32_t slot_bits) {
  return "key " + FormatKey(key) + " belongs to slot " + std::to_string(SlotOfKey(key, slot_bits)) +
         ", which is not configured";
}

uint64_t RandomSalt() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

uint64_t NanosSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              start)
      .count();
}

// Requests this large leave their per-thread scratch freed rather than pinned.
constexpr size_t kShrinkScratchKeys = 1 << 20;

}  // namespace

Status EmbeddingTable::Create(const TableOptions& options, std::unique_ptr<EmbeddingTable>* out,
                              uint64_t hash_salt) {
  PEPNET_RETURN_IF_ERROR(ValidateTableOptions(options));
  std::unique_ptr<EmbeddingTable> table(
      new EmbeddingTable(options, hash_salt != 0 ? hash_salt : RandomSalt()));
  if (options.memory_limit_bytes > 0) {
    // The fixed part: the table object, its arrays, and every partition's structures.
    const uint64_t fixed = table->bytes_used();
    const double limit = static_cast<double>(options.memory_limit_bytes);
    const double spare_high = options.memory_high_watermark * limit - fixed;
    const double spare_low = options.memory_low_watermark * limit - fixed;
    // Each partition needs room for at least a chunk of rows of every slot.
    uint64_t chunk_bytes = 0;
    for (const RowLayout& l : table->layouts_) {
      chunk_bytes += BlockBytes(uint64_t{SlotShard::kRowsPerChunk} * l.row_bytes);
    }
    const double need = 4.0 * chunk_bytes * table->num_partitions_;
    if (spare_low < need) {
      return Status::InvalidArgument(
          "memory_limit_bytes " + std::to_string(options.memory_limit_bytes) +
          " is too small: the table's fixed structures take " + std::to_string(fixed) +
          " bytes and its " + std::to_string(table->num_partitions_) +
          " partitions need at least " + std::to_string(static_cast<uint64_t>(need)) +
          " bytes of rows under the low watermark (fewer partition_bits need less)");
    }
    const uint64_t per_part = table->partitions_[0].bytes;
    table->part_high_bytes_ = static_cast<uint64_t>(spare_high / table->num_partitions_) + per_part;
    table->part_low_bytes_ = static_cast<uint64_t>(spare_low / table->num_partitions_) + per_part;
  }
  *out = std::move(table);
  return Status::OK();
}

EmbeddingTable::EmbeddingTable(const TableOptions& options, uint64_t hash_salt)
    : options_(options), hash_salt_(hash_salt) {
  slot_index_.assign(size_t{1} << options_.slot_bits, -1);
  const size_t num_slots = options_.slots.size();
  for (const SlotOptions& s : options_.slots) {
    slot_index_[s.id] = static_cast<int32_t>(layouts_.size());
    layouts_.push_back(RowLayout::Make(s.dim, s.adagrad));
    any_admission_ |= s.eviction.admission();
  }
  capped_rows_.reset(new std::atomic<uint64_t>[num_slots]);
  for (size_t i = 0; i < num_slots; ++i) capped_rows_[i] = 0;
  num_partitions_ = 1u << options_.partition_bits;
  partitions_ = std::vector<Partition>(num_partitions_);
  uint64_t fixed = FixedBytes();
  uint64_t rng = hash_salt_;
  for (Partition& p : partitions_) {
    p.shards.assign(num_slots, nullptr);
    p.deleted_pass.assign(num_slots * kNumDeleteReasons, 0);
    p.deleted_total.assign(num_slots * kNumDeleteReasons, 0);
    if (any_admission_) {
      p.filter.reset(new AdmissionFilter(options_.admission_filter_bytes / num_partitions_,
                                         Mix64(hash_salt_ ^ 0xAD)));
    }
    rng = Mix64(rng);
    p.evict.rng = rng | 1;
    p.bytes = VectorBytes(p.shards) + VectorBytes(p.deleted_pass) + VectorBytes(p.deleted_total) +
              FilterBytes(p);
    fixed += p.bytes;
  }
  bytes_used_ = fixed;
  max_bytes_used_ = fixed;
}

EmbeddingTable::~EmbeddingTable() = default;

uint64_t EmbeddingTable::FixedBytes() const {
  return BlockBytes(sizeof(EmbeddingTable)) + VectorBytes(slot_index_) + VectorBytes(layouts_) +
         VectorBytes(partitions_) + BlockBytes(sizeof(std::atomic<uint64_t>) * layouts_.size());
}

uint64_t EmbeddingTable::FilterBytes(const Partition& part) {
  return part.filter ? BlockBytes(sizeof(AdmissionFilter)) + BlockBytes(part.filter->size()) : 0;
}

uint32_t EmbeddingTable::DimOf(uint64_t key) const {
  const int32_t index = slot_index_[SlotOfKey(key, options_.slot_bits)];
  return index < 0 ? 0 : layouts_[index].dim;
}

Status EmbeddingTable::CountValues(const uint64_t* keys, size_t n, uint64_t* num_values) const {
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t dim = DimOf(keys[i]);
    if (dim == 0) return Status::InvalidArgument(KeyError(keys[i], options_.slot_bits));
    total += dim;
  }
  *num_values = total;
  return Status::OK();
}

Status EmbeddingTable::Prepare(const uint64_t* keys, size_t n, Scratch* s) const {
  s->hash.resize(n);
  s->slot.resize(n);
  s->offset.resize(n);
  s->order.resize(n);
  s->part_begin.assign(num_partitions_ + 1, 0);
  uint64_t offset = 0;
  for (size_t i = 0; i < n; ++i) {
    const int32_t index = slot_index_[SlotOfKey(keys[i], options_.slot_bits)];
    if (index < 0) return Status::InvalidArgument(KeyError(keys[i], options_.slot_bits));
    const uint64_t h = TableHash(keys[i], hash_salt_);
    s->hash[i] = h;
    s->slot[i] = static_cast<uint32_t>(index);
    s->offset[i] = offset;
    offset += layouts_[index].dim;
    ++s->part_begin[PartitionOf(h) + 1];
  }
  for (uint32_t p = 0; p < num_partitions_; ++p) s->part_begin[p + 1] += s->part_begin[p];
  // Counting sort by partition; part_begin[p] ends as the start of partition p.
  std::vector<uint32_t>& next = s->part_next;
  next.assign(s->part_begin.begin(), s->part_begin.end() - 1);
  for (size_t i = 0; i < n; ++i) {
    s->order[next[PartitionOf(s->hash[i])]++] = static_cast<uint32_t>(i);
  }
  return Status::OK();
}

SlotShard* EmbeddingTable::ShardFor(Partition* p, uint32_t slot_index) {
  SlotShard*& shard = p->shards[slot_index];
  if (shard == nullptr) {
    shard = new SlotShard(&layouts_[slot_index], hash_salt_);
    AddBytes(p, static_cast<int64_t>(BlockBytes(sizeof(SlotShard))));
  }
  return shard;
}

void EmbeddingTable::AddBytes(Partition* part, int64_t delta) {
  if (delta == 0) return;
  part->bytes += delta;
  const uint64_t now = bytes_used_.fetch_add(delta, std::memory_order_relaxed) + delta;
  if (delta > 0) {
    uint64_t seen = max_bytes_used_.load(std::memory_order_relaxed);
    while (now > seen &&
           !max_bytes_used_.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
  }
}

void EmbeddingTable::NotePause(std::atomic<uint64_t>* worst, uint64_t ns) {
  uint64_t seen = worst->load(std::memory_order_relaxed);
  while (ns > seen && !worst->compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
  }
}

void EmbeddingTable::NoteMove(Partition* part, uint32_t slot_index, const SlotShard& shard,
                              uint32_t id) {
  if (!options_.durable || id + 1 == shard.rows()) return;
  AddBytes(part, static_cast<int64_t>(part->moved_rows.Add((uint64_t{slot_index} << 32) | id)));
}

void EmbeddingTable::DeleteRow(Partition* part, uint32_t slot_index, uint32_t id,
                               DeleteReason reason) {
  SlotShard* shard = part->shards[slot_index];
  const char* row = shard->RowAt(id);
  const uint16_t pass = static_cast<uint16_t>(pass_.load(std::memory_order_relaxed));
  if (RowLayout::Meta(row)->created_pass != pass) {
    // Serving has this key from an earlier version: the publish must name it.
    AddBytes(part, static_cast<int64_t>(part->deleted_keys.Add(RowLayout::Key(row))));
  }
  NoteMove(part, slot_index, *shard, id);
  const uint64_t before = shard->allocated_bytes();
  shard->EraseAt(id);
  ++part->deletions;
  AddBytes(part, static_cast<int64_t>(shard->allocated_bytes()) - static_cast<int64_t>(before));
  const size_t k = size_t{slot_index} * kNumDeleteReasons + static_cast<int>(reason);
  ++part->deleted_pass[k];
  ++part->deleted_total[k];
  if (options_.slots[slot_index].eviction.max_rows > 0) {
    capped_rows_[slot_index].fetch_sub(1, std::memory_order_relaxed);
  }
}

void EmbeddingTable::ResampleThreshold(Partition* part, uint64_t need) {
  EvictionCursor& c = part->evict;
  const uint64_t rows = part->rows();
  c.valid = rows > 0;
  c.scanned = 0;
  c.lap = rows;
  if (rows == 0) return;
  // The fraction of rows to sweep out: what brings the partition to the low watermark,
  // and at least 2% so a lap finds enough.
  const double over = static_cast<double>(part->bytes + need) - part_low_bytes_;
  const double q = std::clamp(over / std::max<double>(part->bytes, 1) + 0.01, 0.02, 1.0);
  constexpr uint64_t kSamples = 1024;
  std::vector<float> scores;
  if (rows <= kSamples) {
    // Small partitions: every row, so the threshold is exact.
    for (const SlotShard* shard : part->shards) {
      if (shard == nullptr) continue;
      for (uint32_t i = 0; i < shard->rows(); ++i) scores.push_back(Score(shard->RowAt(i)));
    }
  } else {
    for (uint64_t k = 0; k < kSamples; ++k) {
      uint64_t r = c.NextRandom() % rows;
      for (const SlotShard* shard : part->shards) {
        if (shard == nullptr) continue;
        if (r < shard->rows()) {
          scores.push_back(Score(shard->RowAt(static_cast<uint32_t>(r))));
          break;
        }
        r -= shard->rows();
      }
    }
  }
  const size_t at = std::min(scores.size() - 1, static_cast<size_t>(q * scores.size()));
  std::nth_element(scores.begin(), scores.begin() + at, scores.end());
  c.threshold = scores[at];
}

uint32_t EmbeddingTable::EvictStep(Partition* part, uint64_t need) {
  constexpr uint32_t kBatch = 256;      // rows evicted per step at most
  constexpr uint32_t kMaxScan = 16384;  // rows looked at per step at most
  EvictionCursor& c = part->evict;
  if (!c.valid || c.scanned >= c.lap) ResampleThreshold(part, need);
  if (!c.valid) return 0;
  const uint32_t num_shards = static_cast<uint32_t>(part->shards.size());
  uint32_t evicted = 0, scanned = 0;
  while (evicted < kBatch && scanned < kMaxScan && c.scanned < c.lap) {
    if (c.shard >= num_shards) {
      c.shard = 0;
      c.row = 0;
    }
    SlotShard* shard = part->shards[c.shard];
    if (shard == nullptr || c.row >= shard->rows()) {
      ++c.shard;
      c.row = 0;
      continue;
    }
    ++scanned;
    ++c.scanned;
    if (Score(shard->RowAt(c.row)) <= c.threshold) {
      // The shard's last (newest) row moves into c.row; the sweep passes it by until its
      // next lap, so among equal scores the rows it reaches first, the older, go first.
      DeleteRow(part, c.shard, c.row, DeleteReason::kMemory);
      ++evicted;
    }
    ++c.row;
    if (evicted > 0 && part->bytes + need <= part_low_bytes_) break;
  }
  return evicted;
}

bool EmbeddingTable::MakeRoom(Partition* part, const SlotShard& shard) {
  // What the insert would allocate can change as rows go (the shard's last chunk may be
  // freed), so it is asked again after every step.
  uint64_t idle_rows_scanned = 0;
  for (uint64_t need = shard.GrowthForInsert(); part->bytes + need > part_high_bytes_;
       need = shard.GrowthForInsert()) {
    const uint64_t rows = part->rows();
    if (rows == 0) return false;
    const uint64_t scanned_before = part->evict.scanned;
    if (EvictStep(part, need) > 0) {
      idle_rows_scanned = 0;
    } else if ((idle_rows_scanned += part->evict.scanned - scanned_before + 1) > 2 * rows) {
      // Two laps without a victim: scores the threshold cannot order (a safeguard; the
      // server refuses non-finite counts). Refuse rather than spin under the lock.
      return false;
    }
  }
  return true;
}

bool EmbeddingTable::EvictForCap(Partition* part, uint32_t slot_index) {
  SlotShard* shard = part->shards[slot_index];
  if (shard == nullptr || shard->rows() == 0) return false;
  const uint32_t rows = shard->rows();
  // The partition's share of the cap, over 64: one row for small caps (exactly the
  // lowest), a batch for large ones so that finding them is paid once per batch.
  const uint64_t share = options_.slots[slot_index].eviction.max_rows / num_partitions_;
  const uint32_t batch = static_cast<uint32_t>(std::clamp<uint64_t>(share / 64, 1, rows));
  constexpr uint32_t kExactRows = 4096;
  if (rows <= kExactRows) {
    // Exactly the `batch` lowest, deleted highest id first: EraseAt moves the last row
    // into the hole, which must not be one still to delete.
    std::vector<std::pair<float, uint32_t>> scored(rows);
    for (uint32_t i = 0; i < rows; ++i) scored[i] = {Score(shard->RowAt(i)), i};
    std::nth_element(scored.begin(), scored.begin() + (batch - 1), scored.end());
    std::vector<uint32_t> ids(batch);
    for (uint32_t i = 0; i < batch; ++i) ids[i] = scored[i].second;
    std::sort(ids.rbegin(), ids.rend());
    for (uint32_t id : ids) DeleteRow(part, slot_index, id, DeleteReason::kCap);
  } else {
    // Large shards: the batch/rows quantile of 1024 sampled scores, then a sweep from a
    // random row deleting the rows at or under it (as the memory limit's eviction does),
    // so no per-row scratch is needed.
    EvictionCursor& c = part->evict;
    std::vector<float> sample(1024);
    for (float& score : sample) {
      score = Score(shard->RowAt(static_cast<uint32_t>(c.NextRandom() % rows)));
    }
    const size_t at = std::min<size_t>(sample.size() - 1, uint64_t{batch} * sample.size() / rows);
    std::nth_element(sample.begin(), sample.begin() + at, sample.end());
    const float threshold = sample[at];
    uint32_t deleted = 0;
    uint32_t id = static_cast<uint32_t>(c.NextRandom() % rows);
    for (uint64_t looked = 0; deleted < batch && looked < rows && shard->rows() > 0; ++looked) {
      if (id >= shard->rows()) id = 0;
      if (Score(shard->RowAt(id)) <= threshold) {
        DeleteRow(part, slot_index, id, DeleteReason::kCap);
        ++deleted;
      }
      ++id;  // past the row moved into a hole too, as the memory sweep does
    }
    if (deleted == 0) return false;
  }
  part->evict.valid = false;
  return true;
}

char* EmbeddingTable::AcquireRow(Partition* part, uint32_t slot_index, uint64_t key, uint64_t hash,
                                 const float* show, Status* error) {
  SlotShard* shard = ShardFor(part, slot_index);
  if (char* row = shard->Find(key, hash)) return row;
  const SlotEvictionOptions& e = options_.slots[slot_index].eviction;
  if (e.admission()) {
    if (show == nullptr) {
      ++part->admission.pulls_default;
      return nullptr;
    }
    // Shows are finite and >= 0 (the server refuses others); a push counts at least once.
    const uint32_t seen = static_cast<uint32_t>(std::clamp(std::lround(*show), 1L, 255L));
    if (part->filter->Add(key, seen) < e.admission_threshold) {
      ++part->admission.pushes_dropped;
      return nullptr;
    }
    ++part->admission.admitted;
  }
  // The slow path of a new row (evicting, or rebuilding the index) is what stalls a
  // request: it is timed, and the longest is reported.
  std::chrono::steady_clock::time_point start;
  bool timed = false;
  auto time_from_here = [&] {
    if (!timed) start = std::chrono::steady_clock::now();
    timed = true;
  };
  auto done = [&](char* row) {
    if (timed) {
      NotePause(&worst_eviction_pause_ns_, NanosSince(start));
    }
    return row;
  };
  if (e.max_rows > 0) {
    // Reserve the new row's place; at the cap, evict to make it.
    if (capped_rows_[slot_index].fetch_add(1, std::memory_order_relaxed) >= e.max_rows) {
      time_from_here();
      if (!EvictForCap(part, slot_index)) {
        capped_rows_[slot_index].fetch_sub(1, std::memory_order_relaxed);
        ++part->cap_refused;
        return done(nullptr);
      }
    }
  }
  if (options_.memory_limit_bytes > 0 &&
      part->bytes + shard->GrowthForInsert() > part_high_bytes_) {
    time_from_here();
    if (!MakeRoom(part, *shard)) {
      if (e.max_rows > 0) capped_rows_[slot_index].fetch_sub(1, std::memory_order_relaxed);
      ++part->memory_refused;
      return done(nullptr);
    }
  }
  if (shard->IndexRebuildDue()) time_from_here();
  const uint64_t before = shard->allocated_bytes();
  char* row = shard->Insert(key, hash, options_.seed,
                            static_cast<uint16_t>(pass_.load(std::memory_order_relaxed)));
  if (row == nullptr) {
    if (e.max_rows > 0) capped_rows_[slot_index].fetch_sub(1, std::memory_order_relaxed);
    *error = Status::ResourceExhausted("slot " + std::to_string(options_.slots[slot_index].id) +
                                       " is full in its partition (" +
                                       std::to_string(SlotShard::kMaxRows) + " rows)");
    return done(nullptr);
  }
  AddBytes(part, static_cast<int64_t>(shard->allocated_bytes() - before));
  ++part->rows_created;
  return done(row);
}

template <typename Fn>
Status EmbeddingTable::ForEachRowLocked(const uint64_t* keys, const float* shows, Scratch* s,
                                        Fn fn) {
  for (uint32_t p = 0; p < num_partitions_; ++p) {
    const uint32_t begin = s->part_begin[p], end = s->part_begin[p + 1];
    if (begin == end) continue;
    Partition* part = &partitions_[p];
    std::lock_guard<std::mutex> lock(part->mu);
    // Sweeps so that the cache misses of many keys overlap: index entries, then rows,
    // then the lookups (now hitting cache, and independent of each other), then the work
    // on the rows. A key without a row takes the slow path in the last sweep, where
    // making room may delete rows and move others: after a deletion the rows found
    // earlier are looked up again.
    for (uint32_t j = begin; j < end; ++j) {
      const uint32_t i = s->order[j];
      ShardFor(part, s->slot[i])->PrefetchIndex(s->hash[i]);
    }
    for (uint32_t j = begin; j < end; ++j) {
      const uint32_t i = s->order[j];
      part->shards[s->slot[i]]->PrefetchRow(s->hash[i]);
    }
    s->rows.resize(end - begin);
    for (uint32_t j = begin; j < end; ++j) {
      const uint32_t i = s->order[j];
      s->rows[j - begin] = part->shards[s->slot[i]]->Find(keys[i], s->hash[i]);
    }
    const uint64_t deletions = part->deletions;
    Status error;
    for (uint32_t j = begin; j < end; ++j) {
      const uint32_t i = s->order[j];
      char* row = s->rows[j - begin];
      if (row == nullptr || part->deletions != deletions) {
        row =
            AcquireRow(part, s->slot[i], keys[i], s->hash[i], shows ? &shows[i] : nullptr, &error);
        if (!error.ok()) return error;
      }
      fn(i, row);
    }
  }
  return Status::OK();
}

Status EmbeddingTable::Pull(const uint64_t* keys, size_t n, float* out) {
  NoteChange();  // pulls create rows
  thread_local Scratch scratch;
  Scratch* s = &scratch;
  Status st = Prepare(keys, n, s);
  if (st.ok()) {
    st = ForEachRowLocked(keys, nullptr, s, [&](uint32_t i, char* row) {
      const size_t bytes = sizeof(float) * layouts_[s->slot[i]].dim;
      if (row != nullptr) {
        std::memcpy(out + s->offset[i], RowLayout::Weights(row), bytes);
      } else {
        std::memset(out + s->offset[i], 0, bytes);
      }
    });
  }
  if (n > kShrinkScratchKeys) scratch = Scratch();
  return st;
}

Status EmbeddingTable::Push(const uint64_t* keys, size_t n, const float* grads, const float* shows,
                            const float* clicks) {
  NoteChange();
  thread_local Scratch scratch;
  Scratch* s = &scratch;
  const size_t request_keys = n;
  if (!s->dedup.AllDistinct(keys, n)) {
    // Rare: the client library already deduplicates. Sum per distinct key first.
    uint64_t num_values;
    PEPNET_RETURN_IF_ERROR(CountValues(keys, n, &num_values));
    const size_t u = s->dedup.Dedup(keys, n, &s->unique_keys, &s->position);
    s->unique_offset.resize(u);
    uint64_t offset = 0;
    for (size_t k = 0; k < u; ++k) {
      s->unique_offset[k] = offset;
      offset += DimOf(s->unique_keys[k]);
    }
    s->sum_grads.assign(offset, 0.0f);
    s->sum_shows.assign(u, 0.0f);
    s->sum_clicks.assign(u, 0.0f);
    uint64_t in = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t k = s->position[i];
      const uint32_t dim = DimOf(keys[i]);
      float* dst = s->sum_grads.data() + s->unique_offset[k];
      for (uint32_t d = 0; d < dim; ++d) dst[d] += grads[in + d];
      in += dim;
      s->sum_shows[k] += shows[i];
      s->sum_clicks[k] += clicks[i];
    }
    keys = s->unique_keys.data();
    n = u;
    grads = s->sum_grads.data();
    shows = s->sum_shows.data();
    clicks = s->sum_clicks.data();
  }
  const uint16_t pass = static_cast<uint16_t>(pass_.load(std::memory_order_relaxed));
  Status st = Prepare(keys, n, s);
  if (st.ok()) {
    st = ForEachRowLocked(keys, shows, s, [&](uint32_t i, char* row) {
      if (row == nullptr) return;  // not admitted or refused: the update is dropped
      layouts_[s->slot[i]].ApplyAdagrad(row, grads + s->offset[i]);
      RowLayout::CountUpdate(row, shows[i], clicks[i], pass);
    });
  }
  if (request_keys > kShrinkScratchKeys) scratch = Scratch();
  return st;
}

Status EmbeddingTable::Lookup(uint64_t key, RowSnapshot* out) const {
  const int32_t index = slot_index_[SlotOfKey(key, options_.slot_bits)];
  if (index < 0) return Status::InvalidArgument(KeyError(key, options_.slot_bits));
  const uint64_t h = TableHash(key, hash_salt_);
  const Partition& part = partitions_[PartitionOf(h)];
  std::lock_guard<std::mutex> lock(part.mu);
  const SlotShard* shard = part.shards[index];
  const char* row = shard ? shard->Find(key, h) : nullptr;
  if (row == nullptr) return Status::NotFound("no row for key " + FormatKey(key));
  const RowLayout& layout = layouts_[index];
  out->key = key;
  out->meta = *RowLayout::Meta(row);
  out->weights.assign(RowLayout::Weights(row), RowLayout::Weights(row) + layout.dim);
  out->accumulator.assign(layout.Accumulator(row), layout.Accumulator(row) + layout.acc_floats);
  return Status::OK();
}

Status EmbeddingTable::SetWeights(uint64_t key, const float* weights, uint32_t dim) {
  const int32_t index = slot_index_[SlotOfKey(key, options_.slot_bits)];
  if (index < 0) return Status::InvalidArgument(KeyError(key, options_.slot_bits));
  if (dim != layouts_[index].dim) {
    return Status::InvalidArgument("key " + FormatKey(key) + ": " + std::to_string(dim) +
                                   " weights for a slot of dim " +
                                   std::to_string(layouts_[index].dim));
  }
  NoteChange();
  const uint64_t h = TableHash(key, hash_salt_);
  Partition& part = partitions_[PartitionOf(h)];
  std::lock_guard<std::mutex> lock(part.mu);
  SlotShard* shard = ShardFor(&part, index);
  const uint64_t before = shard->allocated_bytes();
  bool created = false;
  char* row = shard->FindOrInsert(key, h, options_.seed, static_cast<uint16_t>(pass()), &created);
  if (row == nullptr) return Status::ResourceExhausted("slot full for key " + FormatKey(key));
  AddBytes(&part, static_cast<int64_t>(shard->allocated_bytes() - before));
  if (created) {
    ++part.rows_created;
    if (options_.slots[index].eviction.max_rows > 0) {
      capped_rows_[index].fetch_add(1, std::memory_order_relaxed);
    }
  }
  std::memcpy(RowLayout::Weights(row), weights, 4 * size_t{dim});
  return Status::OK();
}

Status EmbeddingTable::Erase(uint64_t key) {
  const int32_t index = slot_index_[SlotOfKey(key, options_.slot_bits)];
  if (index < 0) return Status::InvalidArgument(KeyError(key, options_.slot_bits));
  NoteChange();
  const uint64_t h = TableHash(key, hash_salt_);
  Partition& part = partitions_[PartitionOf(h)];
  std::lock_guard<std::mutex> lock(part.mu);
  SlotShard* shard = part.shards[index];
  uint32_t id;
  if (shard == nullptr || !shard->FindId(key, h, &id)) return Status::OK();
  NoteMove(&part, static_cast<uint32_t>(index), *shard, id);
  const uint64_t before = shard->allocated_bytes();
  shard->EraseAt(id);
  ++part.deletions;
  AddBytes(&part, static_cast<int64_t>(shard->allocated_bytes()) - static_cast<int64_t>(before));
  ++part.rows_erased;
  if (options_.slots[index].eviction.max_rows > 0) {
    capped_rows_[index].fetch_sub(1, std::memory_order_relaxed);
  }
  part.evict.valid = false;
  return Status::OK();
}

Status EmbeddingTable::BeginPass(uint32_t pass) {
  const uint32_t running = pass_.load(std::memory_order_relaxed);
  if (pass < running) {
    return Status::InvalidArgument("pass " + std::to_string(pass) +
                                   " begins but the table is at pass " + std::to_string(running) +
                                   "; passes only go forward (row ages would wrap and TTL "
                                   "would delete every row)");
  }
  NoteChange();
  pass_.store(pass, std::memory_order_relaxed);
  for (Partition& part : partitions_) {
    std::lock_guard<std::mutex> lock(part.mu);
    AddBytes(&part, -static_cast<int64_t>(part.deleted_keys.Clear()));
    std::fill(part.deleted_pass.begin(), part.deleted_pass.end(), 0);
  }
  return Status::OK();
}

Status EmbeddingTable::EndPass(PassEndReport* out) {
  std::lock_guard<std::mutex> once(end_pass_mu_);
  if (last_ended_pass_ == static_cast<int64_t>(pass())) {
    return Status::InvalidArgument("pass " + std::to_string(pass()) +
                                   " has already ended (its scores were decayed once)");
  }
  NoteChange();
  last_ended_pass_ = pass();
  PassEndReport report;
  const uint16_t pass = static_cast<uint16_t>(pass_.load(std::memory_order_relaxed));
  const float decay = options_.score.decay;
  const uint32_t pass_ends = pass_ends_.fetch_add(1, std::memory_order_relaxed) + 1;
  const bool halve = any_admission_ && options_.admission_halving_passes > 0 &&
                     pass_ends % options_.admission_halving_passes == 0;
  for (Partition& part : partitions_) {
    std::lock_guard<std::mutex> lock(part.mu);
    const auto start = std::chrono::steady_clock::now();
    for (uint32_t slot = 0; slot < part.shards.size(); ++slot) {
      SlotShard* shard = part.shards[slot];
      if (shard == nullptr) continue;
      report.rows_before += shard->rows();
      const SlotEvictionOptions& e = options_.slots[slot].eviction;
      for (uint32_t id = 0; id < shard->rows();) {
        RowMeta* meta = RowLayout::Meta(shard->RowAt(id));
        meta->show *= decay;
        meta->click *= decay;
        const uint16_t since_update = static_cast<uint16_t>(pass - meta->last_update_pass);
        const uint16_t since_created = static_cast<uint16_t>(pass - meta->created_pass);
        DeleteReason reason;
        if (e.ttl_passes > 0 && since_update >= e.ttl_passes) {
          reason = DeleteReason::kTtl;
        } else if (e.min_updates > 0 && since_created + 1u >= e.min_updates_passes &&
                   meta->update_count < e.min_updates) {
          reason = DeleteReason::kMinUpdates;
        } else if (e.delete_score_threshold > 0 &&
                   FeatureScore(*meta, options_.score.coefficients) < e.delete_score_threshold) {
          reason = DeleteReason::kScore;
        } else {
          ++id;
          continue;
        }
        // The last row moves into `id`; it is decayed when the loop looks at it there.
        DeleteRow(&part, slot, id, reason);
        ++report.deleted[static_cast<int>(reason)];
      }
      report.rows_after += shard->rows();
      const uint64_t before = shard->allocated_bytes();
      shard->ShrinkIndexIfSparse();
      AddBytes(&part,
               static_cast<int64_t>(shard->allocated_bytes()) - static_cast<int64_t>(before));
    }
    if (halve) part.filter->Halve();
    part.evict.valid = false;
    NotePause(&worst_pass_end_pause_ns_, NanosSince(start));
  }
  if (out != nullptr) *out = report;
  return Status::OK();
}

int64_t EmbeddingTable::last_ended_pass() const {
  std::lock_guard<std::mutex> lock(end_pass_mu_);
  return last_ended_pass_;
}

TableStatsSnapshot EmbeddingTable::Stats() const {
  TableStatsSnapshot st;
  const size_t num_slots = layouts_.size();
  st.slots.resize(num_slots);
  for (size_t i = 0; i < num_slots; ++i) {
    st.slots[i].slot = options_.slots[i].id;
    st.slots[i].dim = layouts_[i].dim;
  }
  // Structures outside the partitions: this object, the slot map, layouts, partitions.
  st.bytes.slack += FixedBytes();
  // A strided sample of every partition's scores for the quantiles.
  constexpr uint64_t kScoreSamples = 8192;
  const uint64_t per_part = std::max<uint64_t>(1, kScoreSamples / num_partitions_);
  std::vector<float> scores;
  for (uint32_t p = 0; p < num_partitions_; ++p) {
    const Partition& part = partitions_[p];
    std::lock_guard<std::mutex> lock(part.mu);
    st.rows_created += part.rows_created;
    st.rows_erased += part.rows_erased;
    st.cap_refused += part.cap_refused;
    st.memory_refused += part.memory_refused;
    st.admission.admitted += part.admission.admitted;
    st.admission.pushes_dropped += part.admission.pushes_dropped;
    st.admission.pulls_default += part.admission.pulls_default;
    st.bytes.slack += VectorBytes(part.shards) + VectorBytes(part.deleted_pass) +
                      VectorBytes(part.deleted_total) + part.deleted_keys.bytes() +
                      part.moved_rows.bytes();
    if (part.filter) {
      st.bytes.metadata += FilterBytes(part);
    }
    uint64_t part_rows = 0;
    for (size_t i = 0; i < num_slots; ++i) {
      for (int r = 0; r < kNumDeleteReasons; ++r) {
        st.slots[i].deleted_pass[r] += part.deleted_pass[i * kNumDeleteReasons + r];
        st.slots[i].deleted_total[r] += part.deleted_total[i * kNumDeleteReasons + r];
        st.rows_deleted += part.deleted_total[i * kNumDeleteReasons + r];
      }
      const SlotShard* shard = part.shards[i];
      if (shard == nullptr) continue;
      st.slots[i].rows += shard->rows();
      st.slots[i].bytes += shard->allocated_bytes() + BlockBytes(sizeof(SlotShard));
      st.bytes.Add(shard->Bytes());
      st.bytes.slack += BlockBytes(sizeof(SlotShard));
      part_rows += shard->rows();
    }
    // Every stride-th row of the partition, visiting only those.
    const uint64_t stride = std::max<uint64_t>(1, part_rows / per_part);
    uint64_t first = 0;  // the first sampled row of the next shard
    for (const SlotShard* shard : part.shards) {
      if (shard == nullptr) continue;
      uint64_t i = first;
      for (; i < shard->rows(); i += stride) {
        scores.push_back(Score(shard->RowAt(static_cast<uint32_t>(i))));
      }
      first = i - shard->rows();
    }
  }
  for (const SlotStatsSnapshot& s : st.slots) st.rows += s.rows;
  if (!scores.empty()) {
    std::sort(scores.begin(), scores.end());
    for (double q : {0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0}) {
      st.score_quantiles.emplace_back(
          q, scores[std::min(scores.size() - 1, static_cast<size_t>(q * scores.size()))]);
    }
  }
  st.memory_limit_bytes = options_.memory_limit_bytes;
  st.bytes_used = bytes_used();
  st.max_bytes_used = max_bytes_used();
  st.worst_eviction_pause_ns = worst_eviction_pause_ns_.load(std::memory_order_relaxed);
  st.worst_pass_end_pause_ns = worst_pass_end_pause_ns_.load(std::memory_order_relaxed);
  st.pass = pass();
  return st;
}

}  // namespace pepnet
