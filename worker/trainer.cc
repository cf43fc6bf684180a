#include "worker/trainer.h"

#include <cmath>

#include "common/ps_client.h"
#include "proto/model_config.pb.h"
#include "ps/embedding_table.h"

namespace pepnet {
namespace {

class LocalStore : public EmbeddingStore {
 public:
  explicit LocalStore(std::unique_ptr<EmbeddingTable> table) : table_(std::move(table)) {}
  Status Pull(const std::vector<uint64_t>& keys, std::vector<float>* values) override {
    uint64_t n;
    PEPNET_RETURN_IF_ERROR(table_->CountValues(keys.data(), keys.size(), &n));
    values->resize(n);
    return table_->Pull(keys.data(), keys.size(), values->data());
  }
  Status Push(const std::vector<uint64_t>& keys, const std::vector<float>& grads,
              const std::vector<float>& shows, const std::vector<float>& clicks) override {
    return table_->Push(keys.data(), keys.size(), grads.data(), shows.data(), clicks.data());
  }

 private:
  std::unique_ptr<EmbeddingTable> table_;
};

class RemoteStore : public EmbeddingStore {
 public:
  explicit RemoteStore(PsClient* client) : client_(client) {}
  Status Pull(const std::vector<uint64_t>& keys, std::vector<float>* values) override {
    return client_->Wait(client_->Pull(keys.data(), keys.size(), values));
  }
  Status Push(const std::vector<uint64_t>& keys, const std::vector<float>& grads,
              const std::vector<float>& shows, const std::vector<float>& clicks) override {
    return client_->Wait(
        client_->Push(keys.data(), keys.size(), grads.data(), shows.data(), clicks.data()));
  }

