#include "coord/pass_report.h"

#include <chrono>
#include <cmath>
#include <cstdio>

#include "common/delete_reason.h"
#include "common/json_text.h"
#include "common/stats.h"
#include "worker/binned_auc.h"
#include "worker/metrics.h"

namespace pepnet {

void PassLine::Add(const std::string& key, const std::string& json_value) {
  // The object's closing brace moves behind the new key.
  if (!text_.empty() && text_.back() == '}') text_.pop_back();
  text_ += (text_.size() > 1 ? ",\"" : "\"") + key + "\":" + json_value + "}";
}

int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string TableJson(const StatSet& total, size_t shards) {
  const auto u = [&total](const char* name) {
    return std::to_string(static_cast<uint64_t>(total.Value(name)));
  };
  std::string deleted;
  for (int r = 0; r < kNumDeleteReasons; ++r) {
    const char* reason = DeleteReasonName(static_cast<DeleteReason>(r));
    double n = 0;
    for (const Stat& s : total.stats()) {
      if (s.name == "pepnet_table_slot_pass_deleted_rows" && s.LabelValue("reason") == reason) {
        n += s.value;
      }
    }
    deleted += std::string(r ? "," : "") + "\"" + reason + "\":" + std::to_string(uint64_t(n));
  }
  return "{\"shards\":" + std::to_string(shards) + ",\"rows\":" + u("pepnet_table_rows") +
         ",\"bytes_used\":" + u("pepnet_table_used_bytes") +
         ",\"memory_limit_bytes\":" + u("pepnet_table_memory_limit_bytes") +
         ",\"max_bytes_used\":" + u("pepnet_table_max_used_bytes") + ",\"deleted\":{" + deleted +
         "}}";
}

std::string RunAucJson(const std::vector<std::string>& tasks, const std::vector<BinnedAuc>& auc) {
  std::string out = "{";
  for (size_t t = 0; t < tasks.size() && t < auc.size(); ++t) {
    out += std::string(t ? "," : "") + JsonString(tasks[t]) +
           ":{\"auc\":" + JsonNumber(auc[t].Auc()) +
           ",\"error_bound\":" + JsonNumber(auc[t].ErrorBound()) +
           ",\"samples\":" + std::to_string(auc[t].samples()) + "}";
  }
  return out + "}";
}

std::string RunAucText(const std::vector<std::string>& tasks, const std::vector<BinnedAuc>& auc,
                       uint32_t passes) {
  std::string out = "run AUC over " + std::to_string(passes) + " passes:";
  for (size_t t = 0; t < tasks.size() && t < auc.size(); ++t) {
    char buf[160];
    snprintf(buf, sizeof(buf), "%s %s %.4f (+-%.4f)", t ? "," : "", tasks[t].c_str(), auc[t].Auc(),
             auc[t].ErrorBound());
    out += buf;
  }
  return out;
}

void AddPassFigures(const PassFigures& f, const PassMetrics& metrics,
                    const std::vector<std::string>& tasks, const std::vector<BinnedAuc>& run_auc,
                    StatSet* out) {
  out->Gauge("pepnet_coord_pass", "The last pass committed (or ended, without storage).", f.pass);
  out->Gauge("pepnet_coord_pass_samples", "Samples the last pass trained.", f.samples);
  out->Counter("pepnet_coord_samples_total", "Samples trained since the coordinator started.",
               f.samples_total);
  out->Gauge("pepnet_coord_pass_duration_seconds", "How long the last pass trained.", f.seconds);
  out->Gauge("pepnet_coord_samples_per_second", "Samples per second of the last pass.",
             f.seconds > 0 ? f.samples / f.seconds : 0);
  for (size_t t = 0; t < tasks.size(); ++t) {
    const MetricSummary s = metrics.Task(static_cast<int>(t));
    out->Gauge("pepnet_coord_pass_auc", "AUC of the last pass, per task.", s.auc)
        .Label("task", tasks[t]);
    out->Gauge("pepnet_coord_pass_logloss", "Log loss of the last pass, per task.", s.logloss)
        .Label("task", tasks[t]);
    if (t < run_auc.size()) {
      out->Gauge("pepnet_coord_run_auc", "Binned AUC over every pass of the run, per task.",
                 run_auc[t].Auc())
          .Label("task", tasks[t]);
    }
  }
  for (size_t t = 0; t < tasks.size(); ++t) {
    for (uint32_t d = 0; d < metrics.num_domains(); ++d) {
      const MetricSummary s = metrics.TaskDomain(static_cast<int>(t), d);
      out->Gauge("pepnet_coord_pass_domain_auc", "AUC of the last pass, per task and domain.",
                 s.auc)
          .Label("task", tasks[t])
          .Label("domain", std::to_string(d));
      out->Gauge("pepnet_coord_pass_domain_logloss",
                 "Log loss of the last pass, per task and domain.", s.logloss)
          .Label("task", tasks[t])
          .Label("domain", std::to_string(d));
    }
  }
  if (f.commit_seconds >= 0) {
    out->Gauge("pepnet_coord_commit_seconds", "How long the last pass's commit took.",
               f.commit_seconds);
  }
  if (f.publish_seconds >= 0) {
    out->Gauge("pepnet_coord_publish_seconds", "How long the last pass's publish took.",
               f.publish_seconds);
    out->Gauge("pepnet_coord_published_version", "The newest model version published.", f.version);
  }
}

}  // namespace pepnet
