// ProcessStatus: what a long-running process tells its admin endpoints (common/admin.h)
// about itself: whether it is ready, why not, a few rows for /statusz (its pass) and its
// figures for /metrics.
// The process updates it at its milestones; the admin thread reads it. Thread-safe.
#ifndef PEPNET_COMMON_PROCESS_STATUS_H_
#define PEPNET_COMMON_PROCESS_STATUS_H_

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/stats.h"
#include "common/status.h"

namespace pepnet {

class ProcessStatus {
 public:
  void SetReady() {
    std::lock_guard<std::mutex> lock(mu_);
    why_not_.clear();
  }
  void SetNotReady(std::string why) {
    std::lock_guard<std::mutex> lock(mu_);
    why_not_ = std::move(why);
  }
  // OK when ready; Unavailable saying why not.
  Status Ready() const {
    std::lock_guard<std::mutex> lock(mu_);
    return why_not_.empty() ? Status::OK() : Status::Unavailable(why_not_);
  }
  // Sets (or adds) the /statusz row `key`.
  void Set(const std::string& key, std::string value) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& row : rows_) {
      if (row.first == key) {
        row.second = std::move(value);
        return;
      }
    }
    rows_.emplace_back(key, std::move(value));
  }
  std::vector<std::pair<std::string, std::string>> Rows() const {
    std::lock_guard<std::mutex> lock(mu_);
    return rows_;
  }
  // The figures /metrics serves besides the admin endpoints' own: replaced whole at
  // each milestone (a pass's end, a progress report).
  void SetStats(StatSet stats) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_ = std::move(stats);
  }
  StatSet Stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  mutable std::mutex mu_;
  std::string why_not_ = "starting";
  std::vector<std::pair<std::string, std::string>> rows_;
  StatSet stats_;
};

}  // namespace pepnet

#endif  // PEPNET_COMMON_PROCESS_STATUS_H_
