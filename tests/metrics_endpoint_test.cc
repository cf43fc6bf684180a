// The admin endpoints of real processes: a shard's /metrics says what `pepnet_ctl stats
// --json` says after known pushes (one registry feeds both); every process of a real run
// (shard, coordinator, worker) answers /healthz, /readyz, /statusz and /metrics, and its
// exposition passes `promtool check metrics`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/ps_client.h"
#include "common/subprocess.h"
#include "tests/http_util.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

// "name{labels}" -> value of every sample line.
std::map<std::string, double> ParseExposition(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

uint16_t ReadPort(const std::string& file) {
  const std::string text = testing::ReadFile(file);
  return text.empty() ? 0 : static_cast<uint16_t>(std::stoi(text));
}

TEST(MetricsEndpointTest, ShardMetricsSayWhatCtlStatsSays) {
  testing::TempDir dir;
  const std::string config = dir.File("t.pbtxt");
  testing::WriteFile(config, "slot { id: 1 dim: 16 }\nslot { id: 2 dim: 8 }\n");
  testing::ServerProcess shard;
  const std::string admin_file = dir.File("admin.port");
  ASSERT_TRUE(
      shard.Start(dir, config, 0, 1, {"--admin_port=0", "--admin_port_file=" + admin_file}).ok());
  uint16_t admin = 0;
  ASSERT_TRUE(WaitForPortFile(admin_file, 20000, &shard.process(), &admin).ok());

  ClientOptions options;
  ASSERT_TRUE(ParseServerList(shard.address(), &options.servers).ok());
  std::unique_ptr<PsClient> client;
  ASSERT_TRUE(PsClient::Connect(options, &client).ok());
  std::vector<uint64_t> keys;
  for (int i = 0; i < 3000; ++i) keys.push_back(testing::TestKey(1 + i % 2, i));
  std::vector<float> values;
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(client->Wait(client->Pull(keys.data(), keys.size(), &values)).ok());
  }
  std::vector<float> grads(values.size(), 0.01f), ones(keys.size(), 1.0f);
  ASSERT_TRUE(
      client->Wait(client->Push(keys.data(), keys.size(), grads.data(), ones.data(), ones.data()))
          .ok());

  // Nothing moves between the two reads: no client sends anything now.
  std::string json_text;
  ASSERT_EQ(testing::RunCommand({testing::BinDir() + "/pepnet_ctl", "stats",
                                 "--servers=" + shard.address(), "--json"},
                                dir, &json_text),
            0)
      << json_text;
  const testing::Reply scrape = testing::Get(admin, "/metrics");
  ASSERT_EQ(scrape.status, 200) << scrape.head;
  EXPECT_NE(scrape.head.find("Content-Type: text/plain; version=0.0.4"), std::string::npos)
      << scrape.head;
  EXPECT_EQ(testing::PromtoolProblems(dir, scrape.body, "shard"), "") << scrape.body;

  const nlohmann::json stats = nlohmann::json::parse(json_text).at("shards").at(0);
  std::map<std::string, double> m = ParseExposition(scrape.body);
  EXPECT_EQ(stats.at("rows").get<double>(), 3000);
  const std::pair<const char*, const char*> same[] = {
      {"rows", "pepnet_table_rows"},
      {"rows_created", "pepnet_table_created_rows"},
      {"bytes_used", "pepnet_table_used_bytes"},
      {"memory_limit_bytes", "pepnet_table_memory_limit_bytes"},
      {"payload_bytes", "pepnet_table_category_bytes{category=\"payload\"}"},
      {"optimizer_bytes", "pepnet_table_category_bytes{category=\"optimizer\"}"},
      {"pull_requests", "pepnet_ps_requests_total{type=\"pull\"}"},
      {"pull_rows", "pepnet_ps_rows_total{type=\"pull\"}"},
      {"push_requests", "pepnet_ps_requests_total{type=\"push\"}"},
      {"push_rows", "pepnet_ps_rows_total{type=\"push\"}"},
      {"bad_requests", "pepnet_ps_bad_requests_total"},
      {"pass", "pepnet_table_pass"},
  };
  for (const auto& [key, metric] : same) {
    ASSERT_TRUE(m.count(metric)) << metric << "\n" << scrape.body;
    EXPECT_EQ(stats.at(key).get<double>(), m[metric]) << key << " / " << metric;
  }
  EXPECT_EQ(m["pepnet_ps_rows_total{type=\"pull\"}"], 9000);
  EXPECT_EQ(m["pepnet_ps_rows_total{type=\"push\"}"], 3000);
  // 1500 rows of dim 16 and 1500 of dim 8: payload = keys + floats, exactly.
  EXPECT_EQ(m["pepnet_table_category_bytes{category=\"payload\"}"],
            1500.0 * (8 + 64) + 1500.0 * (8 + 32));
  for (const nlohmann::json& slot : stats.at("slots")) {
    const std::string label = "{slot=\"" + std::to_string(slot.at("slot").get<int>()) + "\"}";
    EXPECT_EQ(slot.at("rows").get<double>(), m["pepnet_table_slot_rows" + label]) << label;
    EXPECT_EQ(slot.at("rows").get<double>(), 1500) << label;
    EXPECT_EQ(slot.at("bytes").get<double>(), m["pepnet_table_slot_bytes" + label]) << label;
  }
  // Every request was timed: the histograms count them (the STATS of pepnet_ctl too).
  EXPECT_EQ(m["pepnet_ps_request_duration_seconds_count{type=\"pull\"}"], 3);
  EXPECT_EQ(m["pepnet_ps_request_duration_seconds_count{type=\"push\"}"], 1);
  EXPECT_EQ(m["pepnet_ps_request_duration_seconds_bucket{type=\"push\",le=\"+Inf\"}"], 1);
  EXPECT_GE(m["pepnet_ps_request_duration_seconds_count{type=\"stats\"}"], 1);
  EXPECT_EQ(m["pepnet_build_info{program=\"pepnet_ps\",role=\"shard 0/1\",version=\"0.1.0\"}"], 1);
}

