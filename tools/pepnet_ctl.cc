// pepnet_ctl: operator commands against running shard servers.
//
//   pepnet_ctl stats --servers=h:p,h:p [--json]
#include <gflags/gflags.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "common/ps_client.h"
#include "common/stats_format.h"
#include "proto/ps.pb.h"

DEFINE_string(servers, "", "Shard servers, host:port in shard order, comma-separated.");
DEFINE_bool(json, false, "Print one line of JSON instead of a table.");
DEFINE_int32(timeout_ms, 10000, "Give up on a shard after this long.");

namespace {

int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_ctl: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("pepnet_ctl stats --servers=host:port[,host:port...] [--json]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc != 2 || strcmp(argv[1], "stats") != 0) {
    return Fail("usage: pepnet_ctl stats --servers=host:port[,host:port...] [--json]");
  }
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
