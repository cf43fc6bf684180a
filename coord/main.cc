// pepnet_coord: the pass coordinator of a cluster (coord/coordinator.h).
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>

#include "common/admin.h"
#include "common/env.h"
#include "common/ps_client.h"
#include "common/tls_flags.h"
#include "coord/coordinator.h"

DEFINE_string(host, "127.0.0.1",
              "Address to listen on for workers. Anything but loopback needs --secret_file.");
DEFINE_string(secret_file, "",
              "The cluster's shared secret, a file only its owner may read (docs/security.md); "
              "empty = none (the cluster then serves loopback only).");
DEFINE_int32(port, 0, "Port to listen on; 0 = a free port (see --port_file).");
DEFINE_string(port_file, "", "Write the port here once listening.");
DEFINE_int32(num_workers, 1, "Workers in the cluster; each connects once.");
DEFINE_string(servers, "", "Shard servers host:port,... in shard order.");
DEFINE_string(config, "", "Model config (protobuf text format), the workers' own.");
DEFINE_string(publish_dir, "", "Where each pass's model version goes; empty = no publish.");
DEFINE_int32(base_every, 5, "A full base version every N passes; deltas in between.");
DEFINE_uint64(seed, 1, "The servers' table seed (recorded in manifests for serving).");
DEFINE_int32(step_timeout_s, 600, "A worker silent this long during a pass fails the pass.");
DEFINE_string(metrics_out, "", "Append one JSON line of merged metrics per pass.");
DEFINE_double(progress_interval_s, -1,
              "Seconds between progress lines on stderr; -1: 2 on a terminal (one line "
              "redrawn), 30 otherwise; 0: none.");
DEFINE_string(data_dir, "",
              "Keep the run's record here (committed pass, pass folders done, versions, the "
              "dense checkpoint): a restarted coordinator resumes, and a dead worker or shard "
              "is recovered from. Empty = any failure ends the run.");
DEFINE_int32(recovery_timeout_s, 600,
             "Recovering, give up when the shards and workers are not all back after this long.");
DEFINE_string(crash_at, "",
              "For tests: stop the process (SIGKILL) at the named step of a commit or publish, "
              "NAME or NAME:COUNT (docs/architecture.md, \"Crash points\").");

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "pepnet_coord --num_workers=M --servers=h:p,.. --config=FILE --publish_dir=DIR");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_log_dir.empty()) FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  pepnet::CoordinatorOptions o;
  o.host = FLAGS_host;
  o.port = FLAGS_port;
  o.port_file = FLAGS_port_file;
  o.num_workers = FLAGS_num_workers;
  o.model_config = FLAGS_config;
  o.publish_dir = FLAGS_publish_dir;
  o.base_every = FLAGS_base_every;
  o.table_seed = FLAGS_seed;
  o.step_timeout_ms = FLAGS_step_timeout_s * 1000;
  o.metrics_out = FLAGS_metrics_out;
  o.progress_interval_s = FLAGS_progress_interval_s;
  o.data_dir = FLAGS_data_dir;
  o.recovery_timeout_ms = FLAGS_recovery_timeout_s * 1000;
  if (FLAGS_config.empty()) {
    fprintf(stderr, "pepnet_coord: --config is required\n");
    return 1;
  }
  pepnet::Status st;
  std::unique_ptr<pepnet::Env> crash_env;
  if (!FLAGS_crash_at.empty()) {
    crash_env = pepnet::NewCrashAtEnv(pepnet::Env::Default(), FLAGS_crash_at, &st);
    if (!crash_env) {
      fprintf(stderr, "pepnet_coord: %s\n", st.ToString().c_str());
      return 1;
    }
    o.env = crash_env.get();
  }
  st = pepnet::LoadSecretAndTls(FLAGS_secret_file, &o.secret);
  if (st.ok()) st = pepnet::ParseServerList(FLAGS_servers, &o.servers);
  pepnet::ProcessStatus status;
  o.status = &status;
  std::unique_ptr<pepnet::AdminEndpoints> admin;
  if (st.ok()) {
    st = pepnet::AdminEndpoints::StartFromFlags("pepnet_coord", FLAGS_host, o.secret,
                                                pepnet::HooksFor("coordinator", &status), &admin);
  }
  if (admin) o.admin_port = admin->port();
  if (st.ok()) st = pepnet::RunCoordinator(o);
  if (!st.ok()) {
    fprintf(stderr, "pepnet_coord: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