TEST(MetricsEndpointTest, EveryProcessServesItsEndpointsDuringARun) {
  testing::TempDir dir;
  const std::string data = dir.File("data");
  testing::GenerateData(dir, data, 0, 1, 3000);
  // Two passes; the second's folder appears only after the first is scraped, so every
  // process is still up.
  Subprocess run;
  const std::vector<std::string> command = {
      testing::SourceDir() + "/deploy/local/run_cluster.sh",
      "--config=" + testing::SourceDir() + "/configs/demo.pbtxt",
      "--pass_root=" + data,
      "--servers=1",
      "--workers=1",
      "--max_passes=2",
      "--idle_timeout=120",
      "--memory_limit_bytes=0",
      "--run_dir=" + dir.File("run"),
      "--data_dir=" + dir.File("state")};
  ASSERT_TRUE(run.Start(command, dir.File("launcher.log")).ok());
  ASSERT_TRUE(testing::LogEventually(dir.File("run/coord.out"), "pass 1 (", 120000))
      << testing::ReadFile(dir.File("launcher.log"));

  struct Process {
    const char *name, *figure, *role;
  };
  const Process processes[] = {{"coord", "pepnet_coord_pass_auc{task=\"like\"}", "coordinator"},
                               {"worker-0", "pepnet_worker_pass_samples", "worker 0/1"},
                               {"ps-0", "pepnet_table_rows", "shard 0/1"}};
  for (const auto& [name, figure, role] : processes) {
    SCOPED_TRACE(name);
    const uint16_t port = ReadPort(dir.File(std::string("run/") + name + ".admin_port"));
    ASSERT_NE(port, 0);
    // Every endpoint of every long-running process, while the run waits for its next pass.
    EXPECT_EQ(testing::Get(port, "/healthz").body, "ok\n");
    const testing::Reply ready = testing::Get(port, "/readyz");
    EXPECT_EQ(ready.status, 200) << ready.body;
    const testing::Reply status = testing::Get(port, "/statusz");
    EXPECT_EQ(status.status, 200);
    EXPECT_NE(status.body.find(std::string("<td>role</td><td>") + role), std::string::npos)
        << status.body;
    EXPECT_EQ(testing::Get(port, "/no-such-path").status, 404);
    // A worker sets its figures once the coordinator's reply to its pass end arrives,
    // after the summary line: poll until the figure is there.
    testing::Reply r;
    for (int attempt = 0; attempt < 500; ++attempt) {
      r = testing::Get(port, "/metrics");
      if (r.status != 200 || r.body.find(std::string(figure) + " ") != std::string::npos) break;
      usleep(20000);
    }
    ASSERT_EQ(r.status, 200) << r.head;
    EXPECT_EQ(testing::PromtoolProblems(dir, r.body, name), "") << r.body;
    const std::map<std::string, double> m = ParseExposition(r.body);
    ASSERT_TRUE(m.count(figure)) << figure << "\n" << r.body;
    if (std::string(name) == "coord") {
      EXPECT_EQ(m.at("pepnet_coord_pass"), 1);
      EXPECT_EQ(m.at("pepnet_coord_pass_samples"), 3000 * 2);  // 2 files a pass
      EXPECT_GT(m.at("pepnet_coord_pass_auc{task=\"like\"}"), 0.5);
      EXPECT_TRUE(m.count("pepnet_coord_pass_domain_logloss{task=\"like\",domain=\"0\"}"));
      EXPECT_TRUE(m.count("pepnet_coord_run_auc{task=\"like\"}"));
      EXPECT_TRUE(m.count("pepnet_coord_publish_seconds"));
    } else if (std::string(name) == "worker-0") {
      EXPECT_EQ(m.at("pepnet_worker_pass"), 1);
      EXPECT_EQ(m.at("pepnet_worker_pass_samples"), 3000 * 2);
    } else {
      EXPECT_GT(m.at("pepnet_table_rows"), 0);
    }
  }
  // Scrapes of the shard all through the second pass and its commit, which holds the
  // table alone: each one answers at once, without the table's figures then.
  const uint16_t shard_admin = ReadPort(dir.File("run/ps-0.admin_port"));
  testing::GenerateData(dir, data, 1, 1, 3000);
  int scrapes = 0;
  while (run.running()) {
    const testing::Reply r = testing::Get(shard_admin, "/metrics");
    if (r.status == 0) break;  // the shard stopped at the end of the run
    ASSERT_EQ(r.status, 200) << r.head;
    const std::map<std::string, double> m = ParseExposition(r.body);
    ASSERT_TRUE(m.count("pepnet_ps_stats_busy")) << r.body;
    EXPECT_EQ(m.count("pepnet_table_rows"), m.at("pepnet_ps_stats_busy") == 0 ? 1u : 0u);
    ++scrapes;
    usleep(5000);
  }
  EXPECT_GT(scrapes, 0);
  int code = -1;
  ASSERT_TRUE(run.Wait(300000, &code).ok());
  EXPECT_EQ(code, 0) << testing::ReadFile(dir.File("launcher.log"));
}

}  // namespace
}  // namespace pepnet
