// What the end of a pass reports besides its summary line: its line of --metrics_out
// (docs/operations.md, "Run report") and the coordinator's figures for /metrics.
#ifndef PEPNET_COORD_PASS_REPORT_H_
#define PEPNET_COORD_PASS_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

namespace pepnet {

class BinnedAuc;
class PassMetrics;
class StatSet;

// One JSON object on one line: the pass's metrics (PassMetrics::ToJson) with more keys
// appended, in order.
class PassLine {
 public:
  explicit PassLine(std::string metrics_json) : text_(std::move(metrics_json)) {}
  void Add(const std::string& key, const std::string& json_value);
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

int64_t UnixMillis();

// {"shards":N,"rows":..,"bytes_used":..,"memory_limit_bytes":..,"max_bytes_used":..,
//  "deleted":{"score":..,...}}: the cluster's table after the pass end, from the total
// of the shards' stats registries; "deleted" counts the pass's deletions by reason.
std::string TableJson(const StatSet& total, size_t shards);

// {"task":{"auc":..,"error_bound":..,"samples":..},...}
std::string RunAucJson(const std::vector<std::string>& tasks, const std::vector<BinnedAuc>& auc);

// The line printed at the end of a run: "run AUC over N passes: like 0.7123 (+-0.0004 from
// binning), ...".
std::string RunAucText(const std::vector<std::string>& tasks, const std::vector<BinnedAuc>& auc,
                       uint32_t passes);

struct PassFigures {
  uint32_t pass = 0;
  uint64_t samples = 0;
  double seconds = 0;
  double commit_seconds = -1;   // < 0: not durable
  double publish_seconds = -1;  // < 0: nothing published
  uint64_t version = 0;
  uint64_t samples_total = 0;  // since the coordinator started
};

// The coordinator's /metrics after a pass: the pass, samples and samples/s, per task and
// per (task, domain) AUC and logloss of the pass, the run AUC, commit and publish times.
void AddPassFigures(const PassFigures& f, const PassMetrics& metrics,
                    const std::vector<std::string>& tasks, const std::vector<BinnedAuc>& run_auc,
                    StatSet* out);

}  // namespace pepnet

#endif  // PEPNET_COORD_PASS_REPORT_H_
