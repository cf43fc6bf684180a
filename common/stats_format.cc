#include "common/stats_format.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

#include "common/delete_reason.h"
#include "proto/ps.pb.h"

namespace pepnet {
namespace {

std::string HumanBytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) {
    snprintf(buf, sizeof(buf), "%.2f GiB", b / double(1ull << 30));
  } else if (b >= (1ull << 20)) {
    snprintf(buf, sizeof(buf), "%.2f MiB", b / double(1ull << 20));
  } else if (b >= 1024) {
    snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  } else {
    snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(b));
  }
  return buf;
}

void Line(std::string* out, const char* label, const std::string& value) {
  char buf[256];
  snprintf(buf, sizeof(buf), "  %-18s %s\n", label, value.c_str());
  *out += buf;
}

std::string U(uint64_t v) { return std::to_string(v); }

const char* ReasonName(int k) { return DeleteReasonName(static_cast<DeleteReason>(k)); }

uint64_t Reason(const proto::DeletionCounts& c, int k) {
  return k < c.by_reason_size() ? c.by_reason(k) : 0;
}

uint64_t SumReasons(const proto::DeletionCounts& c) {
  uint64_t sum = 0;
  for (uint64_t v : c.by_reason()) sum += v;
  return sum;
}

// "3 (memory 2, ttl 1)" or "0".
std::string Deletions(const proto::DeletionCounts& c) {
  std::string out = std::to_string(SumReasons(c));
  std::string parts;
  for (int k = 0; k < kNumDeleteReasons; ++k) {
    if (Reason(c, k) == 0) continue;
    parts += std::string(parts.empty() ? "" : ", ") + ReasonName(k) + " " + U(Reason(c, k));
  }
  return parts.empty() ? out : out + " (" + parts + ")";
}

std::string Millis(uint64_t ns) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.3f ms", ns / 1e6);
  return buf;
}

// "2026-12-01 11:30:43 UTC".
std::string TimeOf(int64_t unix_ms) {
  const time_t seconds = static_cast<time_t>(unix_ms / 1000);
  struct tm t;
  gmtime_r(&seconds, &t);
  char buf[40];
  strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &t);
  return buf;
}

void Block(const std::string& title, const proto::ServerStats& s, std::string* out) {
  const proto::TableStats& t = s.table();
  *out += title + "\n";
  Line(out, "rows", U(t.rows()));
  for (const auto& slot : t.slots()) {
    char label[64];
    snprintf(label, sizeof(label), "  slot %u (dim %u)", slot.slot(), slot.dim());
    Line(out, label,
         U(slot.rows()) + " rows, " + HumanBytes(slot.bytes()) + "; deleted this pass " +
             Deletions(slot.deleted_pass()) + ", total " + Deletions(slot.deleted_total()));
  }
  const double per_row = t.rows() ? double(t.bytes_used()) / t.rows() : 0;
  char used[96];
  snprintf(used, sizeof(used), "%s (%llu B, %.1f B/row)", HumanBytes(t.bytes_used()).c_str(),
           static_cast<unsigned long long>(t.bytes_used()), per_row);
  Line(out, "bytes used", used);
  Line(out, "  payload", HumanBytes(t.payload_bytes()));
  Line(out, "  optimizer", HumanBytes(t.optimizer_bytes()));
  Line(out, "  metadata", HumanBytes(t.metadata_bytes()));
  Line(out, "  index", HumanBytes(t.index_bytes()));
  Line(out, "  slack", HumanBytes(t.slack_bytes()));
  Line(out, "max bytes used", HumanBytes(t.max_bytes_used()) + " (since start)");
  Line(out, "memory limit",
       t.memory_limit_bytes()
           ? HumanBytes(t.memory_limit_bytes()) + " (" + U(t.memory_limit_bytes()) + " B)"
           : std::string("none"));
  Line(out, "rows created", U(t.rows_created()));
  Line(out, "rows deleted",
       U(t.rows_deleted()) + " by policies, " + U(t.rows_erased()) + " erased; refused: " +
           U(t.cap_refused()) + " at a cap, " + U(t.memory_refused()) + " by memory");
  Line(out, "admission",
       U(t.admission().admitted()) + " admitted, " + U(t.admission().pushes_dropped()) +
           " pushes dropped, " + U(t.admission().pulls_default()) + " pulls answered with zeros");
  if (t.score_quantiles_size() > 0) {
    std::string q;
    for (const auto& sq : t.score_quantiles()) {
      char buf[48];
      snprintf(buf, sizeof(buf), "%sp%g %.4g", q.empty() ? "" : ", ", sq.q() * 100, sq.score());
      q += buf;
    }
    Line(out, "score quantiles", q);
  }
  Line(out, "worst pause",
       Millis(t.worst_eviction_pause_ns()) + " for a new row, " +
           Millis(t.worst_pass_end_pause_ns()) + " at a pass end");
  Line(out, "pass", U(t.pass()));
  Line(out, "pulls", U(s.pull_requests()) + " requests, " + U(s.pull_rows()) + " rows");
  Line(out, "pushes", U(s.push_requests()) + " requests, " + U(s.push_rows()) + " rows");
  Line(out, "bad requests", U(s.bad_requests()));
  Line(out, "connections", U(s.connections()) + " accepted");
  Line(out, "refused",
       U(s.auth_failures()) + " at the handshake, " + U(s.timeouts()) + " at a deadline, " +
           U(s.rejected_privileged()) + " privileged; pushes: " + U(s.rejected_nonfinite()) +
           " non-finite, " + U(s.rejected_out_of_range()) + " out of range, " +
           U(s.rejected_counts()) + " bad counts");
  char uptime[32];
  snprintf(uptime, sizeof(uptime), "%.1f s", s.uptime_s());
  Line(out, "uptime", uptime);
  if (!s.durable()) {
    Line(out, "storage", "none (memory only)");
    return;
  }
  const proto::StorageStats& st = s.storage();
  Line(out, "committed pass",
       U(st.committed_pass()) +
           (st.prepared_pass() ? "; pass " + U(st.prepared_pass()) + " prepared" : std::string()));
  Line(out, "bytes on disk", HumanBytes(st.bytes_on_disk()));
  char commit[160];
  snprintf(commit, sizeof(commit), "%llu rows written, %llu deleted, %s; %.3f s + %.3f s",
           static_cast<unsigned long long>(st.rows_written()),
           static_cast<unsigned long long>(st.rows_deleted()),
           HumanBytes(st.commit_file_bytes()).c_str(), st.prepare_seconds(), st.commit_seconds());
  Line(out, "last commit", commit);
  Line(out, "  at", st.commit_unix_ms() ? TimeOf(st.commit_unix_ms()) : std::string("never"));
  char load[96];
  snprintf(load, sizeof(load), "%llu rows in %.3f s",
           static_cast<unsigned long long>(st.rows_loaded()), st.load_seconds());
  Line(out, "load", load);
}

