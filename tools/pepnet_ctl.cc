// pepnet_ctl: operator commands against running shard servers.
//
//   pepnet_ctl stats --servers=h:p,h:p [--json]
//   pepnet_ctl table_config --model_config=FILE [--seed=N]   (the servers' table config)
#include <gflags/gflags.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "common/ps_client.h"
#include "common/stats_format.h"
#include "proto/model_config.pb.h"
#include "proto/ps.pb.h"
#include "ps/table_config.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

DEFINE_string(servers, "", "Shard servers, host:port in shard order, comma-separated.");
DEFINE_bool(json, false, "Print one line of JSON instead of a table.");
DEFINE_int32(timeout_ms, 10000, "Give up on a shard after this long.");
DEFINE_string(model_config, "", "table_config: the model config whose slots the table holds.");
DEFINE_uint64(seed, 1, "table_config: the table's row initialization seed.");
DEFINE_int32(partition_bits, 5,
             "table_config: 2^N independently locked partitions per shard (0-8); a small "
             "--memory_limit_bytes needs few.");

namespace {

int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_ctl: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage =
      "usage: pepnet_ctl stats --servers=host:port[,host:port...] [--json]\n"
      "       pepnet_ctl table_config --model_config=FILE [--seed=N] [--partition_bits=N]";
  gflags::SetUsageMessage(usage);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc == 2 && strcmp(argv[1], "table_config") == 0) {
    pepnet::proto::ModelConfig model;
    pepnet::Status st = pepnet::LoadModelConfigFile(FLAGS_model_config, &model);
    if (!st.ok()) return Fail(st.ToString());
    pepnet::TableOptions options = pepnet::TableOptionsFor(model, FLAGS_seed);
    options.partition_bits = static_cast<uint32_t>(FLAGS_partition_bits);
    if (FLAGS_partition_bits < 0 || !(st = pepnet::ValidateTableOptions(options)).ok()) {
      return Fail("--partition_bits=" + std::to_string(FLAGS_partition_bits) + ": " +
                  (FLAGS_partition_bits < 0 ? "must be >= 0" : st.message()));
    }
    printf("%s", pepnet::FormatTableConfig(options).c_str());
    return 0;
  }
  if (argc != 2 || strcmp(argv[1], "stats") != 0) return Fail(usage);
  pepnet::ClientOptions options;
  pepnet::Status st = pepnet::ParseServerList(FLAGS_servers, &options.servers);
  if (!st.ok()) return Fail("--servers: " + st.message());
  options.connections_per_shard = 1;
  options.timeout_ms = FLAGS_timeout_ms;
  options.connect_timeout_ms = FLAGS_timeout_ms;
  std::unique_ptr<pepnet::PsClient> client;
  st = pepnet::PsClient::Connect(options, &client);
  if (!st.ok()) return Fail(st.ToString());
  std::vector<pepnet::proto::ServerStats> stats;
  st = client->Stats(&stats);
  if (!st.ok()) return Fail(st.ToString());
  if (FLAGS_json) {
    printf("%s\n", pepnet::FormatStatsJson(stats).c_str());
  } else {
    printf("%s", pepnet::FormatStatsTable(stats).c_str());
  }
  return 0;
}
