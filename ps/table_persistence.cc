// EmbeddingTable's side of durability: what a commit captures and how a load puts it
// back (the storage itself is ps/shard_store.h).
#include <algorithm>
#include <cstring>

#include "common/hash.h"
#include "ps/embedding_table.h"

namespace pepnet {

namespace {

Status ImageMismatch(uint32_t partition, const std::string& what) {
  return Status::Corruption("stored table image, partition " + std::to_string(partition) + ": " +
                            what);
}

}  // namespace

Status EmbeddingTable::CaptureCommit(uint32_t pass, TableImage* image,
                                     const std::function<Status(const PartitionCommit&)>& fn) {
  if (!options_.durable) return Status::Internal("CaptureCommit on a table that is not durable");
  image->hash_salt = hash_salt_;
  image->pass = this->pass();
  image->pass_ends = pass_ends_.load(std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(end_pass_mu_);
    image->last_ended_pass = last_ended_pass_;
  }
  image->partitions.clear();
  std::vector<uint64_t> places;  // slot index << 32 | row id
  for (uint32_t p = 0; p < num_partitions_; ++p) {
    Partition& part = partitions_[p];
    std::lock_guard<std::mutex> lock(part.mu);
    PartitionCommit c;
    c.partition = p;
    places.clear();
    part.moved_rows.ForEach([&](uint64_t place) { places.push_back(place); });
    for (uint32_t i = 0; i < part.shards.size(); ++i) {
      SlotShard* shard = part.shards[i];
      if (shard == nullptr) continue;
      const uint64_t before = shard->allocated_bytes();
      shard->RebuildIndex();
      AddBytes(&part,
               static_cast<int64_t>(shard->allocated_bytes()) - static_cast<int64_t>(before));
      for (uint32_t id = 0; id < shard->rows(); ++id) {
        if (ChangedIn(*RowLayout::Meta(shard->RowAt(id)), pass)) {
          places.push_back((uint64_t{i} << 32) | id);
        }
      }
      c.image.shards.push_back({i, shard->rows(), shard->index_capacity(), shard->chunk_slots()});
    }
    std::sort(places.begin(), places.end());
    places.erase(std::unique(places.begin(), places.end()), places.end());
    for (uint64_t place : places) {
      const uint32_t slot = static_cast<uint32_t>(place >> 32);
      const uint32_t id = static_cast<uint32_t>(place);
      const SlotShard* shard = part.shards[slot];
      // A place past the end: the shard shrank since; its rows are elsewhere or gone.
      if (shard == nullptr || id >= shard->rows()) continue;
      const char* row = shard->RowAt(id);
      c.rows.push_back({RowLayout::Key(row), slot, id, row, shard->layout().row_bytes});
    }
    part.deleted_keys.ForEach([&](uint64_t key) {
      c.deleted_log.push_back(key);
      const SlotShard* shard = part.shards[slot_index_[SlotOfKey(key, options_.slot_bits)]];
      if (shard == nullptr || shard->Find(key, TableHash(key, hash_salt_)) == nullptr) {
        c.deleted.push_back(key);
      }
    });
    std::sort(c.deleted.begin(), c.deleted.end());
    c.deleted.erase(std::unique(c.deleted.begin(), c.deleted.end()), c.deleted.end());
    if (part.filter) {
      c.filter = static_cast<const uint8_t*>(part.filter->data());
      c.filter_bytes = part.filter->size();
    }
    static_cast<PartitionState&>(c.image) = part;
    PEPNET_RETURN_IF_ERROR(fn(c));
    AddBytes(&part, -static_cast<int64_t>(part.moved_rows.Clear()));
    image->partitions.push_back(std::move(c.image));
  }
  return Status::OK();
}

Status EmbeddingTable::BeginLoad(const TableImage& image) {
  const size_t num_slots = layouts_.size();
  if (image.partitions.size() != num_partitions_) {
    return Status::Corruption("stored table image has " + std::to_string(image.partitions.size()) +
                              " partitions, the table config " + std::to_string(num_partitions_));
  }
  for (uint32_t p = 0; p < num_partitions_; ++p) {
    const PartitionImage& im = image.partitions[p];
    if (im.deleted_pass.size() != num_slots * kNumDeleteReasons ||
        im.deleted_total.size() != num_slots * kNumDeleteReasons) {
      return ImageMismatch(p, "deletion counters for another number of slots");
    }
    for (size_t k = 0; k < im.shards.size(); ++k) {
      if (im.shards[k].slot_index >= num_slots ||
          (k > 0 && im.shards[k].slot_index <= im.shards[k - 1].slot_index)) {
        return ImageMismatch(p,
                             "slot shard of slot index " + std::to_string(im.shards[k].slot_index));
      }
    }
  }
  load_.reset(new LoadState);
  load_->image = image;
  load_->placed.resize(num_partitions_);
  hash_salt_ = image.hash_salt;
  pass_.store(image.pass, std::memory_order_relaxed);
  pass_ends_.store(image.pass_ends, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(end_pass_mu_);
    last_ended_pass_ = image.last_ended_pass;
  }
  for (uint32_t p = 0; p < num_partitions_; ++p) {
    Partition& part = partitions_[p];
    const PartitionImage& im = image.partitions[p];
    std::lock_guard<std::mutex> lock(part.mu);
    for (SlotShard*& shard : part.shards) {
      if (shard == nullptr) continue;
      AddBytes(&part,
               -static_cast<int64_t>(shard->allocated_bytes() + BlockBytes(sizeof(SlotShard))));
      delete shard;
      shard = nullptr;
    }
    AddBytes(&part, -static_cast<int64_t>(part.deleted_keys.Clear()));
    AddBytes(&part, -static_cast<int64_t>(part.moved_rows.Clear()));
    if (part.filter) {
      // The filter's positions come from the salt; its size stays.
      part.filter.reset(new AdmissionFilter(part.filter->size(), Mix64(hash_salt_ ^ 0xAD)));
    }
    static_cast<PartitionState&>(part) = im;
    load_->placed[p].resize(num_slots);
    for (const SlotShardImage& si : im.shards) {
      SlotShard* shard = ShardFor(&part, si.slot_index);
      if (!shard->AllocateForLoad(si.rows, si.index_capacity, si.chunk_slots)) {
        return ImageMismatch(p, "slot shard of " + std::to_string(si.rows) + " rows, " +
                                    std::to_string(si.index_capacity) + " index entries and " +
                                    std::to_string(si.chunk_slots) + " chunk slots");
      }
      AddBytes(&part, static_cast<int64_t>(shard->allocated_bytes()));
      load_->placed[p][si.slot_index].assign(si.rows, 0);
    }
  }
  return Status::OK();
}

Status EmbeddingTable::LoadRow(uint64_t key, uint32_t id, uint32_t written_pass_ends,
                               const char* body, size_t body_bytes) {
  const int32_t index = slot_index_[SlotOfKey(key, options_.slot_bits)];
  if (index < 0) {
    return Status::Corruption("stored row " + FormatKey(key) + " is of an unconfigured slot");
  }
  const RowLayout& layout = layouts_[index];
  if (body_bytes + 8 != layout.row_bytes) {
    return Status::Corruption("stored row " + FormatKey(key) + " has " +
                              std::to_string(body_bytes + 8) + " bytes, its slot's rows " +
                              std::to_string(layout.row_bytes));
  }
  const uint32_t pass_ends = load_->image.pass_ends;
  if (written_pass_ends > pass_ends) {
    return Status::Corruption("stored row " + FormatKey(key) + " was written after pass end " +
                              std::to_string(written_pass_ends) + ", later than the table's " +
                              std::to_string(pass_ends));
  }
  const uint32_t p = PartitionOfKey(key);
  Partition& part = partitions_[p];
  SlotShard* shard = part.shards[index];
  std::vector<uint8_t>& placed = load_->placed[p][index];
  if (shard == nullptr || id >= shard->rows() || placed[id]) {
    return Status::Corruption("stored row " + FormatKey(key) + " names place " +
                              std::to_string(id) + " of partition " + std::to_string(p) +
                              (shard != nullptr && id < shard->rows()
                                   ? ", which another row holds"
                                   : ", which the table image does not have"));
  }
  placed[id] = 1;
  char* row = shard->RowAt(id);
  RowLayout::SetKey(row, key);
  std::memcpy(row + RowLayout::kMetaOffset, body, body_bytes);
  // The pass ends since the row was stored decayed it as they decay every row: replayed
  // one multiplication at a time, so the counters are bit for bit what they were.
  RowMeta* meta = RowLayout::Meta(row);
  const float decay = options_.score.decay;
  for (uint32_t k = written_pass_ends; k < pass_ends; ++k) {
    meta->show *= decay;
    meta->click *= decay;
  }
  return Status::OK();
}

Status EmbeddingTable::LoadFilter(uint32_t partition, const char* data, size_t n) {
  if (partition >= num_partitions_ || !partitions_[partition].filter ||
      !partitions_[partition].filter->Restore(data, n)) {
    return ImageMismatch(partition, "admission filter of " + std::to_string(n) + " bytes");
  }
  return Status::OK();
}

void EmbeddingTable::LoadDeletedKey(uint32_t partition, uint64_t key) {
  Partition& part = partitions_[partition];
  AddBytes(&part, static_cast<int64_t>(part.deleted_keys.Add(key)));
}

Status EmbeddingTable::FinishLoad() {
  for (uint32_t p = 0; p < num_partitions_; ++p) {
    Partition& part = partitions_[p];
    for (uint32_t i = 0; i < part.shards.size(); ++i) {
      SlotShard* shard = part.shards[i];
      if (shard == nullptr) continue;
      const std::vector<uint8_t>& placed = load_->placed[p][i];
      const auto missing = std::find(placed.begin(), placed.end(), 0);
      if (missing != placed.end()) {
        return ImageMismatch(p, "no stored row for place " +
                                    std::to_string(missing - placed.begin()) + " of slot " +
                                    std::to_string(options_.slots[i].id) + " (" +
                                    std::to_string(shard->rows()) + " rows expected)");
      }
      const uint64_t before = shard->allocated_bytes();
      shard->RebuildIndex();
      AddBytes(&part,
               static_cast<int64_t>(shard->allocated_bytes()) - static_cast<int64_t>(before));
    }
  }
  for (size_t i = 0; i < layouts_.size(); ++i) {
    if (options_.slots[i].eviction.max_rows == 0) continue;
    uint64_t rows = 0;
    for (const Partition& part : partitions_) rows += part.shards[i] ? part.shards[i]->rows() : 0;
    capped_rows_[i].store(rows, std::memory_order_relaxed);
  }
  load_.reset();
  max_bytes_used_.store(bytes_used(), std::memory_order_relaxed);
  ClearChanged();
  return Status::OK();
}

}  // namespace pepnet