// Appends "key":value pairs to a JSON object under construction.
class JsonFields {
 public:
  explicit JsonFields(std::string* out) : out_(out) { *out_ += "{"; }
  void Num(const char* key, uint64_t v) { Raw(key, std::to_string(v)); }
  void Real(const char* key, double v) {
    char buf[40];
    snprintf(buf, sizeof(buf), "%.6g", v);
    Raw(key, buf);
  }
  void Raw(const char* key, const std::string& json) {
    *out_ += (first_ ? "\"" : ",\"") + std::string(key) + "\":" + json;
    first_ = false;
  }
  void Close() { *out_ += "}"; }

 private:
  std::string* out_;
  bool first_ = true;
};

std::string ReasonsJson(const proto::DeletionCounts& c) {
  std::string out;
  JsonFields f(&out);
  for (int k = 0; k < kNumDeleteReasons; ++k) f.Num(ReasonName(k), Reason(c, k));
  f.Close();
  return out;
}

void JsonObject(const proto::ServerStats& s, std::string* out) {
  const proto::TableStats& t = s.table();
  JsonFields f(out);
  f.Num("shard_id", s.shard_id());
  f.Num("num_shards", s.num_shards());
  f.Num("rows", t.rows());
  f.Num("memory_limit_bytes", t.memory_limit_bytes());
  f.Num("bytes_used", t.bytes_used());
  f.Num("max_bytes_used", t.max_bytes_used());
  f.Num("payload_bytes", t.payload_bytes());
  f.Num("optimizer_bytes", t.optimizer_bytes());
  f.Num("metadata_bytes", t.metadata_bytes());
  f.Num("index_bytes", t.index_bytes());
  f.Num("slack_bytes", t.slack_bytes());
  f.Num("rows_created", t.rows_created());
  f.Num("rows_deleted", t.rows_deleted());
  f.Num("rows_erased", t.rows_erased());
  f.Num("cap_refused", t.cap_refused());
  f.Num("memory_refused", t.memory_refused());
  std::string admission;
  JsonFields a(&admission);
  a.Num("admitted", t.admission().admitted());
  a.Num("pushes_dropped", t.admission().pushes_dropped());
  a.Num("pulls_default", t.admission().pulls_default());
  a.Close();
  f.Raw("admission", admission);
  std::string quantiles = "[";
  for (int i = 0; i < t.score_quantiles_size(); ++i) {
    char buf[64];
    snprintf(buf, sizeof(buf), "%s{\"q\":%g,\"score\":%.6g}", i ? "," : "",
             t.score_quantiles(i).q(), t.score_quantiles(i).score());
    quantiles += buf;
  }
  f.Raw("score_quantiles", quantiles + "]");
  f.Num("worst_eviction_pause_ns", t.worst_eviction_pause_ns());
  f.Num("worst_pass_end_pause_ns", t.worst_pass_end_pause_ns());
  f.Num("pass", t.pass());
  f.Num("pull_requests", s.pull_requests());
  f.Num("pull_rows", s.pull_rows());
  f.Num("push_requests", s.push_requests());
  f.Num("push_rows", s.push_rows());
  f.Num("bad_requests", s.bad_requests());
  f.Num("connections_accepted", s.connections());
  f.Num("auth_failures", s.auth_failures());
  f.Num("timeouts", s.timeouts());
  f.Num("rejected_privileged", s.rejected_privileged());
  f.Num("rejected_nonfinite", s.rejected_nonfinite());
  f.Num("rejected_out_of_range", s.rejected_out_of_range());
  f.Num("rejected_counts", s.rejected_counts());
  f.Real("uptime_s", s.uptime_s());
  std::string slots = "[";
  for (int i = 0; i < t.slots_size(); ++i) {
    const auto& slot = t.slots(i);
    if (i) slots += ",";
    JsonFields sf(&slots);
    sf.Num("slot", slot.slot());
    sf.Num("dim", slot.dim());
    sf.Num("rows", slot.rows());
    sf.Num("bytes", slot.bytes());
    sf.Raw("deleted_pass", ReasonsJson(slot.deleted_pass()));
    sf.Raw("deleted_total", ReasonsJson(slot.deleted_total()));
    sf.Close();
  }
  f.Raw("slots", slots + "]");
  if (s.durable()) {
    const proto::StorageStats& st = s.storage();
    std::string storage;
    JsonFields sf(&storage);
    sf.Num("committed_pass", st.committed_pass());
    sf.Num("prepared_pass", st.prepared_pass());
    sf.Num("bytes_on_disk", st.bytes_on_disk());
    sf.Num("rows_written", st.rows_written());
    sf.Num("rows_deleted", st.rows_deleted());
    sf.Num("commit_file_bytes", st.commit_file_bytes());
    sf.Real("prepare_seconds", st.prepare_seconds());
    sf.Real("commit_seconds", st.commit_seconds());
    sf.Num("commit_unix_ms", static_cast<uint64_t>(st.commit_unix_ms()));
    sf.Real("load_seconds", st.load_seconds());
    sf.Num("rows_loaded", st.rows_loaded());
    sf.Close();
    f.Raw("storage", storage);
  }
  f.Close();
}

