// pepnet_bench_ps: pull/push throughput and memory per row of GSET shard servers.
//
// With no --servers it starts one pepnet_ps of its own (16-dim rows, per-row AdaGrad)
// on a free loopback port and drives it. Requests hold --keys_per_request distinct keys
// drawn Zipf-like from a --universe of keys; all requests are generated before timing.
// With --tls every connection runs inside TLS (docs/security.md); for a server of its own
// it makes a throwaway CA, certificate and secret unless the flags name them.
// The last line printed is JSON.
#include <gflags/gflags.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <random>
#include <thread>
#include <unordered_set>

#include "common/hash.h"
#include "common/http_get.h"
#include "common/ps_client.h"
#include "common/stats.h"
#include "common/subprocess.h"
#include "common/tls_flags.h"
#include "proto/ps.pb.h"

DEFINE_string(servers, "", "Running shard servers (h:p,h:p); empty starts one of our own.");
DEFINE_string(secret_file, "",
              "The cluster's shared secret, a file only its owner may read (docs/security.md); "
              "given to the server started here too; empty = none.");
DEFINE_uint64(universe, 1000000, "Number of distinct keys requests are drawn from.");
DEFINE_double(zipf, 0.99, "Zipf exponent of key popularity (0 = uniform).");
DEFINE_int32(keys_per_request, 16384, "Distinct keys per request.");
DEFINE_int32(requests, 128, "Distinct requests generated before timing.");
DEFINE_int32(rounds, 8, "Timed passes over all requests, for pull and for push.");
DEFINE_int32(repeats, 3, "Times the pull and push phases are measured; the median is reported.");
DEFINE_int32(inflight, 8, "Requests kept in flight.");
DEFINE_int32(connections, 2, "Connections per shard.");
DEFINE_int32(server_threads, 2, "--threads of the server started here.");
DEFINE_uint32(dim, 16, "Row dim of the server started here (slot 0).");
DEFINE_bool(fresh_keys, false,
            "Every request holds keys never sent before (a flood of new IDs) instead of "
            "cycling the pre-generated requests; --universe and --zipf are then unused.");
DEFINE_uint64(memory_limit_bytes, 0,
              "--memory_limit_bytes of the server started here (0 = none); with a limit under "
              "the universe's size every phase evicts steadily.");
DEFINE_uint64(seed, 1, "Seed of the key and gradient generator.");
DEFINE_uint64(fill_rows, 0,
              "Rows created before timing (keys of ranks 0..N-1), to measure on a big table.");
DEFINE_int32(scrape_ms, 0,
             "Scrape the started server's /metrics every this many ms while the pulls and "
             "pushes are timed (0: never); reports the scrapes' times and the longest a "
             "stats read held a table partition.");
DEFINE_bool(tls, false,
            "Every connection inside TLS: what encryption costs the request path. With no "
            "--tls_cert (and no --secret_file) a throwaway CA, certificate (and secret) are "
            "made for the server started here.");
DEFINE_bool(durable, false,
            "The server started here keeps a data dir (--data_dir, under the temporary "
            "folder): what storage costs the request path.");

namespace {

using Clock = std::chrono::steady_clock;

int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_bench_ps: %s\n", message.c_str());
  return 1;
}

