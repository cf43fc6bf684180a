// Trainer: one PEPNet training step per batch, the same math whether the embeddings live
// in this process (LocalEmbeddings, the server's table code) or on shard servers
// (RemoteEmbeddings, through the client library).
//
// A step: deduplicate the batch's keys, pull each distinct row once, pool each slot's rows
// (sum or mean), score the batch (progressive validation: the scores go to the metrics
// before training on it), backpropagate, push one summed gradient per distinct key with
// its show/click counts, and apply Adam to the dense parameters.
//
// With threads > 1 the batch's rows are split over a team of threads: each runs the model
// on its rows (normalized by the whole batch's label counts, so the parts' gradients add up
// to the whole batch's), and pulls, pushes and the Adam update are split by key and by
// parameter ranges. Results are deterministic for a given thread count.
//
// A Trainer is used from one thread at a time.
#ifndef PEPNET_WORKER_TRAINER_H_
#define PEPNET_WORKER_TRAINER_H_

#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <unordered_map>
#include <vector>

#include "common/key_dedup.h"
#include "common/status.h"
#include "ps/table_config.h"
#include "worker/adam.h"
#include "worker/data_reader.h"
#include "worker/dense_state.h"
#include "worker/metrics.h"
#include "worker/pepnet_model.h"
#include "worker/thread_team.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}
class EmbeddingTable;
class PsClient;

// Where embedding rows come from and where their gradients go.
class EmbeddingStore {
 public:
  using Ticket = uint64_t;
  virtual ~EmbeddingStore();
  // Rows of keys[0..n) in key order, each of its slot's dim. Called concurrently from the
  // trainer's threads with disjoint keys.
  virtual Status Pull(const uint64_t* keys, size_t n, float* values) = 0;
  virtual Status Push(const uint64_t* keys, size_t n, const float* grads, const float* shows,
                      const float* clicks) = 0;

  // The same calls started now and finished by Finish(ticket), so that a step's network
  // work can overlap its computation. keys, grads, shows and clicks may be reused once
  // Start* returns; `values` is written by the time Finish returns and must stay alive
  // until then. Each ticket is finished once, from any thread. The defaults run the call at
  // once and keep its outcome for Finish.
  virtual Ticket StartPull(const uint64_t* keys, size_t n, float* values);
  virtual Ticket StartPush(const uint64_t* keys, size_t n, const float* grads, const float* shows,
                           const float* clicks);
  virtual Status Finish(Ticket ticket);

 private:
  Ticket Keep(Status outcome);
  std::mutex mu_;
  std::unordered_map<Ticket, Status> outcomes_;
  Ticket next_ticket_ = 1;
};

// Sums the dense gradients of the workers of a cluster, once per step: the synchronous
// dense half of training (on the shards, docs/architecture.md "The dense sum"). Every
// worker gets the same sum and applies the same Adam update, so the dense replicas stay
// bitwise identical.
class DenseReducer {
 public:
  // Floats [begin, end) of the sum are final.
  using PartReady = std::function<void(size_t begin, size_t end)>;

  virtual ~DenseReducer() = default;
  // `grads` holds this worker's flattened dense gradient when `has_data` (else it is
  // ignored); on return it holds the sum over the workers that had data, or *all_done is
  // true: no worker had data, the pass's training is over and no step is taken. Unless
  // *all_done, `ready` has run, on this thread, for disjoint parts covering the whole
  // vector, each as soon as it was final, so that Adam starts on the parts that arrived
  // while the others are still on their way; with *all_done it never runs. After an
  // error some parts may have run.
  virtual Status AllReduce(bool has_data, std::vector<float>* grads, bool* all_done,
                           const PartReady& ready) = 0;
};

// An in-process table built from the model config's slots (for --local).
Status MakeLocalStore(const proto::ModelConfig& config, uint64_t seed,
                      std::unique_ptr<EmbeddingStore>* store);
// A store over an existing table (for serving a loaded model).
std::unique_ptr<EmbeddingStore> MakeTableStore(std::unique_ptr<EmbeddingTable> table);
// Shard servers through a connected client (borrowed; must outlive the store).
std::unique_ptr<EmbeddingStore> MakeRemoteStore(PsClient* client);

// The model shape a config describes.
ModelShape ShapeOf(const proto::ModelConfig& config);
// Floats of dense parameters of that model.
size_t DenseParamCount(const proto::ModelConfig& config);

// Replaces `params` (shaped for the model) with values in PepNetParams::ForEach order, as
// many as the model has (DenseParamCount).
void UnflattenParams(const float* values, PepNetParams<float>* params);

// Pooled embeddings of one slot for samples [row_begin, row_begin + rows) of a batch:
// row r of *emb is the sum (or, with `mean`, the mean) of the rows of its keys, key k's
// row at values + value_offset[positions[k]]; `offsets` is the batch's slot_offsets.
void PoolSlotRows(const std::vector<uint32_t>& offsets, const uint32_t* positions,
                  const size_t* value_offset, const float* values, int dim, bool mean,
                  size_t row_begin, int rows, Matrix<float>* emb);

// For a training process's main(): keeps freed buffers in the heap instead of returning
// them to the kernel. Eigen's products allocate their multi-megabyte packing buffers per
// call; with glibc's defaults those come and go by mmap, and the page faults cost a few
// percent of a training step (measured in docs/benchmarks.md). Process-wide.
void KeepLargeAllocationsInHeap();

class Trainer {
 public:
  // `config` and `store` are borrowed and must outlive the trainer. `threads` >= 1.
  Trainer(const proto::ModelConfig& config, EmbeddingStore* store, uint64_t seed, int threads = 1);
  ~Trainer();

