#include "worker/sample_encoder.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "proto/model_config.pb.h"
#include "worker/feature_hash.h"
#include "worker/model_config.h"

namespace pepnet {

bool ParseCellNumber(std::string_view cell, double* out) {
  if (cell.empty() || cell.size() > 63) return false;
  char buf[64];
  std::memcpy(buf, cell.data(), cell.size());
  buf[cell.size()] = '\0';
  char* end;
  errno = 0;
  *out = std::strtod(buf, &end);
  return end == buf + cell.size() && errno == 0 && std::isfinite(*out);
}

SampleCells::SampleCells(const proto::ModelConfig& config)
    : slot(config.slot_size()), task(config.task_size()) {}

SampleEncoder::SampleEncoder(const proto::ModelConfig* config) : config_(config) {
  for (int s = 0; s < config->slot_size(); ++s) slot_column_.push_back(SlotColumn(*config, s));
  for (int t = 0; t < config->task_size(); ++t) task_column_.push_back(TaskColumn(*config, t));
  const proto::DataFormat& d = config->data();
  for (int i = 0; i < d.domain_value_size(); ++i) domain_index_[d.domain_value(i)] = i;
}

Status SampleEncoder::Append(const SampleCells& cells, Batch* batch) {
  const proto::DataFormat& d = config_->data();
  // Everything is checked before anything is appended, so a bad sample leaves no trace.
  const int num_tasks = config_->task_size();
  float labels[64];
  uint8_t mask[64];
  if (num_tasks > 64) return Status::InvalidArgument("more than 64 tasks");
  for (int t = 0; t < num_tasks; ++t) {
    const std::string_view cell = cells.task[t];
    mask[t] = !cell.empty();
    labels[t] = 0;
    double v;
    if (mask[t]) {
      if (!ParseCellNumber(cell, &v)) {
        return Status::InvalidArgument("label of task '" + config_->task(t).name() + "' (column '" +
                                       task_column_[t] + "') is '" + std::string(cell) +
                                       "', not a number");
      }
      labels[t] = v > 0 ? 1.0f : 0.0f;
    }
  }
  const std::string domain_text(cells.domain);
  uint32_t domain;
  if (!domain_index_.empty()) {
    auto it = domain_index_.find(domain_text);
    if (it == domain_index_.end()) {
      return Status::InvalidArgument("domain '" + domain_text + "' (column '" + d.domain_column() +
                                     "') is not in data.domain_value");
    }
    domain = it->second;
  } else {
    double v;
    if (!ParseCellNumber(domain_text, &v) || v != std::floor(v) || v < 0 ||
        v >= config_->num_domains()) {
      return Status::InvalidArgument("domain '" + domain_text + "' (column '" + d.domain_column() +
                                     "') is not an integer in [0, " +
                                     std::to_string(config_->num_domains()) + ")");
    }
    domain = static_cast<uint32_t>(v);
  }
  // Bucketed values are checked before keys are appended, for the same reason.
  const uint32_t slot_bits = config_->slot_bits();
  const char sep = d.multi_value_separator()[0];
  for (int s = 0; s < config_->slot_size(); ++s) {
    const proto::SlotSpec& spec = config_->slot(s);
    const std::string_view cell = cells.slot[s];
    if (spec.multi_valued() && !spec.has_bucketing()) {
      // Each value may become a row on the shards: a cell is capped like a line is.
      uint64_t values = 0;
      for (size_t p = 0; p <= cell.size();) {
        const size_t hit = cell.find(sep, p);
        const size_t q = hit == std::string_view::npos ? cell.size() : hit;
        values += q > p;
        p = q + 1;
      }
      if (values > d.max_values_per_cell()) {
        return Status::InvalidArgument(
            "slot '" + spec.name() + "' (column '" + slot_column_[s] + "') has " +
            std::to_string(values) +
            " values, over data.max_values_per_cell=" + std::to_string(d.max_values_per_cell()));
      }
    }
    if (!spec.has_bucketing()) continue;
    double v;
    if (!cell.empty() && !ParseCellNumber(cell, &v)) {
      return Status::InvalidArgument("slot '" + spec.name() + "' (column '" + slot_column_[s] +
                                     "') value '" + std::string(cell) + "' is not a number");
    }
  }
  for (int s = 0; s < config_->slot_size(); ++s) {
    const proto::SlotSpec& spec = config_->slot(s);
    const std::string_view cell = cells.slot[s];
    std::vector<uint64_t>& keys = batch->slot_keys[s];
    if (cell.empty()) {
      // A missing value: no key for this slot.
    } else if (spec.has_bucketing()) {
      double v = 0;  // checked above
      ParseCellNumber(cell, &v);
      const proto::Bucketing& b = spec.bucketing();
      int64_t bucket;
      if (b.has_log_base()) {
        // The small nudge keeps exact powers (999 -> log10(1000) = 3) in their own bucket
        // despite rounding in the division.
        bucket =
            v < 0 ? -1
                  : static_cast<int64_t>(std::floor(std::log1p(v) / std::log(b.log_base()) + 1e-9));
      } else {
        bucket =
            std::upper_bound(b.boundary().begin(), b.boundary().end(), v) - b.boundary().begin();
      }
      scratch_ = "bucket:" + std::to_string(bucket);
      keys.push_back(FeatureKeyOf(spec.id(), scratch_.data(), scratch_.size(), slot_bits));
    } else if (spec.multi_valued()) {
      size_t p = 0;
      while (p <= cell.size()) {
        const size_t hit = cell.find(sep, p);
        const size_t q = hit == std::string_view::npos ? cell.size() : hit;
        if (q > p) keys.push_back(FeatureKeyOf(spec.id(), cell.data() + p, q - p, slot_bits));
        p = q + 1;
      }
    } else {
      keys.push_back(FeatureKeyOf(spec.id(), cell.data(), cell.size(), slot_bits));
    }
    batch->slot_offsets[s].push_back(static_cast<uint32_t>(keys.size()));
  }
  batch->labels.insert(batch->labels.end(), labels, labels + num_tasks);
  batch->label_mask.insert(batch->label_mask.end(), mask, mask + num_tasks);
  batch->domain.push_back(domain);
  batch->user.push_back(cells.has_user ? HashBytes(cells.user.data(), cells.user.size()) : 0);
  ++batch->size;
  return Status::OK();
}

}  // namespace pepnet
