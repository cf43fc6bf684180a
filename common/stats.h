// The stats registry: every figure a process reports, named once, typed (counter, gauge,
// histogram), with help text and labels (slot, reason, task, domain, ...). One StatSet
// feeds all three outputs, so a new figure is added in one place:
//
//   - the shard's STATS reply (proto::ServerStats carries the set),
//   - `pepnet_ctl stats`, its table and its `--json` (the `json` key of a stat; a stat
//     labelled `slot` goes into the "slots" array),
//   - the admin port's /metrics, in Prometheus text format 0.0.4.
//
// Names follow Prometheus's naming guide: `pepnet_*`, base units as suffixes (`_bytes`,
// `_seconds`), `_total` for counters. A StatSet is a value: build it, then read it; it is
// not thread-safe.
#ifndef PEPNET_COMMON_STATS_H_
#define PEPNET_COMMON_STATS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pepnet {
namespace proto {
class ServerStats;
}

class LatencyHistogram;

enum class StatType { kCounter, kGauge, kHistogram };

// How the sum over shards (pepnet_ctl's TOTAL) combines a stat.
enum class StatTotal { kSum, kMax, kMin, kNone };

using StatLabels = std::vector<std::pair<std::string, std::string>>;

struct Stat {
  std::string name;
  std::string help;
  StatType type = StatType::kGauge;
  StatLabels labels;
  double value = 0;  // counter or gauge
  // Histogram: per upper bound the count of observations in (previous bound, bound]; the
  // last count is for +Inf (counts.size() == bounds.size() + 1).
  std::vector<double> bounds;
  std::vector<uint64_t> counts;
  double sum = 0;
  // Key in `pepnet_ctl stats --json` ("a.b": nested object; empty: only in /metrics) and
  // the factor from the stat's unit to the key's (1e9 for a key in nanoseconds).
  std::string json;
  double json_scale = 1;
  StatTotal total = StatTotal::kSum;

  // Fluent setters, so that a figure is declared in one statement.
  Stat& Label(std::string label, std::string value) {
    labels.emplace_back(std::move(label), std::move(value));
    return *this;
  }
  Stat& Json(std::string key, double scale = 1) {
    json = std::move(key);
    json_scale = scale;
    return *this;
  }
  Stat& Total(StatTotal how) {
    total = how;
    return *this;
  }
  // Value of label `label`, or "" when the stat has none.
  const std::string& LabelValue(const std::string& label) const;
  uint64_t Count() const;  // a histogram's observations
};

class StatSet {
 public:
  Stat& Counter(std::string name, std::string help, double value);
  Stat& Gauge(std::string name, std::string help, double value);
  Stat& Histogram(std::string name, std::string help, const LatencyHistogram& h);

  const std::vector<Stat>& stats() const { return stats_; }
  std::vector<Stat>* mutable_stats() { return &stats_; }
  bool empty() const { return stats_.empty(); }

  // The stat of that name whose labels include every given label; nullptr if none.
  const Stat* Find(const std::string& name, const StatLabels& labels = {}) const;
  // Its value, 0 when absent.
  double Value(const std::string& name, const StatLabels& labels = {}) const;

 private:
  Stat& Add(std::string name, std::string help, StatType type, double value);
  std::vector<Stat> stats_;
};

// The set of a STATS reply, and back.
void StatsToProto(const StatSet& set, proto::ServerStats* out);
StatSet StatsFromProto(const proto::ServerStats& stats);
// Shorthand for tests and tools: the value of a stat of a STATS reply (0 when absent).
double StatValue(const proto::ServerStats& stats, const std::string& name,
                 const StatLabels& labels = {});

// The sum over several processes' sets, stat by stat as each one's `total` says; a stat
// of kNone is left out. Order: first appearance.
StatSet TotalStats(const std::vector<StatSet>& sets);
// The same over STATS replies: the cluster's figures.
StatSet ShardTotal(const std::vector<proto::ServerStats>& replies);

}  // namespace pepnet

#endif  // PEPNET_COMMON_STATS_H_