// Draws ranks 0..n-1 with P(r) proportional to 1/(r+1)^s by inverting a tabulated CDF.
class ZipfSampler {
 public:
  ZipfSampler(uint64_t n, double s) : cdf_(n) {
    double sum = 0;
    for (uint64_t r = 0; r < n; ++r) {
      sum += s == 0 ? 1.0 : std::pow(double(r + 1), -s);
      cdf_[r] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  uint64_t operator()(std::mt19937_64& rng) {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return std::min<uint64_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin(),
                              cdf_.size() - 1);
  }

 private:
  std::vector<double> cdf_;
};

// Key of slot 0 for a popularity rank.
uint64_t KeyOfRank(uint64_t rank, uint32_t slot_bits) {
  return pepnet::MakeFeatureKey(0, pepnet::Mix64(rank), slot_bits);
}

struct Phase {
  double seconds = 0;
  uint64_t rows = 0;
};

template <typename Issue>
pepnet::Status RunPipelined(int total, Issue issue, pepnet::PsClient* client, Phase* phase) {
  std::deque<pepnet::PsClient::Ticket> tickets;
  const auto start = Clock::now();
  for (int i = 0; i < total; ++i) {
    if (static_cast<int>(tickets.size()) >= FLAGS_inflight) {
      PEPNET_RETURN_IF_ERROR(client->Wait(tickets.front()));
      tickets.pop_front();
    }
    tickets.push_back(issue(i));
  }
  while (!tickets.empty()) {
    PEPNET_RETURN_IF_ERROR(client->Wait(tickets.front()));
    tickets.pop_front();
  }
  phase->seconds = std::chrono::duration<double>(Clock::now() - start).count();
  phase->rows = uint64_t(total) * FLAGS_keys_per_request;
  return pepnet::Status::OK();
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("pepnet_bench_ps [--servers=h:p,h:p] [--universe=N --zipf=S ...]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_keys_per_request < 1 || uint64_t(FLAGS_keys_per_request) > FLAGS_universe) {
    return Fail("--keys_per_request must be in [1, --universe]");
  }
  if (FLAGS_zipf < 0) return Fail("--zipf must be >= 0");
  if (FLAGS_requests < 1 || FLAGS_rounds < 1 || FLAGS_inflight < 1 || FLAGS_repeats < 1) {
    return Fail("--requests, --rounds, --inflight and --repeats must be >= 1");
  }

  // A server of our own unless told where the servers are.
  pepnet::TlsOptions tls = pepnet::TlsOptionsFromFlags();
  pepnet::Subprocess server;
  std::string servers = FLAGS_servers;
  std::string tmpdir;
  uint16_t admin_port = 0;
  if (servers.empty()) {
    char tmpl[] = "/tmp/pepnet_bench_ps.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return Fail("cannot create a temporary directory");
    tmpdir = tmpl;
    const std::string config = tmpdir + "/table.pbtxt";
    std::ofstream(config) << "slot { id: 0 dim: " << FLAGS_dim << " }\n";
    const std::string port_file = tmpdir + "/port";
    std::vector<std::string> argv = {
        pepnet::ExecutableDir() + "/pepnet_ps",
        "--port=0",
        "--host=127.0.0.1",
        "--port_file=" + port_file,
        "--table_config=" + config,
        "--threads=" + std::to_string(FLAGS_server_threads),
        "--memory_limit_bytes=" + std::to_string(FLAGS_memory_limit_bytes),
        "--admin_port_file=" + tmpdir + "/admin_port"};
    if (FLAGS_durable) argv.push_back("--data_dir=" + tmpdir + "/data");
    if (FLAGS_tls && FLAGS_secret_file.empty()) {
      FLAGS_secret_file = tmpdir + "/secret";
      std::ofstream(FLAGS_secret_file)
          << "throwaway secret of pepnet_bench_ps " << getpid() << "\n";
      chmod(FLAGS_secret_file.c_str(), 0600);
    }
    if (FLAGS_tls && !tls.enabled()) {
      pepnet::Subprocess keys;
      int code = -1;
      pepnet::Status st = keys.Start(
          {pepnet::ExecutableDir() + "/pepnet_ctl", "tls_keys", "--out_dir=" + tmpdir + "/tls"},
          tmpdir + "/tls_keys.log");
      if (st.ok()) st = keys.Wait(30000, &code);
      if (!st.ok() || code != 0) return Fail("pepnet_ctl tls_keys failed; see " + tmpdir);
      tls.cert_file = tmpdir + "/tls/cert.pem";
      tls.key_file = tmpdir + "/tls/key.pem";
      tls.ca_file = tmpdir + "/tls/ca.pem";
    }
    if (!FLAGS_secret_file.empty()) argv.push_back("--secret_file=" + FLAGS_secret_file);
    if (tls.enabled()) {
      argv.insert(argv.end(), {"--tls_cert=" + tls.cert_file, "--tls_key=" + tls.key_file,
                               "--tls_ca=" + tls.ca_file});
    }
    pepnet::Status st = server.Start(argv, tmpdir + "/server.log");
    if (!st.ok()) return Fail(st.ToString());
    uint16_t port;
    st = pepnet::WaitForPortFile(port_file, 10000, &server, &port);
    if (!st.ok()) return Fail(st.ToString() + " (see " + tmpdir + "/server.log)");
    servers = "127.0.0.1:" + std::to_string(port);
    st = pepnet::WaitForPortFile(tmpdir + "/admin_port", 10000, &server, &admin_port);
    if (!st.ok()) return Fail(st.ToString());
  }
  if (FLAGS_scrape_ms > 0 && admin_port == 0) {
    return Fail("--scrape_ms scrapes the server this program starts: no --servers");
  }

  pepnet::ClientOptions options;
  pepnet::Status st = pepnet::ParseServerList(servers, &options.servers);
  if (st.ok()) st = pepnet::Secret::Load(FLAGS_secret_file, &options.secret);
  if (st.ok()) st = pepnet::AttachTls(tls, &options.secret);
  if (st.ok() && FLAGS_tls && options.secret.tls() == nullptr) {
    st = pepnet::Status::InvalidArgument(
        "--tls with --servers needs --tls_cert, --tls_key and --tls_ca");
  }
  if (!st.ok()) return Fail(st.ToString());
  options.connections_per_shard = FLAGS_connections;
  std::unique_ptr<pepnet::PsClient> client;
  st = pepnet::PsClient::Connect(options, &client);
  if (!st.ok()) return Fail(st.ToString());
  const uint32_t dim = client->DimOf(KeyOfRank(0, client->slot_bits()));
  if (dim == 0) return Fail("the servers have no slot 0");

  printf("generating %d requests of %d distinct keys (universe %llu, zipf %.2f)\n", FLAGS_requests,
         FLAGS_keys_per_request, (unsigned long long)FLAGS_universe, FLAGS_zipf);
  std::mt19937_64 rng(FLAGS_seed);
  ZipfSampler zipf(FLAGS_universe, FLAGS_zipf);
  std::vector<std::vector<uint64_t>> requests(FLAGS_requests);
  std::unordered_set<uint64_t> seen;
  for (auto& keys : requests) {
    seen.clear();
    while (keys.size() < size_t(FLAGS_keys_per_request)) {
      const uint64_t rank = zipf(rng);
      if (seen.insert(rank).second) keys.push_back(KeyOfRank(rank, client->slot_bits()));
    }
  }
  const size_t n = FLAGS_keys_per_request;
  std::vector<float> grads(n * dim), shows(n, 1.0f), clicks(n);
  std::normal_distribution<float> normal(0, 0.01f);
  for (float& g : grads) g = normal(rng);
  for (size_t i = 0; i < n; ++i) clicks[i] = (i % 10 == 0) ? 1.0f : 0.0f;
  std::vector<std::vector<float>> values(FLAGS_inflight);

  uint64_t next_fresh = FLAGS_universe;  // past every pre-generated rank
  std::vector<uint64_t> fresh(n);
  auto keys_for = [&](int i) -> const uint64_t* {
    if (!FLAGS_fresh_keys) return requests[i % requests.size()].data();
    for (uint64_t& k : fresh) k = KeyOfRank(next_fresh++, client->slot_bits());
    return fresh.data();  // the client copies keys before Pull/Push return
  };
  auto pull = [&](int i) { return client->Pull(keys_for(i), n, &values[i % values.size()]); };
  auto push = [&](int i) {
    return client->Push(keys_for(i), n, grads.data(), shows.data(), clicks.data());
  };
  for (uint64_t first = 0; first < FLAGS_fill_rows; first += 65536) {
    std::vector<uint64_t> keys;
    for (uint64_t r = first; r < std::min<uint64_t>(FLAGS_fill_rows, first + 65536); ++r) {
      keys.push_back(KeyOfRank(r, client->slot_bits()));
    }
    std::vector<float> out;
    if (!(st = client->Wait(client->Pull(keys.data(), keys.size(), &out))).ok()) {
      return Fail("filling the table: " + st.ToString());
    }
  }
  if (FLAGS_fill_rows > 0) {
    printf("filled the table with %llu rows\n", (unsigned long long)FLAGS_fill_rows);
  }
  // Scrapes while the phases run, each timed from the request to the last byte.
  std::atomic<bool> scraping{FLAGS_scrape_ms > 0};
  std::vector<double> scrape_ms;
  std::string scrape_error;
  // Joined on every way out of main, a failed phase included.
  struct Joiner {
    std::atomic<bool>* running;
    std::thread thread;
    ~Joiner() {
      running->store(false);
      if (thread.joinable()) thread.join();
    }
  } scraper{&scraping, {}};
  scraper.thread = std::thread([&] {
    while (scraping.load()) {
      const auto start = std::chrono::steady_clock::now();
      int code = 0;
      std::string body;
      const pepnet::Status s = pepnet::HttpGet(admin_port, "/metrics", 10000, &code, &body);
      if (!s.ok() || code != 200) {
        scrape_error = s.ok() ? "HTTP " + std::to_string(code) : s.ToString();
        return;
      }
      scrape_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
      std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_scrape_ms));
    }
  });
  Phase warm;
  const int total = FLAGS_requests * FLAGS_rounds;
  if (!(st = RunPipelined(FLAGS_requests, pull, client.get(), &warm)).ok()) {
    return Fail(st.ToString());
  }
  // Pull and push phases alternate; each rate is the median over the repeats, which
  // damps the minute-to-minute speed changes of a shared machine.
  std::vector<double> pull_rates, push_rates;
  for (int r = 0; r < FLAGS_repeats; ++r) {
    Phase pulls, pushes;
    if (!(st = RunPipelined(total, pull, client.get(), &pulls)).ok() ||
        !(st = RunPipelined(total, push, client.get(), &pushes)).ok()) {
      return Fail(st.ToString());
    }
    pull_rates.push_back(pulls.rows / pulls.seconds);
    push_rates.push_back(pushes.rows / pushes.seconds);
  }
  std::sort(pull_rates.begin(), pull_rates.end());
  std::sort(push_rates.begin(), push_rates.end());
  scraping = false;
  scraper.thread.join();
  if (!scrape_error.empty()) return Fail("scraping /metrics: " + scrape_error);
  std::sort(scrape_ms.begin(), scrape_ms.end());

  std::vector<pepnet::proto::ServerStats> stats;
  st = client->Stats(&stats);
  if (!st.ok()) return Fail(st.ToString());
  const pepnet::StatSet cluster = pepnet::ShardTotal(stats);
  const uint64_t rows = cluster.Value("pepnet_table_rows");
  const uint64_t bytes = cluster.Value("pepnet_table_used_bytes");
  const uint64_t payload =
      cluster.Value("pepnet_table_category_bytes", {{"category", "payload"}}) +
      cluster.Value("pepnet_table_category_bytes", {{"category", "optimizer"}});
  const uint64_t deleted = cluster.Value("pepnet_table_deleted_rows");
  const uint64_t max_bytes = cluster.Value("pepnet_table_max_used_bytes");
  const uint64_t limit = cluster.Value("pepnet_table_memory_limit_bytes");
  const uint64_t worst_pause_ns = 1e9 * cluster.Value("pepnet_table_worst_new_row_pause_seconds");
  const double stats_pause_ms = 1e3 * cluster.Value("pepnet_table_worst_stats_pause_seconds");
  if (!scrape_ms.empty()) {
    printf(
        "scrapes of /metrics: %zu, %.2f ms median, %.2f ms worst; a stats read held a "
        "partition for at most %.3f ms\n",
        scrape_ms.size(), scrape_ms[scrape_ms.size() / 2], scrape_ms.back(), stats_pause_ms);
  }
  const double pull_rps = pull_rates[pull_rates.size() / 2];
  const double push_rps = push_rates[push_rates.size() / 2];
  // Bytes moved per row: pull sends a key and gets a row; push sends key, row, show, click.
  const double pull_mbps = pull_rps * (8 + 4.0 * dim) / 1e6;
  const double push_mbps = push_rps * (8 + 4.0 * dim + 8) / 1e6;
  const double bytes_per_row = rows ? double(bytes) / rows : 0;
  const double payload_per_row = rows ? double(payload) / rows : 0;
  printf("warm-up pull (creates rows): %.2fM rows/s\n", warm.rows / warm.seconds / 1e6);
  printf(
      "pull: %.2fM rows/s (median of %d; min %.2fM, max %.2fM), %.0f MB/s payload over the "
      "wire\n",
      pull_rps / 1e6, FLAGS_repeats, pull_rates.front() / 1e6, pull_rates.back() / 1e6, pull_mbps);
  printf(
      "push: %.2fM rows/s (median of %d; min %.2fM, max %.2fM), %.0f MB/s payload over the "
      "wire (AdaGrad applied)\n",
      push_rps / 1e6, FLAGS_repeats, push_rates.front() / 1e6, push_rates.back() / 1e6, push_mbps);
  printf("table: %llu rows, %.1f bytes/row (payload+optimizer %.1f, target <= %.1f)\n",
         (unsigned long long)rows, bytes_per_row, payload_per_row, 1.10 * (payload_per_row + 16));
  printf(
      "memory: limit %llu, used %llu, max used %llu; %llu rows deleted; worst eviction pause "
      "%.3f ms\n",
      (unsigned long long)limit, (unsigned long long)bytes, (unsigned long long)max_bytes,
      (unsigned long long)deleted, worst_pause_ns / 1e6);
  printf(
      "{\"pull_rows_per_s\": %.0f, \"push_rows_per_s\": %.0f, \"pull_mb_per_s\": %.1f, "
      "\"push_mb_per_s\": %.1f, \"payload_bytes_per_row\": %.2f, \"bytes_per_row\": %.2f, "
      "\"rows\": %llu, \"memory_limit_bytes\": %llu, \"max_bytes_used\": %llu, "
      "\"rows_deleted\": %llu, \"worst_eviction_pause_ms\": %.3f, \"tls\": %s, "
      "\"scrapes\": %zu, \"scrape_max_ms\": %.2f, \"stats_worst_pause_ms\": %.3f}\n",
      pull_rps, push_rps, pull_mbps, push_mbps, payload_per_row, bytes_per_row,
      (unsigned long long)rows, (unsigned long long)limit, (unsigned long long)max_bytes,
      (unsigned long long)deleted, worst_pause_ns / 1e6, options.secret.tls() ? "true" : "false",
      scrape_ms.size(), scrape_ms.empty() ? 0.0 : scrape_ms.back(), stats_pause_ms);
  client.reset();
  if (server.running()) {
    server.Signal(SIGTERM);
    int code;
    if (!server.Wait(10000, &code).ok()) server.Signal(SIGKILL);
  }
  if (!tmpdir.empty()) std::system(("rm -rf '" + tmpdir + "'").c_str());
  return 0;
}
