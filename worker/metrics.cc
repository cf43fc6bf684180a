#include "worker/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "common/json_text.h"

namespace pepnet {

double Auc(std::vector<Prediction> p) {
  // A NaN score has no rank (and would break the sort's ordering): the AUC is undefined.
  for (const Prediction& x : p) {
    if (std::isnan(x.score)) return std::numeric_limits<double>::quiet_NaN();
  }
  std::sort(p.begin(), p.end(),
            [](const Prediction& a, const Prediction& b) { return a.score < b.score; });
  double positives = 0, negatives = 0, rank_sum = 0;
  for (size_t i = 0; i < p.size();) {
    size_t j = i + 1;  // a group holds at least its first score, so the loop advances
    while (j < p.size() && p[j].score == p[i].score) ++j;
    const double mid_rank = (i + 1 + j) / 2.0;  // average 1-based rank of the tie group
    for (size_t k = i; k < j; ++k) {
      if (p[k].label > 0) {
        positives += 1;
        rank_sum += mid_rank;
      } else {
        negatives += 1;
      }
    }
    i = j;
  }
  if (positives == 0 || negatives == 0) return std::numeric_limits<double>::quiet_NaN();
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

double Gauc(const std::vector<Prediction>& p) {
  std::unordered_map<uint64_t, std::vector<Prediction>> by_user;
  for (const Prediction& x : p) by_user[x.user].push_back(x);
  double weighted = 0, weight = 0;
  for (auto& [user, preds] : by_user) {
    const double auc = Auc(preds);
    if (std::isnan(auc)) continue;
    weighted += auc * preds.size();
    weight += preds.size();
  }
  return weight > 0 ? weighted / weight : std::numeric_limits<double>::quiet_NaN();
}

double LogLoss(const Prediction& x) {
  const double q = std::min(std::max(double(x.score), 1e-7), 1 - 1e-7);
  return x.label > 0 ? -std::log(q) : -std::log(1 - q);
}

MetricSummary Summarize(const std::vector<Prediction>& p) {
  MetricSummary s;
  s.samples = p.size();
  if (p.empty()) {
    s.auc = s.gauc = s.logloss = s.positive_rate = s.mean_score =
        std::numeric_limits<double>::quiet_NaN();
    return s;
  }
  double loss = 0, positives = 0, scores = 0;
  for (const Prediction& x : p) {
    loss += LogLoss(x);
    positives += x.label > 0;
    scores += x.score;
  }
  s.logloss = loss / p.size();
  s.positive_rate = positives / p.size();
  s.mean_score = scores / p.size();
  s.auc = Auc(p);
  s.gauc = Gauc(p);
  return s;
}

PassMetrics::PassMetrics(std::vector<std::string> task_names, uint32_t num_domains)
    : task_names_(std::move(task_names)), num_domains_(num_domains) {
  Clear();
}

void PassMetrics::Clear() {
  by_task_domain_.assign(task_names_.size(), std::vector<std::vector<Prediction>>(num_domains_));
  loss_sum_ = 0;
  loss_count_ = 0;
}

void PassMetrics::Add(int task, uint32_t domain, const Prediction& p) {
  by_task_domain_[task][domain].push_back(p);
  loss_sum_ += LogLoss(p);
  ++loss_count_;
}

void PassMetrics::Merge(const PassMetrics& other) {
  for (size_t t = 0; t < by_task_domain_.size(); ++t) {
    for (uint32_t d = 0; d < num_domains_; ++d) {
      const auto& src = other.by_task_domain_[t][d];
      by_task_domain_[t][d].insert(by_task_domain_[t][d].end(), src.begin(), src.end());
    }
  }
}

// Layout: per (task, domain) in order, uint64 count then count packed Predictions.
std::string PassMetrics::Serialize() const {
  std::string out;
  for (const auto& task : by_task_domain_) {
    for (const auto& preds : task) {
      const uint64_t n = preds.size();
      out.append(reinterpret_cast<const char*>(&n), 8);
      out.append(reinterpret_cast<const char*>(preds.data()), n * sizeof(Prediction));
    }
  }
  return out;
}

Status PassMetrics::MergeSerialized(const char* data, size_t size) {
  size_t at = 0;
  for (auto& task : by_task_domain_) {
    for (auto& preds : task) {
      uint64_t n;
      if (size - at < 8) return Status::Corruption("predictions: truncated count");
      std::memcpy(&n, data + at, 8);
      at += 8;
      if ((size - at) / sizeof(Prediction) < n) return Status::Corruption("predictions: truncated");
      if (n == 0) continue;  // an empty group: memcpy may not take a null vector's data()
      const size_t old = preds.size();
      preds.resize(old + n);
      std::memcpy(static_cast<void*>(preds.data() + old), data + at, n * sizeof(Prediction));
      at += n * sizeof(Prediction);
    }
  }
  if (at != size)
    return Status::Corruption("predictions: " + std::to_string(size - at) + " bytes left over");
  return Status::OK();
}

MetricSummary PassMetrics::Task(int task) const {
  std::vector<Prediction> all;
  for (const auto& d : by_task_domain_[task]) all.insert(all.end(), d.begin(), d.end());
  return Summarize(all);
}

MetricSummary PassMetrics::TaskDomain(int task, uint32_t domain) const {
  return Summarize(by_task_domain_[task][domain]);
}

namespace {

std::string SummaryJson(const MetricSummary& s) {
  return "\"samples\":" + std::to_string(s.samples) + ",\"auc\":" + JsonNumber(s.auc) +
         ",\"gauc\":" + JsonNumber(s.gauc) + ",\"logloss\":" + JsonNumber(s.logloss) +
         ",\"positive_rate\":" + JsonNumber(s.positive_rate) +
         ",\"mean_score\":" + JsonNumber(s.mean_score);
}

}  // namespace

std::string PassMetrics::ToJson(int64_t pass) const {
  std::string out = "{\"pass\":" + std::to_string(pass) + ",\"tasks\":{";
  for (size_t t = 0; t < task_names_.size(); ++t) {
    if (t) out += ",";
    out += JsonString(task_names_[t]) + ":{" + SummaryJson(Task(t)) + ",\"domains\":[";
    for (uint32_t d = 0; d < num_domains_; ++d) {
      if (d) out += ",";
      out += "{\"domain\":" + std::to_string(d) + "," + SummaryJson(TaskDomain(t, d)) + "}";
    }
    out += "]}";
  }
  return out + "}}";
}

std::string PassMetrics::ToText(int64_t pass) const {
  std::string out;
  char buf[200];
  for (size_t t = 0; t < task_names_.size(); ++t) {
    const MetricSummary s = Task(t);
    snprintf(buf, sizeof(buf),
             "pass %lld task %-12s samples %-9llu auc %.4f gauc %.4f logloss %.4f pos %.4f\n",
             static_cast<long long>(pass), task_names_[t].c_str(),
             static_cast<unsigned long long>(s.samples), s.auc, s.gauc, s.logloss, s.positive_rate);
    out += buf;
  }
  return out;
}

}  // namespace pepnet
