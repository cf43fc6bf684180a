// Trainer: one PEPNet training step per batch, the same math whether the embeddings live
// in this process (LocalEmbeddings, the server's table code) or on shard servers
// (RemoteEmbeddings, through the client library).
//
// A step: pull every key of the batch, pool each slot's rows (sum or mean), score the
// batch (progressive validation: the scores go to the metrics before training on it),
// backpropagate, push the embedding gradients with show/click counts, and apply Adam to
// the dense parameters. Not thread-safe.
#ifndef PEPNET_WORKER_TRAINER_H_
#define PEPNET_WORKER_TRAINER_H_

#include <memory>
#include <random>
#include <vector>

#include "common/status.h"
#include "ps/table_config.h"
#include "worker/adam.h"
#include "worker/data_reader.h"
#include "worker/metrics.h"
#include "worker/pepnet_model.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}
class EmbeddingTable;
class PsClient;

// Where embedding rows come from and where their gradients go.
class EmbeddingStore {
 public:
  virtual ~EmbeddingStore() = default;
  // Rows of keys in key order, each of its slot's dim.
  virtual Status Pull(const std::vector<uint64_t>& keys, std::vector<float>* values) = 0;
  virtual Status Push(const std::vector<uint64_t>& keys, const std::vector<float>& grads,
                      const std::vector<float>& shows, const std::vector<float>& clicks) = 0;
};

// The embedding table a model config needs (its slots, dims and AdaGrad settings); shard
// servers for the model run with FormatTableConfig of it.
TableOptions TableOptionsFor(const proto::ModelConfig& config, uint64_t seed);

// An in-process table built from the model config's slots (for --local).
Status MakeLocalStore(const proto::ModelConfig& config, uint64_t seed,
                      std::unique_ptr<EmbeddingStore>* store);
// Shard servers through a connected client (borrowed; must outlive the store).
std::unique_ptr<EmbeddingStore> MakeRemoteStore(PsClient* client);

// The model shape a config describes.
ModelShape ShapeOf(const proto::ModelConfig& config);

class Trainer {
 public:
  // `config` and `store` are borrowed and must outlive the trainer.
  Trainer(const proto::ModelConfig& config, EmbeddingStore* store, uint64_t seed);

  // One step on `batch`; its predictions (before the update) go to `metrics`.
  Status TrainBatch(const Batch& batch, PassMetrics* metrics);

  const PepNetParams<float>& params() const { return params_; }

 private:
  const proto::ModelConfig& config_;
  EmbeddingStore* store_;
  PepNet<float> net_;
  PepNetParams<float> params_, grads_;
  Adam<float> adam_;
  std::vector<bool> mean_pooling_;
  // Per-step buffers, kept to avoid reallocation.
  std::vector<uint64_t> keys_;
  std::vector<float> values_, key_grads_, shows_, clicks_;
  std::vector<Matrix<float>> slot_emb_, slot_grads_;
  Matrix<float> labels_, mask_;
};

}  // namespace pepnet

#endif  // PEPNET_WORKER_TRAINER_H_
