// pepnet_ctl: operator commands against running shard servers.
//
//   pepnet_ctl stats --servers=h:p,h:p [--json]
//   pepnet_ctl table_config --model_config=FILE [--seed=N]   (the servers' table config)
//   pepnet_ctl free_ports --count=N [--host=H]                (N ports free now, one a line)
//   pepnet_ctl tls_keys --out_dir=DIR [--days=N]              (a cluster's CA and certificate)
//   pepnet_ctl report --run_dir=DIR [--out=FILE]              (one HTML page of a run's metrics)
//   pepnet_ctl serve_token --secret_file=FILE                 (the bearer token of pepnet_serve)
#include <arpa/inet.h>
#include <gflags/gflags.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "common/auth.h"
#include "common/ps_client.h"
#include "common/stats_format.h"
#include "common/tls_flags.h"
#include "proto/model_config.pb.h"
#include "proto/ps.pb.h"
#include "ps/table_config.h"
#include "report/run_report.h"
#include "tools/tls_keys.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

DEFINE_string(servers, "", "Shard servers, host:port in shard order, comma-separated.");
DEFINE_string(secret_file, "",
              "The cluster's shared secret, a file only its owner may read (docs/security.md); "
              "empty = none.");
DEFINE_bool(json, false, "Print one line of JSON instead of a table.");
DEFINE_int32(timeout_ms, 10000, "Give up on a shard after this long.");
DEFINE_string(model_config, "", "table_config: the model config whose slots the table holds.");
DEFINE_uint64(seed, 1, "table_config: the table's row initialization seed.");
DEFINE_int32(count, 1, "free_ports: how many ports.");
DEFINE_string(host, "127.0.0.1", "free_ports: the address they must be free on.");
DEFINE_string(out_dir, "", "tls_keys: where to write ca.pem, ca-key.pem, cert.pem, key.pem.");
DEFINE_int32(days, 365, "tls_keys: how long the certificates are valid.");
DEFINE_string(run_dir, "", "report: the run folder whose metrics.jsonl the page shows.");
DEFINE_string(out, "", "report: where to write the page; empty = <run_dir>/report.html.");
DEFINE_int32(partition_bits, 5,
             "table_config: 2^N independently locked partitions per shard (0-8); a small "
             "--memory_limit_bytes needs few.");

namespace {

int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_ctl: %s\n", message.c_str());
  return 1;
}

// Ports the kernel gives out now, all bound at once so that they differ; they are free
// again when this returns (a launcher gives them to processes that keep them for good).
int FreePorts() {
  if (FLAGS_count < 1 || FLAGS_count > 1000) return Fail("--count must be in [1, 1000]");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (inet_pton(AF_INET, FLAGS_host.c_str(), &addr.sin_addr) != 1) {
    return Fail("--host=" + FLAGS_host + " is not an IPv4 address");
  }
  std::vector<int> fds;
  std::string out;
  for (int i = 0; i < FLAGS_count; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in bound = addr;
    socklen_t len = sizeof(bound);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
      return Fail("cannot bind a port on " + FLAGS_host + ": " + strerror(errno));
    }
    fds.push_back(fd);
    out += std::to_string(ntohs(bound.sin_port)) + "\n";
  }
  for (int fd : fds) close(fd);
  printf("%s", out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage =
      "usage: pepnet_ctl stats --servers=host:port[,host:port...] [--json]\n"
      "       pepnet_ctl table_config --model_config=FILE [--seed=N] [--partition_bits=N]\n"
      "       pepnet_ctl free_ports --count=N [--host=H]\n"
      "       pepnet_ctl tls_keys --out_dir=DIR [--days=N]\n"
      "       pepnet_ctl report --run_dir=DIR [--out=FILE]\n"
      "       pepnet_ctl serve_token --secret_file=FILE";
  gflags::SetUsageMessage(usage);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc == 2 && strcmp(argv[1], "free_ports") == 0) return FreePorts();
  if (argc == 2 && strcmp(argv[1], "tls_keys") == 0) {
    if (FLAGS_out_dir.empty()) return Fail("tls_keys needs --out_dir");
    pepnet::Status st = pepnet::MakeTlsKeys(FLAGS_out_dir, FLAGS_days);
    if (!st.ok()) return Fail(st.ToString());
    printf(
        "wrote %s/{ca.pem,ca-key.pem,cert.pem,key.pem}: give every process --tls_cert=%s/cert.pem "
        "--tls_key=%s/key.pem --tls_ca=%s/ca.pem; keep ca-key.pem with the operator\n",
        FLAGS_out_dir.c_str(), FLAGS_out_dir.c_str(), FLAGS_out_dir.c_str(), FLAGS_out_dir.c_str());
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "report") == 0) {
    if (FLAGS_run_dir.empty()) return Fail("report needs --run_dir");
    const std::string out = FLAGS_out.empty() ? FLAGS_run_dir + "/report.html" : FLAGS_out;
    pepnet::Status st = pepnet::WriteRunReport(pepnet::Env::Default(), FLAGS_run_dir, out);
    if (!st.ok()) return Fail("report: " + st.ToString());
    printf("wrote %s\n", out.c_str());
    return 0;
  }
  if (argc == 2 && strcmp(argv[1], "serve_token") == 0) {
    if (FLAGS_secret_file.empty()) return Fail("serve_token needs --secret_file");
    pepnet::Secret secret;
    pepnet::Status st = pepnet::Secret::Load(FLAGS_secret_file, &secret);
    if (!st.ok()) return Fail(st.message());
    printf("%s\n", pepnet::ServeToken(secret).c_str());
    return 0;
  }
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
  st = pepnet::LoadSecretAndTls(FLAGS_secret_file, &options.secret);
  if (!st.ok()) return Fail(st.message());
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
