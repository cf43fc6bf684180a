#include "serve/scorer.h"

#include <cmath>

#include "common/key_dedup.h"
#include "proto/model_config.pb.h"
#include "serve/live_model.h"
#include "serve/serving_table.h"
#include "worker/data_reader.h"
#include "worker/pepnet_model.h"
#include "worker/trainer.h"

namespace pepnet {

struct Scorer::Workspace {
  explicit Workspace(const proto::ModelConfig& config) : net(ShapeOf(config)) {}
  PepNet<float> net;
  KeyDeduper dedup;
  // As in Trainer::PullBatch: every key occurrence slot by slot, the distinct keys, each
  // occurrence's distinct index, and where each distinct key's row starts in values.
  std::vector<uint64_t> keys, unique;
  std::vector<uint32_t> position;
  std::vector<size_t> slot_key_base, value_offset;
  std::vector<float> values;
  std::vector<Matrix<float>> slot_emb;
  Matrix<float> no_labels, no_mask;
};

Scorer::Scorer(const proto::ModelConfig* config) : config_(config) {}
Scorer::~Scorer() = default;

std::unique_ptr<Scorer::Workspace> Scorer::Take() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_.empty()) {
      std::unique_ptr<Workspace> w = std::move(free_.back());
      free_.pop_back();
      return w;
    }
  }
  return std::make_unique<Workspace>(*config_);
}

void Scorer::Give(std::unique_ptr<Workspace> w) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(std::move(w));
}

Status Scorer::Score(const LiveModel& model, const Batch& batch, std::vector<float>* scores,
                     std::shared_ptr<const ServedVersion>* version) {
  std::unique_ptr<Workspace> w = Take();
  const int num_slots = config_->slot_size();
  const int num_tasks = config_->task_size();
  w->keys.clear();
  w->slot_key_base.resize(num_slots + 1);
  for (int s = 0; s < num_slots; ++s) {
    w->slot_key_base[s] = w->keys.size();
    w->keys.insert(w->keys.end(), batch.slot_keys[s].begin(), batch.slot_keys[s].end());
  }
  w->slot_key_base[num_slots] = w->keys.size();
  w->dedup.Dedup(w->keys.data(), w->keys.size(), &w->unique, &w->position);
  w->value_offset.resize(w->unique.size() + 1);
  size_t next = 0, offset = 0;
  for (int s = 0; s < num_slots; ++s) {
    for (size_t i = w->slot_key_base[s]; i < w->slot_key_base[s + 1]; ++i) {
      if (w->position[i] != next) continue;
      w->value_offset[next++] = offset;
      offset += config_->slot(s).dim();
    }
  }
  w->value_offset[next] = offset;
  w->values.resize(offset);

  std::shared_ptr<const PepNetParams<float>> dense;
  const bool live = model.Read(
      [&](const ServingTable& table) {
        for (size_t j = 0; j < w->unique.size(); ++j) {
          table.Read(w->unique[j], w->values.data() + w->value_offset[j]);
        }
      },
      &dense, version);
  if (!live) {
    Give(std::move(w));
    return Status::Unavailable("no model version is loaded yet");
  }

  const int rows = static_cast<int>(batch.size);
  w->slot_emb.resize(num_slots);
  for (int s = 0; s < num_slots; ++s) {
    PoolSlotRows(batch.slot_offsets[s], w->position.data() + w->slot_key_base[s],
                 w->value_offset.data(), w->values.data(), config_->slot(s).dim(),
                 config_->slot(s).pooling() == proto::MEAN, 0, rows, &w->slot_emb[s]);
  }
  w->no_labels.resize(0, num_tasks);
  w->no_mask.resize(0, num_tasks);
  w->net.Forward(*dense, w->slot_emb, w->no_labels, w->no_mask);
  const Matrix<float>& logits = w->net.logits();
  scores->resize(batch.size * num_tasks);
  for (int k = 0; k < logits.size(); ++k) {
    (*scores)[k] = 1.0f / (1.0f + std::exp(-logits.data()[k]));
  }
  Give(std::move(w));
  return Status::OK();
}

}  // namespace pepnet
