// Coordinator: the pass lifecycle of a cluster of workers and shard servers
// (docs/architecture.md, "Passes" and "Commits and recovery"). One process, pepnet_coord,
// runs it.
//
// Per pass: every worker announces the pass folder it is ready for (all must agree) ->
// BEGIN_PASS on every shard -> synchronous dense steps (the sum of the workers' dense
// gradients, in worker order, sent back to all) until no worker has data -> END_PASS:
// dense checksums compared, predictions merged into one set of metrics -> END_PASS on the
// shards -> the two-phase commit (shards prepare, the dense checkpoint, the record, the
// shards commit) when the shards keep storage -> the publish of the pass's version ->
// the workers go on.
//
// With a data dir (CoordinatorOptions::data_dir) the run survives any process dying: a
// dead worker or shard (a broken connection, a timeout) makes the coordinator tell every
// worker to rejoin, wait for the cluster to be whole again, bring every shard back to the
// last committed pass and resume after it; a restarted coordinator resumes from its
// record. Other failures (disagreeing workers, differing dense replicas, a full disk, bad
// data) fail the run: every worker is told why, Run returns the error. Without a data dir
// any failure fails the run. Run is called once, from one thread.
#ifndef PEPNET_COORD_COORDINATOR_H_
#define PEPNET_COORD_COORDINATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/auth.h"
#include "common/env.h"
#include "common/process_status.h"
#include "common/status.h"

namespace pepnet {

struct CoordinatorOptions {
  std::string host = "127.0.0.1";
  int port = 0;           // 0 = a free port; written to port_file
  std::string port_file;  // written once listening
  int num_workers = 1;
  std::vector<std::string> servers;  // shard servers, in shard order
  std::string model_config;          // path of the model config (text format)
  std::string publish_dir;           // where model versions go (created)
  int base_every = 5;                // a full base version every N passes (1 = always)
  uint64_t table_seed = 1;           // the servers' table seed, recorded for serving
  int step_timeout_ms = 600000;      // a worker silent this long in a pass fails it
  std::string metrics_out;           // appends one JSON line of metrics per pass
  // The coordinator's record (coord/coordinator_store.h); empty = no recovery.
  std::string data_dir;
  // Recovering, how long to wait for every shard to answer and every worker to rejoin.
  int recovery_timeout_ms = 600000;
  // Told when the coordinator is ready (listening and connected to every shard) and
  // which pass runs; borrowed, may be null.
  ProcessStatus* status = nullptr;
  int admin_port = 0;  // for the listening line; 0: none
  // Seconds between progress lines on stderr (common/progress_line.h): < 0 picks 2 s on
  // a terminal and 30 s otherwise; 0: none.
  double progress_interval_s = -1;
  Env* env = Env::Default();  // borrowed
  // The cluster's secret (docs/security.md): workers prove it to join, and the coordinator
  // proves it to the shards. Empty: none, and `host` must be loopback.
  Secret secret;
};

Status RunCoordinator(const CoordinatorOptions& options);

}  // namespace pepnet

#endif  // PEPNET_COORD_COORDINATOR_H_