void AddReasons(const proto::DeletionCounts& from, proto::DeletionCounts* to) {
  while (to->by_reason_size() < from.by_reason_size()) to->add_by_reason(0);
  for (int k = 0; k < from.by_reason_size(); ++k) {
    to->set_by_reason(k, to->by_reason(k) + from.by_reason(k));
  }
}

}  // namespace

proto::ServerStats TotalStats(const std::vector<proto::ServerStats>& shards) {
  proto::ServerStats total;
  if (shards.empty()) return total;
  total.set_shard_id(shards[0].shard_id());
  total.set_num_shards(shards[0].num_shards());
  std::map<uint32_t, proto::SlotStats> slots;
  proto::TableStats* t = total.mutable_table();
  for (const proto::ServerStats& s : shards) {
    const proto::TableStats& st = s.table();
    t->set_rows(t->rows() + st.rows());
    t->set_payload_bytes(t->payload_bytes() + st.payload_bytes());
    t->set_optimizer_bytes(t->optimizer_bytes() + st.optimizer_bytes());
    t->set_metadata_bytes(t->metadata_bytes() + st.metadata_bytes());
    t->set_index_bytes(t->index_bytes() + st.index_bytes());
    t->set_slack_bytes(t->slack_bytes() + st.slack_bytes());
    t->set_bytes_used(t->bytes_used() + st.bytes_used());
    t->set_rows_created(t->rows_created() + st.rows_created());
    t->set_memory_limit_bytes(t->memory_limit_bytes() + st.memory_limit_bytes());
    // The sum of the shards' high-water marks: an upper bound of the cluster's.
    t->set_max_bytes_used(t->max_bytes_used() + st.max_bytes_used());
    t->set_rows_deleted(t->rows_deleted() + st.rows_deleted());
    t->set_rows_erased(t->rows_erased() + st.rows_erased());
    t->set_cap_refused(t->cap_refused() + st.cap_refused());
    t->set_memory_refused(t->memory_refused() + st.memory_refused());
    proto::AdmissionCounters* a = t->mutable_admission();
    a->set_admitted(a->admitted() + st.admission().admitted());
    a->set_pushes_dropped(a->pushes_dropped() + st.admission().pushes_dropped());
    a->set_pulls_default(a->pulls_default() + st.admission().pulls_default());
    t->set_worst_eviction_pause_ns(
        std::max(t->worst_eviction_pause_ns(), st.worst_eviction_pause_ns()));
    t->set_worst_pass_end_pause_ns(
        std::max(t->worst_pass_end_pause_ns(), st.worst_pass_end_pause_ns()));
    t->set_pass(std::max(t->pass(), st.pass()));
    for (const auto& slot : st.slots()) {
      proto::SlotStats& sum = slots[slot.slot()];
      sum.set_slot(slot.slot());
      sum.set_dim(slot.dim());
      sum.set_rows(sum.rows() + slot.rows());
      sum.set_bytes(sum.bytes() + slot.bytes());
      AddReasons(slot.deleted_pass(), sum.mutable_deleted_pass());
      AddReasons(slot.deleted_total(), sum.mutable_deleted_total());
    }
    total.set_pull_requests(total.pull_requests() + s.pull_requests());
    total.set_pull_rows(total.pull_rows() + s.pull_rows());
    total.set_push_requests(total.push_requests() + s.push_requests());
    total.set_push_rows(total.push_rows() + s.push_rows());
    total.set_bad_requests(total.bad_requests() + s.bad_requests());
    total.set_connections(total.connections() + s.connections());
    total.set_auth_failures(total.auth_failures() + s.auth_failures());
    total.set_timeouts(total.timeouts() + s.timeouts());
    total.set_rejected_privileged(total.rejected_privileged() + s.rejected_privileged());
    total.set_rejected_nonfinite(total.rejected_nonfinite() + s.rejected_nonfinite());
    total.set_rejected_out_of_range(total.rejected_out_of_range() + s.rejected_out_of_range());
    total.set_rejected_counts(total.rejected_counts() + s.rejected_counts());
    total.set_uptime_s(std::max(total.uptime_s(), s.uptime_s()));
    if (s.durable()) {
      // The cluster is committed through the pass every shard holds.
      const proto::StorageStats& st = s.storage();
      proto::StorageStats* sum = total.mutable_storage();
      const bool first = !total.durable();
      total.set_durable(true);
      sum->set_committed_pass(first ? st.committed_pass()
                                    : std::min(sum->committed_pass(), st.committed_pass()));
      sum->set_prepared_pass(std::max(sum->prepared_pass(), st.prepared_pass()));
      sum->set_bytes_on_disk(sum->bytes_on_disk() + st.bytes_on_disk());
      sum->set_rows_written(sum->rows_written() + st.rows_written());
      sum->set_rows_deleted(sum->rows_deleted() + st.rows_deleted());
      sum->set_commit_file_bytes(sum->commit_file_bytes() + st.commit_file_bytes());
      sum->set_prepare_seconds(std::max(sum->prepare_seconds(), st.prepare_seconds()));
      sum->set_commit_seconds(std::max(sum->commit_seconds(), st.commit_seconds()));
      sum->set_commit_unix_ms(std::max(sum->commit_unix_ms(), st.commit_unix_ms()));
      sum->set_load_seconds(std::max(sum->load_seconds(), st.load_seconds()));
      sum->set_rows_loaded(sum->rows_loaded() + st.rows_loaded());
    }
  }
  for (auto& [id, slot] : slots) *t->add_slots() = slot;
  return total;
}

std::string FormatStatsTable(const std::vector<proto::ServerStats>& shards) {
  std::string out;
  for (const proto::ServerStats& s : shards) {
    Block("shard " + std::to_string(s.shard_id()) + " of " + std::to_string(s.num_shards()), s,
          &out);
  }
  Block("TOTAL (" + std::to_string(shards.size()) + " shards)", TotalStats(shards), &out);
  return out;
}

std::string FormatStatsJson(const std::vector<proto::ServerStats>& shards) {
  std::string out = "{\"shards\":[";
  for (size_t i = 0; i < shards.size(); ++i) {
    if (i) out += ",";
    JsonObject(shards[i], &out);
  }
  out += "],\"total\":";
  JsonObject(TotalStats(shards), &out);
  out += "}";
  return out;
}

}  // namespace pepnet