  // One step on `batch`; its predictions (before the update) go to `metrics`.
  //
  // Without `next`, the step's pulls finish before its push, and the push is acknowledged
  // before the dense sum (so, in a cluster, every worker's push of a step is applied
  // before any worker pulls for the next).
  //
  // With `next` (the batch the following call will train on), the step overlaps its
  // network work with its computation: the rows of `next` are pulled while this batch
  // computes, and this batch's gradients are pushed while the dense sum runs, the push
  // finishing in the following call (or Flush). The following call, once that push is
  // acknowledged, pulls again the rows of the keys both batches have. With one worker and
  // a table that evicts nothing, a step then sees exactly the rows it would see without
  // the overlap, and training is bit-identical to it. Otherwise a prefetched row can miss
  // the other workers' pushes of the last two steps, and under a memory limit or a row cap
  // the rows are created and evicted in another order. A following call with a batch
  // other than `next` pulls its rows again.
  Status TrainBatch(const Batch& batch, PassMetrics* metrics, const Batch* next = nullptr);
  // Waits for the push a step left in flight; its failure, if any.
  Status Flush();

  // Scores `batch` without training: probabilities, [batch.size, num_tasks] row-major.
  Status Predict(const Batch& batch, std::vector<float>* scores);

  // With a reducer (borrowed), each step's dense gradient is summed across the cluster
  // before Adam; a worker whose share of a pass has run out calls IdleStep until
  // *all_done, so that every worker takes the same steps.
  void set_dense_reducer(DenseReducer* reducer) { reducer_ = reducer; }
  Status IdleStep(bool* all_done);

  const PepNetParams<float>& params() const { return params_; }
  // The dense parameters flattened in PepNetParams::ForEach order, their checksum (equal
  // on every worker of a cluster), and their replacement (for loading a published model).
  void FlattenParams(std::vector<float>* out) const;
  uint64_t DenseChecksum() const;
  Status LoadParams(const float* values, size_t n);
  // The dense parameters and Adam's state, captured together between two steps, and
  // their replacement (a checkpoint restored when a worker rejoins a cluster).
  void CaptureDenseState(DenseState* out) const;
  Status LoadDenseState(const DenseState& state);
  // Floats of dense parameters the model has.
  size_t num_dense() const { return adam_.num_values(); }
  int threads() const;

 private:
  struct Member;  // one thread's model activations and gradients
  // A batch's keys and their distinct rows. keys holds every key occurrence, slot by slot;
  // unique the distinct keys (grouped by slot, as keys of slots differ); position[i] the
  // index in unique of keys[i]; value_offset[j] where unique[j]'s row starts in values
  // (and in key_grads_). tickets: the pulls in flight into values, one per thread's share.
  struct BatchRows {
    std::vector<uint64_t> keys, unique;
    std::vector<uint32_t> position;
    std::vector<size_t> slot_key_base, value_offset;
    std::vector<float> values;
    std::vector<EmbeddingStore::Ticket> tickets;
  };
  // Dedups the batch's keys into *rows and sizes rows->values for their rows.
  void DedupBatch(const Batch& batch, BatchRows* rows);
  // DedupBatch, then starts pulling the distinct rows.
  void StartPullBatch(const Batch& batch, BatchRows* rows);
  // Waits for rows->tickets (each thread its share).
  Status FinishPullBatch(BatchRows* rows);
  // Pulls keys[k]'s row to values + offset[k], each thread a share of the keys.
  Status PullShares(const std::vector<uint64_t>& keys, const std::vector<size_t>& offset,
                    float* values);
  // Dedups the batch's keys and pulls the distinct rows into rows_.values.
  Status PullBatch(const Batch& batch);
  // Pulls again the rows of *rows (prefetched before `pushed` was pushed) whose keys
  // `pushed` has: with one worker the step then sees every update before it.
  Status RefreshPushedRows(const BatchRows& pushed, BatchRows* rows);
  // Whether rows were made from exactly this batch's keys.
  bool SameKeys(const Batch& batch, const BatchRows& rows) const;
  // Member i pools its rows' embeddings and runs the forward pass.
  void ForwardRows(const Batch& batch, Member* m, const float* task_normalizers);
  // flat_grads_[range] (+)= src, for the part of range inside [*base, *base + n); advances
  // *base by n.
  void AddRange(const float* src, size_t n, bool first, std::pair<size_t, size_t> range,
                size_t* base);
  // The dense sum of the step (reducer_), with Adam applied to each part as it arrives.
  // *all_done: no worker had data (nothing applied).
  Status ReduceAndApply(bool has_data, bool* all_done);

  const proto::ModelConfig& config_;
  EmbeddingStore* store_;
  PepNetParams<float> params_;
  Adam<float> adam_;
  std::vector<int> dims_;
  std::vector<bool> mean_pooling_;
  std::unique_ptr<ThreadTeam> team_;
  std::vector<std::unique_ptr<Member>> members_;
  KeyDeduper dedup_;
  // Per-step buffers, kept to avoid reallocation: this step's rows, and the next step's
  // while they are prefetched (next_valid_).
  BatchRows rows_, next_;
  bool next_valid_ = false;
  std::vector<float> key_grads_, shows_, clicks_;
  // RefreshPushedRows' scratch.
  std::vector<uint64_t> refresh_keys_, refresh_unique_;
  std::vector<uint32_t> refresh_position_;
  std::vector<size_t> refresh_rows_, refresh_offset_;
  std::vector<float> refresh_values_;
  // This step's pushes in flight, one per thread's share.
  std::vector<EmbeddingStore::Ticket> pushes_;
  DenseReducer* reducer_ = nullptr;
  std::vector<float> flat_grads_;
};

}  // namespace pepnet

#endif  // PEPNET_WORKER_TRAINER_H_
