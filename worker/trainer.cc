#include "worker/trainer.h"

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include <glog/logging.h>

#include "common/checksum.h"
#include "common/ps_client.h"
#include "proto/model_config.pb.h"
#include "ps/embedding_table.h"

namespace pepnet {

EmbeddingStore::~EmbeddingStore() = default;

EmbeddingStore::Ticket EmbeddingStore::Keep(Status outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  const Ticket t = next_ticket_++;
  outcomes_.emplace(t, std::move(outcome));
  return t;
}

EmbeddingStore::Ticket EmbeddingStore::StartPull(const uint64_t* keys, size_t n, float* values) {
  return Keep(Pull(keys, n, values));
}

EmbeddingStore::Ticket EmbeddingStore::StartPush(const uint64_t* keys, size_t n, const float* grads,
                                                 const float* shows, const float* clicks) {
  return Keep(Push(keys, n, grads, shows, clicks));
}

Status EmbeddingStore::Finish(Ticket ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = outcomes_.find(ticket);
  CHECK(it != outcomes_.end()) << "ticket " << ticket << " was not started or is finished";
  Status st = std::move(it->second);
  outcomes_.erase(it);
  return st;
}

namespace {

class LocalStore : public EmbeddingStore {
 public:
  explicit LocalStore(std::unique_ptr<EmbeddingTable> table) : table_(std::move(table)) {}
  Status Pull(const uint64_t* keys, size_t n, float* values) override {
    return table_->Pull(keys, n, values);
  }
  Status Push(const uint64_t* keys, size_t n, const float* grads, const float* shows,
              const float* clicks) override {
    return table_->Push(keys, n, grads, shows, clicks);
  }

 private:
  std::unique_ptr<EmbeddingTable> table_;
};

class RemoteStore : public EmbeddingStore {
 public:
  explicit RemoteStore(PsClient* client) : client_(client) {}
  Status Pull(const uint64_t* keys, size_t n, float* values) override {
    return Finish(StartPull(keys, n, values));
  }
  Status Push(const uint64_t* keys, size_t n, const float* grads, const float* shows,
              const float* clicks) override {
    return client_->Wait(client_->Push(keys, n, grads, shows, clicks));
  }
  Ticket StartPull(const uint64_t* keys, size_t n, float* values) override {
    std::unique_ptr<InFlightPull> pull(new InFlightPull);
    pull->values = values;
    pull->ticket = client_->Pull(keys, n, &pull->rows);
    std::lock_guard<std::mutex> lock(mu_);
    const Ticket t = next_ticket_++;
    pulls_[t] = std::move(pull);
    return t;
  }
  Ticket StartPush(const uint64_t* keys, size_t n, const float* grads, const float* shows,
                   const float* clicks) override {
    const PsClient::Ticket client_ticket = client_->Push(keys, n, grads, shows, clicks);
    std::lock_guard<std::mutex> lock(mu_);
    const Ticket t = next_ticket_++;
    pushes_[t] = client_ticket;
    return t;
  }
  Status Finish(Ticket ticket) override {
    std::unique_ptr<InFlightPull> pull;
    PsClient::Ticket push = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto p = pulls_.find(ticket);
      if (p != pulls_.end()) {
        pull = std::move(p->second);
        pulls_.erase(p);
      } else {
        auto q = pushes_.find(ticket);
        CHECK(q != pushes_.end()) << "ticket " << ticket << " was not started or is finished";
        push = q->second;
        pushes_.erase(q);
      }
    }
    if (pull == nullptr) return client_->Wait(push);
    PEPNET_RETURN_IF_ERROR(client_->Wait(pull->ticket));
    std::copy(pull->rows.begin(), pull->rows.end(), pull->values);
    return Status::OK();
  }