 private:
  PsClient* client_;
};

ModelShape::Role RoleOf(proto::SlotRole r) {
  switch (r) {
    case proto::DOMAIN:
      return ModelShape::kDomain;
    case proto::USER:
      return ModelShape::kUser;
    case proto::ITEM:
      return ModelShape::kItem;
    case proto::AUTHOR:
      return ModelShape::kAuthor;
    default:
      return ModelShape::kGeneral;
  }
}

}  // namespace

TableOptions TableOptionsFor(const proto::ModelConfig& config, uint64_t seed) {
  TableOptions o;
  o.slot_bits = config.slot_bits();
  o.seed = seed;
  for (const proto::SlotSpec& s : config.slot()) {
    SlotOptions so;
    so.id = s.id();
    so.dim = s.dim();
    so.name = s.name();
    so.adagrad.learning_rate =
        s.has_learning_rate() ? s.learning_rate() : config.embedding_learning_rate();
    so.adagrad.per_dim = s.has_accumulator() && s.accumulator() == proto::PER_DIM;
    o.slots.push_back(so);
  }
  return o;
}

Status MakeLocalStore(const proto::ModelConfig& config, uint64_t seed,
                      std::unique_ptr<EmbeddingStore>* store) {
  std::unique_ptr<EmbeddingTable> table;
  PEPNET_RETURN_IF_ERROR(EmbeddingTable::Create(TableOptionsFor(config, seed), &table));
  store->reset(new LocalStore(std::move(table)));
  return Status::OK();
}

std::unique_ptr<EmbeddingStore> MakeRemoteStore(PsClient* client) {
  return std::make_unique<RemoteStore>(client);
}

ModelShape ShapeOf(const proto::ModelConfig& config) {
  ModelShape shape;
  for (const proto::SlotSpec& s : config.slot()) {
    shape.slot_dims.push_back(static_cast<int>(s.dim()));
    shape.slot_roles.push_back(RoleOf(s.role()));
  }
  shape.num_tasks = config.task_size();
  shape.tower.assign(config.tower().begin(), config.tower().end());
  shape.gate_hidden = static_cast<int>(config.gate().hidden());
  shape.gamma = config.gate().gamma();
  shape.epnet_gate_sees_e = config.epnet_gate_sees_e();
  shape.ppnet_shared_gate_per_layer = config.ppnet_shared_gate_per_layer();
  shape.ppnet_gate_outputs = config.ppnet_gate_outputs();
  shape.disable_gates = config.disable_gates();
  return shape;
}

namespace {
AdamOptions AdamOf(const proto::ModelConfig& c) {
  AdamOptions a;
  a.learning_rate = c.adam().learning_rate();
  a.beta1 = c.adam().beta1();
  a.beta2 = c.adam().beta2();
  a.epsilon = c.adam().epsilon();
  return a;
}

PepNetParams<float> InitialParams(const PepNet<float>& net, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return net.InitParams(&rng);
}
}  // namespace

Trainer::Trainer(const proto::ModelConfig& config, EmbeddingStore* store, uint64_t seed)
    : config_(config),
      store_(store),
      net_(ShapeOf(config)),
      params_(InitialParams(net_, seed)),
      grads_(net_.ZeroParams()),
      adam_(AdamOf(config), params_) {
  for (const proto::SlotSpec& s : config.slot())
    mean_pooling_.push_back(s.pooling() == proto::MEAN);
}

Status Trainer::TrainBatch(const Batch& batch, PassMetrics* metrics) {
  const int batch_size = static_cast<int>(batch.size);
  if (batch_size == 0) return Status::OK();
  const int num_slots = config_.slot_size();
  const int num_tasks = config_.task_size();
  keys_.clear();
  for (int s = 0; s < num_slots; ++s) {
    keys_.insert(keys_.end(), batch.slot_keys[s].begin(), batch.slot_keys[s].end());
  }
  PEPNET_RETURN_IF_ERROR(store_->Pull(keys_, &values_));

  // Pool each slot's rows per sample.
  slot_emb_.resize(num_slots);
  size_t value_base = 0;
  for (int s = 0; s < num_slots; ++s) {
    const int dim = static_cast<int>(config_.slot(s).dim());
    const std::vector<uint32_t>& off = batch.slot_offsets[s];
    Matrix<float>& emb = slot_emb_[s];
    emb.setZero(batch_size, dim);
    for (int i = 0; i < batch_size; ++i) {
      for (uint32_t k = off[i]; k < off[i + 1]; ++k) {
        emb.row(i) +=
            Eigen::Map<const RowVector<float>>(values_.data() + value_base + size_t{k} * dim, dim);
      }
      if (mean_pooling_[s] && off[i + 1] > off[i] + 1) emb.row(i) /= float(off[i + 1] - off[i]);
    }
    value_base += batch.slot_keys[s].size() * dim;
  }

  labels_ = Eigen::Map<const Matrix<float>>(batch.labels.data(), batch_size, num_tasks);
  mask_.resize(batch_size, num_tasks);
  for (int i = 0; i < batch_size * num_tasks; ++i) mask_.data()[i] = batch.label_mask[i];
  net_.Forward(params_, slot_emb_, labels_, mask_);

  // Progressive validation: scored before the update below.
  const Matrix<float>& logits = net_.logits();
  for (int i = 0; i < batch_size; ++i) {
    for (int t = 0; t < num_tasks; ++t) {
      if (mask_(i, t) == 0) continue;
      const float score = 1.0f / (1.0f + std::exp(-logits(i, t)));
      metrics->Add(t, batch.domain[i], {score, labels_(i, t), batch.user[i]});
    }
  }

  net_.Backward(params_, &grads_, &slot_grads_);
  // Each key gets its sample's slot gradient (divided by the count under mean pooling),
  // one show, and a click if any of the sample's tasks is positive.
  key_grads_.resize(values_.size());
  shows_.assign(keys_.size(), 1.0f);
  clicks_.resize(keys_.size());
  value_base = 0;
  size_t key_base = 0;
  for (int s = 0; s < num_slots; ++s) {
    const int dim = static_cast<int>(config_.slot(s).dim());
    const std::vector<uint32_t>& off = batch.slot_offsets[s];
    for (int i = 0; i < batch_size; ++i) {
      const uint32_t count = off[i + 1] - off[i];
      const float scale = mean_pooling_[s] && count > 1 ? 1.0f / count : 1.0f;
      bool positive = false;
      for (int t = 0; t < num_tasks; ++t) positive |= mask_(i, t) != 0 && labels_(i, t) > 0;
      for (uint32_t k = off[i]; k < off[i + 1]; ++k) {
        Eigen::Map<RowVector<float>>(key_grads_.data() + value_base + size_t{k} * dim, dim) =
            slot_grads_[s].row(i) * scale;
        clicks_[key_base + k] = positive ? 1.0f : 0.0f;
      }
    }
    value_base += batch.slot_keys[s].size() * dim;
    key_base += batch.slot_keys[s].size();
  }
  PEPNET_RETURN_IF_ERROR(store_->Push(keys_, key_grads_, shows_, clicks_));
  adam_.Step(&params_, &grads_);
  return Status::OK();
}

}  // namespace pepnet
