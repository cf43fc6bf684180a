#include "ps/embedding_table.h"

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

Status EmbeddingTable::Create(const TableOptions& options, std::unique_ptr<EmbeddingTable>* out) {
  PEPNET_RETURN_IF_ERROR(ValidateTableOptions(options));
  out->reset(new EmbeddingTable(options));
  return Status::OK();
}

EmbeddingTable::EmbeddingTable(const TableOptions& options)
    : options_(options), hash_salt_(RandomSalt()) {
  slot_index_.assign(size_t{1} << options_.slot_bits, -1);
  for (const SlotOptions& s : options_.slots) {
    slot_index_[s.id] = static_cast<int32_t>(layouts_.size());
    layouts_.push_back(RowLayout::Make(s.dim, s.adagrad));
  }
  num_partitions_ = 1u << options_.partition_bits;
  partitions_ = std::vector<Partition>(num_partitions_);
  for (Partition& p : partitions_) p.shards.assign(layouts_.size(), nullptr);
}

EmbeddingTable::~EmbeddingTable() = default;

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
  if (shard == nullptr) shard = new SlotShard(&layouts_[slot_index], hash_salt_);
  return shard;
}

template <typename Fn>
Status EmbeddingTable::ForEachRowLocked(const uint64_t* keys, Scratch* s, Fn fn) {
  const uint64_t seed = options_.seed;
  const uint16_t pass = static_cast<uint16_t>(pass_.load(std::memory_order_relaxed));
  for (uint32_t p = 0; p < num_partitions_; ++p) {
    const uint32_t begin = s->part_begin[p], end = s->part_begin[p + 1];
    if (begin == end) continue;
    Partition* part = &partitions_[p];
    s->rows.resize(end - begin);
    std::lock_guard<std::mutex> lock(part->mu);
    // Sweeps so that the cache misses of many keys overlap: index entries, then rows,
    // then the lookups (now hitting cache), then the work on the rows.
    for (uint32_t j = begin; j < end; ++j) {
      const uint32_t i = s->order[j];
      ShardFor(part, s->slot[i])->PrefetchIndex(s->hash[i]);
    }
    for (uint32_t j = begin; j < end; ++j) {
      const uint32_t i = s->order[j];
      part->shards[s->slot[i]]->PrefetchRow(s->hash[i]);
    }
    for (uint32_t j = begin; j < end; ++j) {
      const uint32_t i = s->order[j];
      bool created;
      char* row = part->shards[s->slot[i]]->FindOrInsert(keys[i], s->hash[i], seed, pass, &created);
      if (row == nullptr) {
        return Status::ResourceExhausted("slot " + std::to_string(options_.slots[s->slot[i]].id) +
                                         " is full in partition " + std::to_string(p));
      }
      part->rows_created += created;
      s->rows[j - begin] = row;
    }
    for (uint32_t j = begin; j < end; ++j) fn(s->order[j], s->rows[j - begin]);
  }
  return Status::OK();
}

Status EmbeddingTable::Pull(const uint64_t* keys, size_t n, float* out) {
  thread_local Scratch scratch;
  Scratch* s = &scratch;
  Status st = Prepare(keys, n, s);
  if (st.ok()) {
    st = ForEachRowLocked(keys, s, [&](uint32_t i, char* row) {
      std::memcpy(out + s->offset[i], RowLayout::Weights(row),
                  sizeof(float) * layouts_[s->slot[i]].dim);
    });
  }
  if (n > kShrinkScratchKeys) scratch = Scratch();
  return st;
}

Status EmbeddingTable::Push(const uint64_t* keys, size_t n, const float* grads, const float* shows,
                            const float* clicks) {
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
    st = ForEachRowLocked(keys, s, [&](uint32_t i, char* row) {
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
  const uint64_t h = TableHash(key, hash_salt_);
  Partition& part = partitions_[PartitionOf(h)];
  std::lock_guard<std::mutex> lock(part.mu);
  bool created = false;
  char* row = ShardFor(&part, index)->FindOrInsert(key, h, options_.seed, pass(), &created);
  if (row == nullptr) return Status::ResourceExhausted("slot full for key " + FormatKey(key));
  if (created) ++part.rows_created;
  std::memcpy(RowLayout::Weights(row), weights, 4 * size_t{dim});
  return Status::OK();
}

TableStatsSnapshot EmbeddingTable::Stats() const {
  TableStatsSnapshot st;
  std::vector<uint64_t> rows_by_slot(layouts_.size(), 0);
  // Structures outside the partitions: this object, the slot map, layouts, partitions.
  st.bytes.slack += AllocatedBytes(this) + AllocatedBytes(slot_index_.data()) +
                    AllocatedBytes(layouts_.data()) + AllocatedBytes(partitions_.data());
  for (uint32_t p = 0; p < num_partitions_; ++p) {
    const Partition& part = partitions_[p];
    std::lock_guard<std::mutex> lock(part.mu);
    st.rows_created += part.rows_created;
    st.bytes.slack += AllocatedBytes(part.shards.data());
    for (size_t i = 0; i < part.shards.size(); ++i) {
      const SlotShard* shard = part.shards[i];
      if (shard == nullptr) continue;
      rows_by_slot[i] += shard->rows();
      st.bytes.Add(shard->Bytes());
      st.bytes.slack += AllocatedBytes(shard);
    }
  }
  for (size_t i = 0; i < layouts_.size(); ++i) {
    st.slots.push_back({options_.slots[i].id, layouts_[i].dim, rows_by_slot[i]});
    st.rows += rows_by_slot[i];
  }
  return st;
}

}  // namespace pepnet
