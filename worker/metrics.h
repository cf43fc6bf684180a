// Evaluation metrics of a pass: AUC, GAUC grouped by user, logloss and positive rate, per
// task and per (task, domain). Fed with progressive-validation predictions (each batch
// scored before it is trained on). Predictions from several workers are merged by
// concatenation, so the AUC is over the union, not an average of AUCs.
//
// Not thread-safe.
#ifndef PEPNET_WORKER_METRICS_H_
#define PEPNET_WORKER_METRICS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace pepnet {

struct Prediction {
  float score;  // predicted probability
  float label;  // 0 or 1
  uint64_t user;
};

// AUC with tied scores counted as half; NaN when only one class is present.
double Auc(std::vector<Prediction> predictions);

// Mean of per-user AUCs weighted by the user's sample count, over users having both
// classes; NaN when no user has.
double Gauc(const std::vector<Prediction>& predictions);

struct MetricSummary {
  uint64_t samples = 0;
  double auc = 0, gauc = 0, logloss = 0, positive_rate = 0, mean_score = 0;
};

MetricSummary Summarize(const std::vector<Prediction>& predictions);
// The prediction's log loss, its score clamped to [1e-7, 1 - 1e-7].
double LogLoss(const Prediction& p);

class PassMetrics {
 public:
  PassMetrics(std::vector<std::string> task_names, uint32_t num_domains);

  void Add(int task, uint32_t domain, const Prediction& p);
  // Appends another worker's predictions.
  void Merge(const PassMetrics& other);
  // The predictions as bytes (to send them to the coordinator), and their merge back;
  // Corruption when the bytes do not fit this metrics' tasks and domains.
  std::string Serialize() const;
  Status MergeSerialized(const char* data, size_t size);
  void Clear();

  MetricSummary Task(int task) const;
  uint32_t num_domains() const { return num_domains_; }
  const std::vector<Prediction>& Predictions(int task, uint32_t domain) const {
    return by_task_domain_[task][domain];
  }
  // The mean log loss over every task's predictions added so far (this process's, not
  // merged ones): the running loss a progress line shows. 0 before the first.
  double running_loss() const { return loss_count_ ? loss_sum_ / loss_count_ : 0; }
  double loss_sum() const { return loss_sum_; }
  uint64_t loss_count() const { return loss_count_; }
  MetricSummary TaskDomain(int task, uint32_t domain) const;

  // One line of JSON: {"pass": P, "tasks": {"name": {...,"domains": [...]}}}.
  std::string ToJson(int64_t pass) const;
  // A short table for people.
  std::string ToText(int64_t pass) const;

 private:
  std::vector<std::string> task_names_;
  uint32_t num_domains_;
  std::vector<std::vector<std::vector<Prediction>>> by_task_domain_;  // [task][domain]
  double loss_sum_ = 0;
  uint64_t loss_count_ = 0;
};

}  // namespace pepnet

#endif  // PEPNET_WORKER_METRICS_H_
