#include "common/stats_format.h"

#include <algorithm>
#include <cstdio>
#include <map>

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

void Block(const std::string& title, const proto::ServerStats& s, std::string* out) {
  const proto::TableStats& t = s.table();
  *out += title + "\n";
  Line(out, "rows", U(t.rows()));
  for (const auto& slot : t.slots()) {
    char label[64];
    snprintf(label, sizeof(label), "  slot %u (dim %u)", slot.slot(), slot.dim());
    Line(out, label, U(slot.rows()));
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
  Line(out, "rows created", U(t.rows_created()));
  Line(out, "pulls", U(s.pull_requests()) + " requests, " + U(s.pull_rows()) + " rows");
  Line(out, "pushes", U(s.push_requests()) + " requests, " + U(s.push_rows()) + " rows");
  Line(out, "bad requests", U(s.bad_requests()));
  Line(out, "connections", U(s.connections()) + " accepted");
  char uptime[32];
  snprintf(uptime, sizeof(uptime), "%.1f s", s.uptime_s());
  Line(out, "uptime", uptime);
}

void JsonObject(const proto::ServerStats& s, std::string* out) {
  const proto::TableStats& t = s.table();
  char buf[1024];
  snprintf(
      buf, sizeof(buf),
      "{\"shard_id\":%u,\"num_shards\":%u,\"rows\":%llu,\"bytes_used\":%llu,\"payload_bytes\":%llu,"
      "\"optimizer_bytes\":%llu,\"metadata_bytes\":%llu,\"index_bytes\":%llu,"
      "\"slack_bytes\":%llu,\"rows_created\":%llu,\"pull_requests\":%llu,"
      "\"pull_rows\":%llu,\"push_requests\":%llu,\"push_rows\":%llu,"
      "\"bad_requests\":%llu,\"connections_accepted\":%llu,\"uptime_s\":%.3f,\"slots\":[",
      s.shard_id(), s.num_shards(), (unsigned long long)t.rows(),
      (unsigned long long)t.bytes_used(), (unsigned long long)t.payload_bytes(),
      (unsigned long long)t.optimizer_bytes(), (unsigned long long)t.metadata_bytes(),
      (unsigned long long)t.index_bytes(), (unsigned long long)t.slack_bytes(),
      (unsigned long long)t.rows_created(), (unsigned long long)s.pull_requests(),
      (unsigned long long)s.pull_rows(), (unsigned long long)s.push_requests(),
      (unsigned long long)s.push_rows(), (unsigned long long)s.bad_requests(),
      (unsigned long long)s.connections(), s.uptime_s());
  *out += buf;
  for (int i = 0; i < t.slots_size(); ++i) {
    const auto& slot = t.slots(i);
    snprintf(buf, sizeof(buf), "%s{\"slot\":%u,\"dim\":%u,\"rows\":%llu}", i ? "," : "",
             slot.slot(), slot.dim(), (unsigned long long)slot.rows());
    *out += buf;
  }
  *out += "]}";
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
    for (const auto& slot : st.slots()) {
      proto::SlotStats& sum = slots[slot.slot()];
      sum.set_slot(slot.slot());
      sum.set_dim(slot.dim());
      sum.set_rows(sum.rows() + slot.rows());
    }
    total.set_pull_requests(total.pull_requests() + s.pull_requests());
    total.set_pull_rows(total.pull_rows() + s.pull_rows());
    total.set_push_requests(total.push_requests() + s.push_requests());
    total.set_push_rows(total.push_rows() + s.push_rows());
    total.set_bad_requests(total.bad_requests() + s.bad_requests());
    total.set_connections(total.connections() + s.connections());
    total.set_uptime_s(std::max(total.uptime_s(), s.uptime_s()));
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