 private:
  struct InFlightPull {
    PsClient::Ticket ticket = 0;
    std::vector<float> rows;
    float* values = nullptr;
  };
  PsClient* client_;
  std::mutex mu_;
  Ticket next_ticket_ = 1;
  std::unordered_map<Ticket, std::unique_ptr<InFlightPull>> pulls_;
  std::unordered_map<Ticket, PsClient::Ticket> pushes_;
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

Status MakeLocalStore(const proto::ModelConfig& config, uint64_t seed,
                      std::unique_ptr<EmbeddingStore>* store) {
  std::unique_ptr<EmbeddingTable> table;
  PEPNET_RETURN_IF_ERROR(EmbeddingTable::Create(TableOptionsFor(config, seed), &table));
  store->reset(new LocalStore(std::move(table)));
  return Status::OK();
}

std::unique_ptr<EmbeddingStore> MakeTableStore(std::unique_ptr<EmbeddingTable> table) {
  return std::make_unique<LocalStore>(std::move(table));
}

std::unique_ptr<EmbeddingStore> MakeRemoteStore(PsClient* client) {
  return std::make_unique<RemoteStore>(client);
}

void KeepLargeAllocationsInHeap() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
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

size_t DenseParamCount(const proto::ModelConfig& config) {
  std::mt19937_64 rng(1);
  PepNetParams<float> params = PepNet<float>(ShapeOf(config)).InitParams(&rng);
  size_t n = 0;
  params.ForEach([&](const std::string&, Matrix<float>* x) { n += x->size(); },
                 [&](const std::string&, RowVector<float>* x) { n += x->size(); });
  return n;
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

struct Trainer::Member {
  explicit Member(const ModelShape& shape) : net(shape) {}
  PepNet<float> net;
  PepNetParams<float> grads;
  std::vector<Matrix<float>> slot_emb, slot_grads;
  Matrix<float> labels, mask;
  size_t row_begin = 0, row_end = 0;
  Status status;
};

Trainer::Trainer(const proto::ModelConfig& config, EmbeddingStore* store, uint64_t seed,
                 int threads)
    : config_(config),
      store_(store),
      params_(InitialParams(PepNet<float>(ShapeOf(config)), seed)),
      adam_(AdamOf(config), params_),
      team_(new ThreadTeam(std::max(1, threads))) {
  for (const proto::SlotSpec& s : config.slot()) {
    dims_.push_back(static_cast<int>(s.dim()));
    mean_pooling_.push_back(s.pooling() == proto::MEAN);
  }
  for (int i = 0; i < team_->size(); ++i) members_.emplace_back(new Member(ShapeOf(config)));
}

Trainer::~Trainer() { Flush(); }

int Trainer::threads() const { return team_->size(); }

void Trainer::DedupBatch(const Batch& batch, BatchRows* rows) {
  const int num_slots = config_.slot_size();
  rows->keys.clear();
  rows->slot_key_base.resize(num_slots + 1);
  for (int s = 0; s < num_slots; ++s) {
    rows->slot_key_base[s] = rows->keys.size();
    rows->keys.insert(rows->keys.end(), batch.slot_keys[s].begin(), batch.slot_keys[s].end());
  }
  rows->slot_key_base[num_slots] = rows->keys.size();
  dedup_.Dedup(rows->keys.data(), rows->keys.size(), &rows->unique, &rows->position);
  // Distinct keys come in order of first appearance, so slot by slot: a slot's first new
  // key starts its rows.
  rows->value_offset.resize(rows->unique.size() + 1);
  size_t next = 0, offset = 0;
  for (int s = 0; s < num_slots; ++s) {
    for (size_t i = rows->slot_key_base[s]; i < rows->slot_key_base[s + 1]; ++i) {
      if (rows->position[i] != next) continue;
      rows->value_offset[next++] = offset;
      offset += dims_[s];
    }
  }
  rows->value_offset[next] = offset;
  rows->values.resize(offset);
  rows->tickets.clear();
}

void Trainer::StartPullBatch(const Batch& batch, BatchRows* rows) {
  DedupBatch(batch, rows);
  for (int i = 0; i < team_->size(); ++i) {
    const auto range = ShareOf(rows->unique.size(), team_->size(), i);
    rows->tickets.push_back(
        range.second > range.first
            ? store_->StartPull(rows->unique.data() + range.first, range.second - range.first,
                                rows->values.data() + rows->value_offset[range.first])
            : 0);
  }
}

Status Trainer::FinishPullBatch(BatchRows* rows) {
  if (rows->tickets.empty()) return Status::OK();
  team_->Run([&](int i) {
    const EmbeddingStore::Ticket t = rows->tickets[i];
    members_[i]->status = t != 0 ? store_->Finish(t) : Status::OK();
  });
  rows->tickets.clear();
  for (auto& m : members_) PEPNET_RETURN_IF_ERROR(m->status);
  return Status::OK();
}

Status Trainer::PullShares(const std::vector<uint64_t>& keys, const std::vector<size_t>& offset,
                           float* values) {
  // Each thread pulls its share (a local table's pulls run on the calling thread).
  team_->Run([&](int i) {
    const auto range = ShareOf(keys.size(), team_->size(), i);
    members_[i]->status = range.second > range.first
                              ? store_->Pull(keys.data() + range.first, range.second - range.first,
                                             values + offset[range.first])
                              : Status::OK();
  });
  for (auto& m : members_) PEPNET_RETURN_IF_ERROR(m->status);
  return Status::OK();
}

Status Trainer::PullBatch(const Batch& batch) {
  DedupBatch(batch, &rows_);
  return PullShares(rows_.unique, rows_.value_offset, rows_.values.data());
}

Status Trainer::RefreshPushedRows(const BatchRows& pushed, BatchRows* rows) {
  // The keys of *rows that `pushed` also has: where their positions in the concatenation
  // point into its first part.
  refresh_keys_.assign(pushed.unique.begin(), pushed.unique.end());
  refresh_keys_.insert(refresh_keys_.end(), rows->unique.begin(), rows->unique.end());
  dedup_.Dedup(refresh_keys_.data(), refresh_keys_.size(), &refresh_unique_, &refresh_position_);
  const size_t base = pushed.unique.size();
  refresh_keys_.clear();
  refresh_rows_.clear();
  refresh_offset_.assign(1, 0);
  for (size_t j = 0; j < rows->unique.size(); ++j) {
    if (refresh_position_[base + j] >= base) continue;
    refresh_keys_.push_back(rows->unique[j]);
    refresh_rows_.push_back(j);
    refresh_offset_.push_back(refresh_offset_.back() + rows->value_offset[j + 1] -
                              rows->value_offset[j]);
  }
  refresh_values_.resize(refresh_offset_.back());
  PEPNET_RETURN_IF_ERROR(PullShares(refresh_keys_, refresh_offset_, refresh_values_.data()));
  for (size_t k = 0; k < refresh_keys_.size(); ++k) {
    std::copy(refresh_values_.begin() + refresh_offset_[k],
              refresh_values_.begin() + refresh_offset_[k + 1],
              rows->values.begin() + rows->value_offset[refresh_rows_[k]]);
  }
  return Status::OK();
}

Status Trainer::Flush() {
  Status first;
  for (EmbeddingStore::Ticket t : pushes_) {
    if (t == 0) continue;
    Status st = store_->Finish(t);
    if (first.ok() && !st.ok()) first = st;
  }
  pushes_.clear();
  if (next_valid_) {
    // A prefetch nobody will use: wait for it so its buffers are free again.
    next_valid_ = false;
    Status st = FinishPullBatch(&next_);
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

void Trainer::ForwardRows(const Batch& batch, Member* m, const float* task_normalizers) {
  const int num_slots = config_.slot_size();
  const int num_tasks = config_.task_size();
  const int rows = static_cast<int>(m->row_end - m->row_begin);
  m->slot_emb.resize(num_slots);
  for (int s = 0; s < num_slots; ++s) {
    PoolSlotRows(batch.slot_offsets[s], rows_.position.data() + rows_.slot_key_base[s],
                 rows_.value_offset.data(), rows_.values.data(), dims_[s], mean_pooling_[s],
                 m->row_begin, rows, &m->slot_emb[s]);
  }
  m->labels = Eigen::Map<const Matrix<float>>(batch.labels.data() + m->row_begin * num_tasks, rows,
                                              num_tasks);
  m->mask.resize(rows, num_tasks);
  for (int k = 0; k < rows * num_tasks; ++k) {
    m->mask.data()[k] = batch.label_mask[m->row_begin * num_tasks + k];
  }
  m->net.Forward(params_, m->slot_emb, m->labels, m->mask, {nullptr, nullptr}, task_normalizers);
}

Status Trainer::Predict(const Batch& batch, std::vector<float>* scores) {
  const int num_tasks = config_.task_size();
  scores->resize(batch.size * num_tasks);
  if (batch.size == 0) return Status::OK();
  PEPNET_RETURN_IF_ERROR(Flush());
  PEPNET_RETURN_IF_ERROR(PullBatch(batch));
  team_->Run([&](int i) {
    Member& m = *members_[i];
    std::tie(m.row_begin, m.row_end) = ShareOf(batch.size, team_->size(), i);
    if (m.row_end == m.row_begin) return;
    m.labels.resize(0, num_tasks);
    ForwardRows(batch, &m, nullptr);
    const Matrix<float>& logits = m.net.logits();
    float* out = scores->data() + m.row_begin * num_tasks;
    for (int k = 0; k < logits.size(); ++k) out[k] = 1.0f / (1.0f + std::exp(-logits.data()[k]));
  });
  return Status::OK();
}

bool Trainer::SameKeys(const Batch& batch, const BatchRows& rows) const {
  size_t at = 0;
  for (int s = 0; s < config_.slot_size(); ++s) {
    const std::vector<uint64_t>& k = batch.slot_keys[s];
    if (at + k.size() > rows.keys.size() ||
        !std::equal(k.begin(), k.end(), rows.keys.begin() + at)) {
      return false;
    }
    at += k.size();
  }
  return at == rows.keys.size();
}

Status Trainer::TrainBatch(const Batch& batch, PassMetrics* metrics, const Batch* next) {
  const size_t batch_size = batch.size;
  if (batch_size == 0) return Status::OK();
  const int num_tasks = config_.task_size();
  // This batch's rows: prefetched by the step before (and complete: that step waited for
  // them before its push), or pulled now.
  bool prefetched = false;
  if (next_valid_ && SameKeys(batch, next_)) {
    std::swap(rows_, next_);  // next_ now holds the previous step's rows
    next_valid_ = false;
    prefetched = true;
  }
  // The previous step's push is acknowledged before anything is pulled.
  PEPNET_RETURN_IF_ERROR(Flush());
  if (prefetched) {
    PEPNET_RETURN_IF_ERROR(RefreshPushedRows(next_, &rows_));
  } else {
    PEPNET_RETURN_IF_ERROR(PullBatch(batch));
  }
  if (next != nullptr && next->size > 0) {
    StartPullBatch(*next, &next_);
    next_valid_ = true;
  }

  // Each task's loss is a mean over the whole batch's labelled samples.
  std::vector<float> labelled(num_tasks, 0.0f);
  for (size_t i = 0; i < batch_size; ++i) {
    for (int t = 0; t < num_tasks; ++t) labelled[t] += batch.label_mask[i * num_tasks + t];
  }
  team_->Run([&](int i) {
    Member& m = *members_[i];
    std::tie(m.row_begin, m.row_end) = ShareOf(batch_size, team_->size(), i);
    if (m.row_end == m.row_begin) return;
    ForwardRows(batch, &m, labelled.data());
    m.net.Backward(params_, &m.grads, &m.slot_grads);
  });

  // Progressive validation: scored before the update below.
  for (auto& mp : members_) {
    const Member& m = *mp;
    const Matrix<float>& logits = m.net.logits();
    for (size_t r = 0; r < m.row_end - m.row_begin; ++r) {
      const size_t i = m.row_begin + r;
      for (int t = 0; t < num_tasks; ++t) {
        if (m.mask(r, t) == 0) continue;
        const float score = 1.0f / (1.0f + std::exp(-logits(r, t)));
        metrics->Add(t, batch.domain[i], {score, m.labels(r, t), batch.user[i]});
      }
    }
  }

  // One summed gradient per distinct key (divided by the count under mean pooling), its
  // occurrences as shows, and per occurrence the largest click_weight of the sample's
  // positive tasks as clicks.
  // Member i sums and pushes the distinct keys of its share, then updates its share of
  // the dense parameters.
  // The prefetched rows must be in before this step's push goes out (see TrainBatch's
  // comment).
  if (next_valid_) {
    Status st = FinishPullBatch(&next_);
    if (!st.ok()) {
      next_valid_ = false;  // its rows are incomplete
      return st;
    }
  }
  key_grads_.resize(rows_.values.size());
  pushes_.assign(team_->size(), 0);
  shows_.resize(rows_.unique.size());
  clicks_.resize(rows_.unique.size());
  std::vector<PepNetParams<float>*> parts;
  for (auto& m : members_) {
    if (m->row_end > m->row_begin) parts.push_back(&m->grads);
  }
  if (reducer_ == nullptr) {
    adam_.BeginStep();
  } else {
    flat_grads_.resize(adam_.num_values());
  }
  team_->Run([&](int i) {
    const auto keys = ShareOf(rows_.unique.size(), team_->size(), i);
    std::fill(key_grads_.begin() + rows_.value_offset[keys.first],
              key_grads_.begin() + rows_.value_offset[keys.second], 0.0f);
    std::fill(shows_.begin() + keys.first, shows_.begin() + keys.second, 0.0f);
    std::fill(clicks_.begin() + keys.first, clicks_.begin() + keys.second, 0.0f);
    for (const auto& mp : members_) {
      const Member& m = *mp;
      for (int s = 0; s < config_.slot_size(); ++s) {
        const int dim = dims_[s];
        const std::vector<uint32_t>& off = batch.slot_offsets[s];
        const uint32_t* pos = rows_.position.data() + rows_.slot_key_base[s];
        for (size_t r = 0; r < m.row_end - m.row_begin; ++r) {
          const size_t row = m.row_begin + r;
          const uint32_t count = off[row + 1] - off[row];
          const float scale = mean_pooling_[s] && count > 1 ? 1.0f / count : 1.0f;
          float click = 0;
          for (int t = 0; t < num_tasks; ++t) {
            if (m.mask(r, t) != 0 && m.labels(r, t) > 0) {
              click = std::max(click, config_.task(t).click_weight());
            }
          }
          for (uint32_t k = off[row]; k < off[row + 1]; ++k) {
            const uint32_t j = pos[k];
            if (j < keys.first || j >= keys.second) continue;
            Eigen::Map<RowVector<float>>(key_grads_.data() + rows_.value_offset[j], dim) +=
                m.slot_grads[s].row(r) * scale;
            shows_[j] += 1.0f;
            clicks_[j] += click;
          }
        }
      }
    }
    // The push is sent now and acknowledged in the next step (or Flush), after the rows
    // prefetched beside this step have arrived (waited for above).
    pushes_[i] = keys.second > keys.first
                     ? store_->StartPush(rows_.unique.data() + keys.first, keys.second - keys.first,
                                         key_grads_.data() + rows_.value_offset[keys.first],
                                         shows_.data() + keys.first, clicks_.data() + keys.first)
                     : 0;
    const auto dense = ShareOf(adam_.num_values(), team_->size(), i);
    if (reducer_ == nullptr) {
      adam_.UpdateRange(&params_, parts, dense.first, dense.second);
      return;
    }
    // Flatten this thread's range of the summed gradient for the cluster's reduction.
    size_t base = 0;
    for (PepNetParams<float>* part : parts) {
      base = 0;
      part->ForEach(
          [&](const std::string&, Matrix<float>* x) {
            AddRange(x->data(), x->size(), part == parts[0], dense, &base);
          },
          [&](const std::string&, RowVector<float>* x) {
            AddRange(x->data(), x->size(), part == parts[0], dense, &base);
          });
    }
  });
  // Without `next`, the push is acknowledged before the dense sum: once the sum is back,
  // every worker's push of this step is applied, and no worker pulls for its next step
  // before that. With `next` it runs beside the sum.
  if (next == nullptr) {
    Status st = Flush();
    if (!st.ok()) return st;
  }
  if (reducer_ != nullptr) {
    bool all_done = false;
    Status st = ReduceAndApply(true, &all_done);
    if (st.ok() && all_done) {
      st = Status::Internal("dense reduction ended the pass during a step with data");
    }
    if (!st.ok()) {
      Flush();  // the step failed already; the push's own outcome adds nothing
      return st;
    }
  }
  return Status::OK();
}

void Trainer::AddRange(const float* src, size_t n, bool first, std::pair<size_t, size_t> range,
                       size_t* base) {
  const size_t lo = std::max(range.first, *base), hi = std::min(range.second, *base + n);
  for (size_t k = lo; k < hi; ++k) {
    flat_grads_[k] = first ? src[k - *base] : flat_grads_[k] + src[k - *base];
  }
  *base += n;
}

Status Trainer::ReduceAndApply(bool has_data, bool* all_done) {
  const size_t n = adam_.num_values();
  if (flat_grads_.size() != n) {
    return Status::Internal("a dense gradient of " + std::to_string(flat_grads_.size()) +
                            " floats; the model has " + std::to_string(n));
  }
  bool begun = false;
  size_t applied = 0;
  Status bad;
  // Adam is element-wise: a part at a time, over the threads, gives the bits of the
  // whole vector at once.
  auto ready = [&](size_t begin, size_t end) {
    if (begin > end || end > n) {
      bad = Status::Internal("dense reduction reported floats [" + std::to_string(begin) + ", " +
                             std::to_string(end) + ") of " + std::to_string(n));
      return;
    }
    if (!begun) adam_.BeginStep();
    begun = true;
    applied += end - begin;
    team_->Run([&](int i) {
      const auto share = ShareOf(end - begin, team_->size(), i);
      adam_.UpdateRangeFlat(&params_, flat_grads_.data(), begin + share.first,
                            begin + share.second);
    });
  };
  PEPNET_RETURN_IF_ERROR(reducer_->AllReduce(has_data, &flat_grads_, all_done, ready));
  PEPNET_RETURN_IF_ERROR(bad);
  if (!*all_done && applied != n) {
    return Status::Internal("dense reduction reported " + std::to_string(applied) + " of " +
                            std::to_string(n) + " floats");
  }
  return Status::OK();
}

Status Trainer::IdleStep(bool* all_done) {
  if (reducer_ == nullptr) return Status::Internal("IdleStep without a dense reducer");
  flat_grads_.assign(adam_.num_values(), 0.0f);
  return ReduceAndApply(false, all_done);
}

void Trainer::FlattenParams(std::vector<float>* out) const {
  out->clear();
  out->reserve(adam_.num_values());
  PepNetParams<float>& p = const_cast<PepNetParams<float>&>(params_);
  p.ForEach([&](const std::string&,
                Matrix<float>* x) { out->insert(out->end(), x->data(), x->data() + x->size()); },
            [&](const std::string&, RowVector<float>* x) {
              out->insert(out->end(), x->data(), x->data() + x->size());
            });
}

uint64_t Trainer::DenseChecksum() const {
  std::vector<float> flat;
  FlattenParams(&flat);
  FileChecksum sum;
  sum.Update(reinterpret_cast<const char*>(flat.data()), 4 * flat.size());
  return sum.Final();
}

void Trainer::CaptureDenseState(DenseState* out) const {
  FlattenParams(&out->params);
  adam_.FlattenMoments(&out->m, &out->v);
  out->step = adam_.step();
}

Status Trainer::LoadDenseState(const DenseState& state) {
  PEPNET_RETURN_IF_ERROR(LoadParams(state.params.data(), state.params.size()));
  if (!adam_.LoadMoments(state.m, state.v, state.step)) {
    return Status::InvalidArgument("dense state: Adam moments of " +
                                   std::to_string(state.m.size()) + " and " +
                                   std::to_string(state.v.size()) + " floats for a model of " +
                                   std::to_string(adam_.num_values()));
  }
  return Status::OK();
}

Status Trainer::LoadParams(const float* values, size_t n) {
  if (n != adam_.num_values()) {
    return Status::InvalidArgument("dense parameters: " + std::to_string(n) +
                                   " floats given, the model has " +
                                   std::to_string(adam_.num_values()));
  }
  UnflattenParams(values, &params_);
  return Status::OK();
}

void UnflattenParams(const float* values, PepNetParams<float>* params) {
  size_t at = 0;
  params->ForEach(
      [&](const std::string&, Matrix<float>* x) {
        std::copy(values + at, values + at + x->size(), x->data());
        at += x->size();
      },
      [&](const std::string&, RowVector<float>* x) {
        std::copy(values + at, values + at + x->size(), x->data());
        at += x->size();
      });
}

void PoolSlotRows(const std::vector<uint32_t>& offsets, const uint32_t* positions,
                  const size_t* value_offset, const float* values, int dim, bool mean,
                  size_t row_begin, int rows, Matrix<float>* emb) {
  emb->setZero(rows, dim);
  for (int r = 0; r < rows; ++r) {
    const size_t i = row_begin + r;
    for (uint32_t k = offsets[i]; k < offsets[i + 1]; ++k) {
      emb->row(r) += Eigen::Map<const RowVector<float>>(values + value_offset[positions[k]], dim);
    }
    if (mean && offsets[i + 1] > offsets[i] + 1) emb->row(r) /= float(offsets[i + 1] - offsets[i]);
  }
}

}  // namespace pepnet
