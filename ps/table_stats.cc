// The table's statistics: a snapshot read partition by partition, and its figures in the
// stats registry (common/stats.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>

#include "common/stats.h"
#include "proto/ps.pb.h"
#include "ps/table_stats.h"

namespace pepnet {

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
    const auto held = std::chrono::steady_clock::now();
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
    // How long a scrape holds up the partition's requests (docs/benchmarks.md).
    const uint64_t ns = NanosSince(held);
    uint64_t worst = worst_stats_pause_ns_.load(std::memory_order_relaxed);
    while (ns > worst && !worst_stats_pause_ns_.compare_exchange_weak(worst, ns)) {
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
  st.worst_stats_pause_ns = worst_stats_pause_ns_.load(std::memory_order_relaxed);
  st.pass = pass();
  return st;
}

void AddTableStats(const TableStatsSnapshot& t, StatSet* out) {
  out->Gauge("pepnet_table_rows", "Rows in the table.", t.rows).Json("rows");
  out->Gauge("pepnet_table_memory_limit_bytes", "The table's memory limit (0: none).",
             t.memory_limit_bytes)
      .Json("memory_limit_bytes");
  out->Gauge("pepnet_table_used_bytes", "Every byte the table owns.", t.bytes.total())
      .Json("bytes_used");
  out->Gauge("pepnet_table_max_used_bytes", "High-water mark of the table's bytes since start.",
             t.max_bytes_used)
      .Json("max_bytes_used");
  const char* kBytesHelp = "The table's bytes by what they hold (they sum to the used bytes).";
  const std::pair<const char*, uint64_t> categories[] = {{"payload", t.bytes.payload},
                                                         {"optimizer", t.bytes.optimizer},
                                                         {"metadata", t.bytes.metadata},
                                                         {"index", t.bytes.index},
                                                         {"slack", t.bytes.slack}};
  for (const auto& [name, bytes] : categories) {
    out->Gauge("pepnet_table_category_bytes", kBytesHelp, bytes)
        .Label("category", name)
        .Json(std::string(name) + "_bytes");
  }
  // Counts of the table's life, not of this process's: they are part of a committed pass,
  // so a rollback puts them back to the pass's (gauges, not counters, for Prometheus).
  out->Gauge("pepnet_table_created_rows",
             "Rows created over the table's life (a rollback restores the committed count).",
             t.rows_created)
      .Json("rows_created");
  out->Gauge("pepnet_table_deleted_rows",
             "Rows deleted by the memory-control policies over the table's life, every reason.",
             t.rows_deleted)
      .Json("rows_deleted");
  out->Gauge("pepnet_table_erased_rows", "Rows erased on request over the table's life.",
             t.rows_erased)
      .Json("rows_erased");
  const char* kRefusedHelp =
      "New rows refused over the table's life: their slot at its cap, or no memory.";
  out->Gauge("pepnet_table_refused_new_rows", kRefusedHelp, t.cap_refused)
      .Label("cause", "cap")
      .Json("cap_refused");
  out->Gauge("pepnet_table_refused_new_rows", kRefusedHelp, t.memory_refused)
      .Label("cause", "memory")
      .Json("memory_refused");
  out->Gauge("pepnet_admission_admitted_keys", "Keys admitted by the admission filter.",
             t.admission.admitted)
      .Json("admission.admitted");
  out->Gauge("pepnet_admission_dropped_pushes", "Pushes dropped for keys not yet admitted.",
             t.admission.pushes_dropped)
      .Json("admission.pushes_dropped");
  out->Gauge("pepnet_admission_default_pulls",
             "Pulls answered with zeros for keys not yet admitted.", t.admission.pulls_default)
      .Json("admission.pulls_default");
  for (const auto& [q, score] : t.score_quantiles) {
    char label[16];
    snprintf(label, sizeof(label), "%g", q);
    out->Gauge("pepnet_table_feature_score", "Feature-score quantiles over a sample of rows.",
               score)
        .Label("q", label)
        .Json("score_quantiles[]")
        .Total(StatTotal::kNone);
  }
  out->Gauge("pepnet_table_worst_new_row_pause_seconds",
             "Longest a request spent making room for one new row, since start.",
             t.worst_eviction_pause_ns / 1e9)
      .Json("worst_eviction_pause_ns", 1e9)
      .Total(StatTotal::kMax);
  out->Gauge("pepnet_table_worst_pass_end_pause_seconds",
             "Longest a partition was locked by a pass end, since start.",
             t.worst_pass_end_pause_ns / 1e9)
      .Json("worst_pass_end_pause_ns", 1e9)
      .Total(StatTotal::kMax);
  out->Gauge("pepnet_table_worst_stats_pause_seconds",
             "Longest a stats read (a scrape, STATS) held one partition, since start.",
             t.worst_stats_pause_ns / 1e9)
      .Json("worst_stats_pause_ns", 1e9)
      .Total(StatTotal::kMax);
  out->Gauge("pepnet_table_pass", "The pass the table is in.", t.pass)
      .Json("pass")
      .Total(StatTotal::kMax);
  for (const SlotStatsSnapshot& s : t.slots) {
    const std::string slot = std::to_string(s.slot);
    out->Gauge("pepnet_table_slot_dim", "Embedding dim of the slot.", s.dim)
        .Label("slot", slot)
        .Json("dim")
        .Total(StatTotal::kMax);
    out->Gauge("pepnet_table_slot_rows", "Rows of the slot.", s.rows)
        .Label("slot", slot)
        .Json("rows");
    out->Gauge("pepnet_table_slot_bytes", "The slot's row chunks, indexes and shard objects.",
               s.bytes)
        .Label("slot", slot)
        .Json("bytes");
    for (int r = 0; r < kNumDeleteReasons; ++r) {
      const char* reason = DeleteReasonName(static_cast<DeleteReason>(r));
      out->Gauge("pepnet_table_slot_pass_deleted_rows",
                 "Rows deleted since the pass began, by reason.", s.deleted_pass[r])
          .Label("slot", slot)
          .Label("reason", reason)
          .Json(std::string("deleted_pass.") + reason);
      out->Gauge("pepnet_table_slot_deleted_rows",
                 "Rows of the slot deleted over the table's life, by reason.", s.deleted_total[r])
          .Label("slot", slot)
          .Label("reason", reason)
          .Json(std::string("deleted_total.") + reason);
    }
  }
}

void AddStorageStats(const proto::StorageStats& st, StatSet* out) {
  // The cluster is committed through the pass every shard holds.
  out->Gauge("pepnet_storage_committed_pass", "The last pass committed to disk.",
             st.committed_pass())
      .Json("storage.committed_pass")
      .Total(StatTotal::kMin);
  out->Gauge("pepnet_storage_prepared_pass", "A pass prepared but not yet committed (0: none).",
             st.prepared_pass())
      .Json("storage.prepared_pass")
      .Total(StatTotal::kMax);
  out->Gauge("pepnet_storage_disk_bytes", "Bytes of the database and prepared files.",
             st.bytes_on_disk())
      .Json("storage.bytes_on_disk");
  out->Gauge("pepnet_storage_last_commit_rows", "Rows the last commit wrote, and deleted.",
             st.rows_written())
      .Label("op", "written")
      .Json("storage.rows_written");
  out->Gauge("pepnet_storage_last_commit_rows", "Rows the last commit wrote, and deleted.",
             st.rows_deleted())
      .Label("op", "deleted")
      .Json("storage.rows_deleted");
  out->Gauge("pepnet_storage_last_commit_file_bytes", "Bytes of the last commit's files.",
             st.commit_file_bytes())
      .Json("storage.commit_file_bytes");
  const char* kPhase = "Duration of the last commit's phases.";
  out->Gauge("pepnet_storage_last_commit_phase_seconds", kPhase, st.prepare_seconds())
      .Label("phase", "prepare")
      .Json("storage.prepare_seconds")
      .Total(StatTotal::kMax);
  out->Gauge("pepnet_storage_last_commit_phase_seconds", kPhase, st.commit_seconds())
      .Label("phase", "commit")
      .Json("storage.commit_seconds")
      .Total(StatTotal::kMax);
  out->Gauge("pepnet_storage_last_commit_timestamp_seconds",
             "When the last commit was prepared, in Unix seconds (0: never).",
             st.commit_unix_ms() / 1e3)
      .Json("storage.commit_unix_ms", 1e3)
      .Total(StatTotal::kMax);
  out->Gauge("pepnet_storage_load_seconds", "Duration of the last load of the table.",
             st.load_seconds())
      .Json("storage.load_seconds")
      .Total(StatTotal::kMax);
  out->Gauge("pepnet_storage_rows_loaded", "Rows the last load read.", st.rows_loaded())
      .Json("storage.rows_loaded");
}

}  // namespace pepnet
