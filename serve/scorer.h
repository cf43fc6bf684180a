// Scorer: per-task probabilities of a batch of samples with the live model version, the
// same math as Trainer::Predict (pepnet_predict): each distinct key's row read once, rows
// pooled per slot, the PEPNet forward pass, a sigmoid per task.
//
// Thread-safe: concurrent calls each take a workspace of their own (kept for reuse, one
// per concurrent caller), read their rows under the LiveModel's read lock and compute
// outside it.
#ifndef PEPNET_SERVE_SCORER_H_
#define PEPNET_SERVE_SCORER_H_

#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}
struct Batch;
class LiveModel;
struct ServedVersion;

class Scorer {
 public:
  // `config` is borrowed and outlives the scorer: the model every served version has.
  explicit Scorer(const proto::ModelConfig* config);
  ~Scorer();

  // scores: [batch.size, num_tasks] row-major; *version: the version that scored them, all
  // of them. Unavailable while no version is live.
  Status Score(const LiveModel& model, const Batch& batch, std::vector<float>* scores,
               std::shared_ptr<const ServedVersion>* version);

 private:
  struct Workspace;
  std::unique_ptr<Workspace> Take();
  void Give(std::unique_ptr<Workspace> w);

  const proto::ModelConfig* config_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Workspace>> free_;
};

}  // namespace pepnet

#endif  // PEPNET_SERVE_SCORER_H_
