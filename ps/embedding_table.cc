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

uint64_t EmbeddingTable::NanosSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              start)
      .count();
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
    // Only the new row's growth is over the mark: it can have a victim's place instead,
    // which allocates nothing but maybe a block of the deleted-key log.
    if (part->bytes + part->deleted_keys.NextAddBytesBound() <= part_high_bytes_) {
      if (char* row = ReplaceVictim(part, slot_index, key, hash)) return done(row);
    }
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
    const uint64_t replacements = part->replacements;
    Status error;
    for (uint32_t j = begin; j < end; ++j) {
      const uint32_t i = s->order[j];
      char* row = s->rows[j - begin];
      // After a deletion a row found earlier may have moved or gone; after a replacement
      // it is where it was, but may be the victim, holding another key now.
      if (row == nullptr || part->deletions != deletions ||
          (part->replacements != replacements && RowLayout::Key(row) != keys[i])) {
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

int64_t EmbeddingTable::last_ended_pass() const {
  std::lock_guard<std::mutex> lock(end_pass_mu_);
  return last_ended_pass_;
}

}  // namespace pepnet
