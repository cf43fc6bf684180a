// RunClusterWorker: one worker of a cluster (pepnet_worker). Trains its share of every
// pass against the shard servers, in step with the other workers through the coordinator
// (pepnet_coord): sparse pulls and pushes go straight to the shards, the dense gradient of
// every step is summed across the workers by the coordinator before each worker's
// identical Adam step.
//
// Joining, a worker learns where the run stands: the passes committed so far (it goes on
// after them) and, in a run that resumed, the committed dense state (it loads it). When
// the cluster recovers from a dead process (the coordinator's COORD_FAIL with retry, or
// the coordinator itself gone), the worker drops the pass it was training, reconnects
// with backoff and joins again. A worker that fails on its own (a shard it cannot reach)
// tells the coordinator, which starts that recovery. Bad input (a malformed data file)
// ends the run instead.
//
// Runs on the calling thread until the worker's passes are done (OK) or the run fails.
#ifndef PEPNET_WORKER_CLUSTER_WORKER_H_
#define PEPNET_WORKER_CLUSTER_WORKER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/auth.h"
#include "common/process_status.h"
#include "common/status.h"
#include "worker/pass_source.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}

struct ClusterWorkerOptions {
  std::vector<std::string> servers;  // shard servers, in shard order
  std::string coordinator_host;
  int coordinator_port = 0;
  int worker_index = 0;
  int num_workers = 1;
  PassSourceOptions source;
  int threads = 2;  // of a training step
  // Overlap each step's network work with its computation (Trainer::TrainBatch's `next`).
  bool prefetch_rows = false;
  uint64_t seed = 1;  // dense initialization, the same on every worker
  // How long to keep trying to reach the coordinator: at start, and after losing it in a
  // run that recovers.
  int reconnect_timeout_ms = 600000;
  // The cluster's secret (docs/security.md); empty: none.
  Secret secret;
  // Told when the worker is ready (connected to the coordinator and every shard) and which
  // pass it trains; borrowed, may be null.
  ProcessStatus* status = nullptr;
};

// `config` is borrowed for the call.
Status RunClusterWorker(const proto::ModelConfig& config, const ClusterWorkerOptions& options);

}  // namespace pepnet

#endif  // PEPNET_WORKER_CLUSTER_WORKER_H_
