// Making room in the table: deleting a row, evicting the lowest-score rows under the memory
// limit and a slot's row cap, and the pass-end policies (decay, TTL, minimum updates,
// score threshold).
#include <algorithm>
#include <chrono>
#include <mutex>

#include "ps/embedding_table.h"

namespace pepnet {

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

char* EmbeddingTable::ReplaceVictim(Partition* part, uint32_t slot_index, uint64_t key,
                                    uint64_t hash) {
  constexpr uint32_t kMaxScan = 16384;  // as EvictStep
  SlotShard* shard = part->shards[slot_index];
  if (shard == nullptr || shard->rows() == 0 || shard->IndexRebuildDue()) return nullptr;
  EvictionCursor& c = part->evict;
  if (!c.valid || c.scanned >= c.lap) ResampleThreshold(part, shard->GrowthForInsert());
  if (!c.valid) return nullptr;
  const uint32_t num_shards = static_cast<uint32_t>(part->shards.size());
  // The sweep of EvictStep, stopping at its next victim: the same rows go, in the same
  // order, whichever way their places are reused.
  for (uint32_t scanned = 0; scanned < kMaxScan && c.scanned < c.lap;) {
    if (c.shard >= num_shards) {
      c.shard = 0;
      c.row = 0;
    }
    SlotShard* at = part->shards[c.shard];
    if (at == nullptr || c.row >= at->rows()) {
      ++c.shard;
      c.row = 0;
      continue;
    }
    char* victim = at->RowAt(c.row);
    if (Score(victim) > c.threshold) {
      ++scanned;
      ++c.scanned;
      ++c.row;
      continue;
    }
    if (c.shard != slot_index) return nullptr;  // EvictStep deletes it; then an insert
    ++c.scanned;
    const uint16_t pass = static_cast<uint16_t>(pass_.load(std::memory_order_relaxed));
    if (RowLayout::Meta(victim)->created_pass != pass) {
      // Serving has the victim's key from an earlier version: the publish must name it.
      AddBytes(part, static_cast<int64_t>(part->deleted_keys.Add(RowLayout::Key(victim))));
    }
    const size_t k =
        size_t{slot_index} * kNumDeleteReasons + static_cast<int>(DeleteReason::kMemory);
    ++part->deleted_pass[k];
    ++part->deleted_total[k];
    ++part->replacements;
    ++part->rows_created;
    // The new row's place in a capped slot was reserved; the victim's is given back.
    if (options_.slots[slot_index].eviction.max_rows > 0) {
      capped_rows_[slot_index].fetch_sub(1, std::memory_order_relaxed);
    }
    // The new row is passed by until the next lap, as a row moved into a hole is.
    char* row = at->ReplaceAt(c.row++, key, hash, options_.seed, pass);
    return row;
  }
  return nullptr;
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

}  // namespace pepnet
