// pepnet_worker: one worker of a cluster (worker/cluster_worker.h).
//
// Passes: --passes lists pass folders in order; --pass_root is watched instead, a
// sub-folder becoming ready when its _SUCCESS marker appears, in name order. Pass folder
// files (sorted by name, _SUCCESS and hidden files excepted) go to worker (i mod M).
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>

#include "common/admin.h"
#include "common/ps_client.h"
#include "common/tls_flags.h"
#include "proto/model_config.pb.h"
#include "worker/cluster_worker.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

DEFINE_string(config, "", "Model config (protobuf text format).");
DEFINE_string(servers, "", "Shard servers host:port,... in shard order.");
DEFINE_string(coordinator, "", "The coordinator's host:port.");
DEFINE_string(secret_file, "",
              "The cluster's shared secret, a file only its owner may read (docs/security.md); "
              "empty = none (the cluster then serves loopback only).");
DEFINE_int32(worker_index, 0, "This worker's index in [0, num_workers).");
DEFINE_int32(num_workers, 1, "Workers in the cluster.");
DEFINE_string(passes, "", "Pass folders, comma-separated, in order.");
DEFINE_string(pass_root, "", "Watch this folder for pass folders (instead of --passes).");
DEFINE_int32(max_passes, 0, "Stop after this many passes of the run; 0 = no limit.");
DEFINE_int32(idle_timeout_s, 0,
             "Watching: stop when no new pass is ready for this long; 0 = wait forever.");
DEFINE_int32(poll_ms, 500, "Watching: how often the pass root is scanned.");
DEFINE_int32(threads, 2, "Threads of a training step.");
DEFINE_bool(prefetch_rows, false,
            "Pull the next batch's rows while this batch computes (and the rows this "
            "batch's push changed again after it); trains bit-identically with one worker. "
            "Off: over loopback on 2 cores it costs about 5% (docs/benchmarks.md).");
DEFINE_uint64(seed, 1, "Dense initialization seed (the same on every worker).");
DEFINE_int32(reconnect_timeout_s, 600,
             "Keep trying to reach the coordinator this long, at start and (in a run that "
             "recovers) after losing it.");

namespace {

int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_worker %d: %s\n", FLAGS_worker_index, message.c_str());
  return 1;
}

std::vector<std::string> SplitList(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

bool IsDir(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

int Run() {
  if (FLAGS_config.empty() || FLAGS_servers.empty() || FLAGS_coordinator.empty()) {
    return Fail("--config, --servers and --coordinator are required");
  }
  if (FLAGS_passes.empty() == FLAGS_pass_root.empty()) {
    return Fail("give exactly one of --passes and --pass_root");
  }
  pepnet::ClusterWorkerOptions o;
  o.source.passes = SplitList(FLAGS_passes);
  // A mistyped pass folder would otherwise train nothing and publish as if it had.
  for (const std::string& folder : o.source.passes) {
    if (!IsDir(folder)) return Fail("--passes: " + folder + " is not a folder");
  }
  if (FLAGS_num_workers < 1 || FLAGS_worker_index < 0 || FLAGS_worker_index >= FLAGS_num_workers) {
    return Fail("--worker_index must be in [0, --num_workers)");
  }
  pepnet::proto::ModelConfig config;
  pepnet::Status st = pepnet::LoadModelConfigFile(FLAGS_config, &config);
  if (!st.ok()) return Fail(st.ToString());
  st = pepnet::ParseServerList(FLAGS_servers, &o.servers);
  if (!st.ok()) return Fail(st.ToString());
  const size_t colon = FLAGS_coordinator.rfind(':');
  if (colon == std::string::npos) return Fail("--coordinator must be host:port");
  o.coordinator_host = FLAGS_coordinator.substr(0, colon);
  o.coordinator_port = std::atoi(FLAGS_coordinator.c_str() + colon + 1);
  o.worker_index = FLAGS_worker_index;
  o.num_workers = FLAGS_num_workers;
  o.source.pass_root = FLAGS_pass_root;
  o.source.max_passes = FLAGS_max_passes;
  o.source.idle_timeout_s = FLAGS_idle_timeout_s;
  o.source.poll_ms = FLAGS_poll_ms;
  o.threads = FLAGS_threads;
  o.prefetch_rows = FLAGS_prefetch_rows;
  o.seed = FLAGS_seed;
  o.reconnect_timeout_ms = FLAGS_reconnect_timeout_s * 1000;
  st = pepnet::LoadSecretAndTls(FLAGS_secret_file, &o.secret);
  if (!st.ok()) return Fail(st.message());
  pepnet::ProcessStatus status;
  o.status = &status;
  std::unique_ptr<pepnet::AdminEndpoints> admin;
  st = pepnet::AdminEndpoints::StartFromFlags(
      "pepnet_worker", "127.0.0.1", o.secret,
      pepnet::HooksFor(
          "worker " + std::to_string(FLAGS_worker_index) + "/" + std::to_string(FLAGS_num_workers),
          &status),
      &admin);
  if (!st.ok()) return Fail(st.message());
  if (admin) admin->LogAddress();
  st = pepnet::RunClusterWorker(config, o);
  return st.ok() ? 0 : Fail(st.ToString());
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "pepnet_worker --config=F --servers=h:p,.. --coordinator=h:p --worker_index=i "
      "--num_workers=M (--passes=D1,D2 | --pass_root=DIR)");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_log_dir.empty()) FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  pepnet::KeepLargeAllocationsInHeap();
  return Run();
}
