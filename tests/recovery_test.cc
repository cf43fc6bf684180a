// Durability of a whole cluster of real processes: 2 shards with data dirs (a memory limit
// that keeps evicting, a capped slot, an admitting slot), the coordinator with its record,
// workers. Any process is killed (SIGKILL) at a random moment or stopped at a named step
// of the commit or the publish, started again with the same flags, and the run finishes:
// with one worker, training is deterministic, so every published version and the final
// model (dense and every row) are bit-identical to an undisturbed run's.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <random>
#include <regex>

#include "common/ps_client.h"
#include "common/stats.h"
#include "proto/ps.pb.h"
#include "ps/table_config.h"
#include "publish/row_file.h"
#include "tests/durable_cluster.h"
#include "tests/export_util.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

using testing::ClusterSpec;
using testing::DurableCluster;
using testing::PublishedImage;

constexpr int kPasses = 3;

// The sanitizer builds run every process 5-15 times slower: they take one seed of each
// kill and a subset of the stops (the release build runs them all), which is enough for
// them to see the code that runs, and keeps the suite within its time.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

std::vector<uint32_t> Seeds(uint32_t first) {
  if (kSanitized) return {first};
  return {first, first + 1};
}

// The demo model with every memory-control policy on: a cap on items, admission of
// users at two sightings (and the demo's TTL on history IDs).
std::string ModelConfigText() {
  std::string config = testing::ReadFile(testing::SourceDir() + "/configs/demo.pbtxt");
  auto replace = [&](const std::string& from, const std::string& to) {
    const size_t at = config.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) config.replace(at, from.size(), to);
  };
  replace("slot { name: \"item\" id: 3 role: ITEM dim: 16 }",
          "slot { name: \"item\" id: 3 role: ITEM dim: 16 eviction { max_rows: 300 } }");
  replace("slot { name: \"user\" id: 2 role: USER dim: 16 }",
          "slot { name: \"user\" id: 2 role: USER dim: 16 eviction { admission_threshold: 2 } }");
  return config + "admission_filter_bytes: 65536\n";
}

// Data, configs and the undisturbed runs, shared by the tests of this file.
struct Fixture {
  testing::TempDir dir;
  ClusterSpec spec;
  PublishedImage reference;  // one worker
  std::vector<std::string> ref_metrics;
  double reference_seconds = 0;

  Fixture() {
    testing::WriteFile(dir.File("model.pbtxt"), ModelConfigText());
    proto::ModelConfig model;
    Status st = LoadModelConfigFile(dir.File("model.pbtxt"), &model);
    EXPECT_TRUE(st.ok()) << st.ToString();
    TableOptions table = TableOptionsFor(model, 1);
    table.partition_bits = 0;
    testing::WriteFile(dir.File("table.pbtxt"), FormatTableConfig(table));
    testing::GenerateData(dir, dir.File("data"), 0, kPasses, 5000);
    spec.model_config = dir.File("model.pbtxt");
    spec.table_config = dir.File("table.pbtxt");
    spec.memory_limit_bytes = 400000;
    for (int p = 0; p < kPasses; ++p) {
      char name[32];
      snprintf(name, sizeof(name), "/pass-%05d", p);
      spec.passes.push_back(dir.File("data") + name);
    }
    const auto start = std::chrono::steady_clock::now();
    DurableCluster cluster(dir, "reference", spec);
    cluster.StartAll();
    EXPECT_EQ(cluster.WaitDone(300000), cluster.AllZero()) << cluster.Logs();
    reference_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    reference = testing::ReadPublished(cluster.publish_dir());
    ref_metrics = cluster.DeterministicMetricLines();
    EXPECT_EQ(reference.versions.size(), size_t{kPasses});
    // The policies were at work, or the test would prove little.
    const std::string coord = cluster.CoordinatorLog();
    EXPECT_NE(coord.find("evicted"), std::string::npos) << coord;
    ExpectEvictionAndAdmission(cluster.servers());
  }

  static void ExpectEvictionAndAdmission(const std::string& servers) {
    ClientOptions options;
    EXPECT_TRUE(ParseServerList(servers, &options.servers).ok());
    std::unique_ptr<PsClient> client;
    ASSERT_TRUE(PsClient::Connect(options, &client).ok());
    std::vector<proto::ServerStats> stats;
    ASSERT_TRUE(client->Stats(&stats).ok());
    uint64_t memory = 0, cap = 0, dropped = 0;
    for (const auto& reply : stats) {
      const StatSet s = StatsFromProto(reply);
      for (const Stat& st : s.stats()) {
        if (st.name != "pepnet_table_slot_deleted_rows") continue;
        if (st.LabelValue("reason") == "memory") memory += st.value;
        if (st.LabelValue("reason") == "cap") cap += st.value;
      }
      dropped += s.Value("pepnet_admission_dropped_pushes");
      EXPECT_EQ(s.Value("pepnet_storage_committed_pass"), kPasses);
    }
    EXPECT_GT(memory, 0u) << "no eviction under the memory limit";
    EXPECT_GT(cap, 0u) << "no eviction at the cap";
    EXPECT_GT(dropped, 0u) << "admission dropped nothing";
  }
};

Fixture* fixture = nullptr;

class RecoveryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (fixture == nullptr) fixture = new Fixture;
  }
  static void TearDownTestSuite() {
    delete fixture;
    fixture = nullptr;
  }

  // A moment inside the run: a pass (the seed chooses it) and a time into it (a random
  // fraction of an undisturbed pass; at most half of the last one, so that the run is
  // still going).
  struct Moment {
    int pass;
    std::chrono::milliseconds into;
  };
  static Moment RandomMoment(uint32_t seed) {
    std::mt19937 rng(seed);
    const int pass = 1 + static_cast<int>(rng() % kPasses);
    std::uniform_real_distribution<double> at(0.05, pass == kPasses ? 0.5 : 0.95);
    const double pass_ms = fixture->reference_seconds * 1000 / kPasses;
    return {pass, std::chrono::milliseconds(static_cast<int64_t>(at(rng) * pass_ms))};
  }

  // Runs the cluster, calls `disturb` at `moment`, and checks that the run finishes with
  // the reference's model. A busy machine can make the last pass shorter than the moment
  // chosen for it (the reference's passes include its start-up): the run is then started
  // again with the moment halved, since a kill after the end would test nothing.
  template <typename Disturb>
  void ExpectRecovery(const std::string& name, Moment moment, Disturb disturb) {
    for (int attempt = 0;; ++attempt) {
      const std::string run = attempt == 0 ? name : name + "-again" + std::to_string(attempt);
      SCOPED_TRACE(run + ": pass " + std::to_string(moment.pass) + " + " +
                   std::to_string(moment.into.count()) + " ms");
      DurableCluster cluster(fixture->dir, run, fixture->spec);
      cluster.StartAll();
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
      while (cluster.MetricLines().size() + 1 < size_t(moment.pass)) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << cluster.Logs();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      std::this_thread::sleep_for(moment.into);
      if (cluster.MetricLines().size() >= size_t{kPasses}) {
        ASSERT_LT(attempt, 4) << "the run was over before the kill, every time";
        moment.into /= 2;
        continue;
      }
      ExpectDisturbedRun(cluster, disturb);
      return;
    }
  }

  template <typename Disturb>
  void ExpectDisturbedRun(DurableCluster& cluster, Disturb disturb) {
    disturb(cluster);
    ASSERT_EQ(cluster.WaitDone(300000), cluster.AllZero()) << cluster.Logs();
    testing::ExpectSameModel(fixture->reference, testing::ReadPublished(cluster.publish_dir()));
    // Each committed pass's metrics once, as the undisturbed run wrote them.
    EXPECT_EQ(cluster.DeterministicMetricLines(), fixture->ref_metrics);
  }
};

TEST_F(RecoveryTest, AKilledShardIsRecoveredBitIdentically) {
  for (uint32_t seed : Seeds(1)) {
    ExpectRecovery("shard-" + std::to_string(seed), RandomMoment(seed),
                   [&](DurableCluster& c) { c.KillAndRestartShard(seed % 2); });
  }
}

TEST_F(RecoveryTest, AKilledWorkerIsRecoveredBitIdentically) {
  for (uint32_t seed : Seeds(3)) {
    ExpectRecovery("worker-" + std::to_string(seed), RandomMoment(seed),
                   [](DurableCluster& c) { c.KillAndRestartWorker(0); });
  }
}

TEST_F(RecoveryTest, AKilledCoordinatorIsRecoveredBitIdentically) {
  for (uint32_t seed : Seeds(5)) {
    ExpectRecovery("coord-" + std::to_string(seed), RandomMoment(seed),
                   [](DurableCluster& c) { c.KillAndRestartCoordinator(); });
  }
}

TEST_F(RecoveryTest, EverythingKilledAtOnceIsRecoveredBitIdentically) {
  for (uint32_t seed : Seeds(7)) {
    ExpectRecovery("all-" + std::to_string(seed), RandomMoment(seed),
                   [](DurableCluster& c) { c.KillAndRestartAll(); });
  }
}

// Stops between the steps of a commit and of a publish, where a random kill rarely lands.
TEST_F(RecoveryTest, StopsBetweenTheStepsOfACommitAreRecoveredBitIdentically) {
  struct Stop {
    const char* process;  // "coord", "ps-0", "ps-1"
    const char* step;
    bool sanitized;  // also in the sanitizer builds
  };
  for (const Stop& stop : std::vector<Stop>{
           // The shards wrote, the dense state not yet.
           {"coord", "coord.after_prepare:2", true},
           {"coord", "coord.after_dense:2", false},
           {"coord", "coord.after_record:2", true},  // decided, the shards not told
           {"coord", "coord.after_commit:2", true},  // committed, not published
           {"coord", "coord.after_export:2", false},
           {"coord", "publish.before_rename:2", false},
           {"coord", "coord.after_publish:2", false},
           {"ps-1", "shard.after_prepare:2", false},
           {"ps-0", "shard.after_ingest:2", true},
       }) {
    if (kSanitized && !stop.sanitized) continue;
    const std::string name = std::string(stop.process) + "-" + stop.step;
    SCOPED_TRACE(name);
    DurableCluster cluster(fixture->dir, name.substr(0, name.find(':')), fixture->spec);
    const std::vector<std::string> crash = {std::string("--crash_at=") + stop.step};
    const std::string p = stop.process;
    for (int i = 0; i < 2; ++i)
      cluster.StartShard(i, p == "ps-" + std::to_string(i) ? crash : std::vector<std::string>{});
    cluster.StartCoordinator(p == "coord" ? crash : std::vector<std::string>{});
    cluster.StartWorker(0);
    Subprocess& victim = p == "coord" ? cluster.coordinator() : cluster.shard(p == "ps-0" ? 0 : 1);
    EXPECT_EQ(cluster.WaitExit(victim, 300000), 128 + SIGKILL) << cluster.Logs();
    if (p == "coord") {
      cluster.StartCoordinator();
    } else {
      cluster.StartShard(p == "ps-0" ? 0 : 1);
    }
    ASSERT_EQ(cluster.WaitDone(300000), cluster.AllZero()) << cluster.Logs();
    testing::ExpectSameModel(fixture->reference, testing::ReadPublished(cluster.publish_dir()));
    EXPECT_NE(cluster.Logs().find("crash_at: stopping at"), std::string::npos);
  }
}

double MeanAuc(const std::string& json) {
  double sum = 0;
  int tasks = 0;
  const std::regex re("\\{\"samples\":[0-9]+,\"auc\":([0-9.]+)");
  // The task summaries come before their domains; take the first AUC after each task name.
  for (const char* task : {"\"like\":", "\"forward\":", "\"follow\":"}) {
    const size_t at = json.find(task);
    std::smatch m;
    const std::string rest = json.substr(at);
    if (at != std::string::npos && std::regex_search(rest, m, re)) {
      sum += std::stod(m[1]);
      ++tasks;
    }
  }
  EXPECT_EQ(tasks, 3) << json;
  return sum / std::max(tasks, 1);
}

// Every row the shards hold, exported whole.
std::map<uint64_t, std::vector<float>> ShardRows(const DurableCluster& cluster) {
  std::map<uint64_t, std::vector<float>> rows;
  ClientOptions options;
  EXPECT_TRUE(ParseServerList(cluster.servers(), &options.servers).ok());
  options.role = PeerRole::kCoordinator;  // exports are the coordinator's
  std::unique_ptr<PsClient> client;
  Status st = PsClient::Connect(options, &client);
  EXPECT_TRUE(st.ok()) << st.ToString();
  if (!st.ok()) return rows;
  // A version number the run never reaches, so its folder stays apart from the run's.
  static uint64_t version = 90000000;
  std::vector<std::string> paths;
  std::vector<proto::ExportReply> replies;
  st = testing::ExportShardRows(client.get(), cluster.publish_dir(), ++version, 0, true, &paths,
                                &replies);
  EXPECT_TRUE(st.ok()) << st.ToString();
  if (!st.ok()) return rows;
  for (size_t s = 0; s < paths.size(); ++s) {
    RowFileInfo info;
    EXPECT_TRUE(ReadRowFile(
                    paths[s], replies[s].checksum(), [](uint64_t) { return Status::OK(); },
                    [&](uint64_t key, const float* w, uint32_t dim) {
                      rows[key].assign(w, w + dim);
                      return Status::OK();
                    },
                    &info)
                    .ok());
  }
  EXPECT_TRUE(
      RemoveTree(Env::Default(), cluster.publish_dir() + "/" + VersionFolder(version) + ".tmp")
          .ok());
  return rows;
}

// Two workers are not deterministic (their pushes to a shared row interleave), so the
// disturbed run is held to what must hold: the versions published before a kill stay as
// they were, the published chain is exactly what the shards hold at the end, and the
// quality is that of an undisturbed run.
TEST_F(RecoveryTest, WithTwoWorkersCommittedPassesSurviveAndTheAucHolds) {
  ClusterSpec spec = fixture->spec;
  spec.workers = 2;
  double undisturbed_auc = 0;
  {
    DurableCluster cluster(fixture->dir, "two-reference", spec);
    cluster.StartAll();
    ASSERT_EQ(cluster.WaitDone(300000), cluster.AllZero()) << cluster.Logs();
    ASSERT_EQ(cluster.MetricLines().size(), size_t{kPasses});
    undisturbed_auc = MeanAuc(cluster.MetricLines().back());
  }
  // The kills go in after the first and the second published version; a run that was
  // over before the second (a loaded machine lets the cluster run ahead of this thread)
  // tests nothing, so it is started again, up to 3 times.
  std::unique_ptr<DurableCluster> run;
  PublishedImage before_first, before_second;
  for (int attempt = 0; attempt < 3; ++attempt) {
    run.reset(new DurableCluster(fixture->dir, "two-killed-" + std::to_string(attempt), spec));
    DurableCluster& cluster = *run;
    cluster.StartAll();
    auto wait_for_versions = [&](size_t n) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
      std::vector<std::string> versions;
      while (std::chrono::steady_clock::now() < deadline) {
        if (ListVersions(cluster.publish_dir(), &versions).ok() && versions.size() >= n) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      FAIL() << "no version " << n << "\n" << cluster.Logs();
    };
    wait_for_versions(1);
    before_first = testing::ReadPublished(cluster.publish_dir());
    cluster.KillAndRestartWorker(1);
    wait_for_versions(before_first.versions.size() + 1);
    before_second = testing::ReadPublished(cluster.publish_dir());
    if (before_second.versions.size() < size_t{kPasses}) break;
    ASSERT_EQ(cluster.WaitDone(300000), cluster.AllZero()) << cluster.Logs();
  }
  DurableCluster& cluster = *run;
  ASSERT_LT(before_second.versions.size(), size_t{kPasses}) << "every run ended before the kill";
  cluster.KillAndRestartShard(0);
  ASSERT_EQ(cluster.WaitDone(300000), cluster.AllZero()) << cluster.Logs();
  const PublishedImage after = testing::ReadPublished(cluster.publish_dir());
  ASSERT_EQ(after.versions.size(), size_t{kPasses});
  for (const PublishedImage* before : {&before_first, &before_second}) {
    for (size_t v = 0; v < before->versions.size(); ++v) {
      EXPECT_EQ(before->summaries[v], after.summaries[v]) << "a committed version changed";
    }
  }
  const std::map<uint64_t, std::vector<float>> held = ShardRows(cluster);
  EXPECT_EQ(held.size(), after.rows.size());
  EXPECT_TRUE(held == after.rows) << "the published model is not what the shards hold";
  const std::vector<std::string> metrics = cluster.MetricLines();
  ASSERT_EQ(metrics.size(), size_t{kPasses});
  const double auc = MeanAuc(metrics.back());
  // Two workers' runs differ by their interleaving: six pairs on a loaded machine moved by
  // up to 0.0054, and undisturbed runs alone by 0.008 (the AUC of these 10,000 samples has
  // a standard error of about 0.01).
  EXPECT_NEAR(auc, undisturbed_auc, 0.01) << metrics.back();
}

// The refusals at start, each one line naming what differs, nothing overwritten.
TEST_F(RecoveryTest, ForeignAndDamagedDataDirsAreRefusedAtStart) {
  const std::string ref = fixture->dir.File("reference");
  auto refused = [&](std::vector<std::string> argv, int want_code, const std::string& want) {
    std::string output;
    const int code = testing::RunCommand(argv, fixture->dir, &output);
    EXPECT_EQ(code, want_code) << output;
    EXPECT_NE(output.find(want), std::string::npos) << output;
    EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << "one line: " << output;
  };
  auto shard = [&](const std::string& data_dir, int id, int count,
                   const std::string& table = fixture->spec.table_config) {
    return std::vector<std::string>{testing::BinDir() + "/pepnet_ps",
                                    "--host=127.0.0.1",
                                    "--port=0",
                                    "--table_config=" + table,
                                    "--shard_id=" + std::to_string(id),
                                    "--num_shards=" + std::to_string(count),
                                    "--data_dir=" + data_dir};
  };
  refused(shard(ref + "/ps-0", 1, 2), 2,
          "data dir " + ref + "/ps-0 belongs to shard 0 of 2; this server is shard 1 of 2");
  refused(shard(ref + "/ps-0", 0, 3), 2, "belongs to shard 0 of 2; this server is shard 0 of 3");
  std::string table = testing::ReadFile(fixture->spec.table_config);
  table.replace(table.find("partition_bits: 0"), 17, "partition_bits: 1");
  testing::WriteFile(fixture->dir.File("table-other.pbtxt"), table);
  refused(shard(ref + "/ps-0", 0, 2, fixture->dir.File("table-other.pbtxt")), 2,
          "was written with another table config: line");
  // A damaged copy: one byte of a table file flipped.
  const std::string copy = fixture->dir.File("ps-0-damaged");
  ASSERT_EQ(system(("cp -r '" + ref + "/ps-0' '" + copy + "'").c_str()), 0);
  std::vector<std::string> names;
  ASSERT_TRUE(Env::Default()->GetChildren(copy + "/db", &names).ok());
  std::sort(names.begin(), names.end());
  std::string sst;
  for (const std::string& n : names) {
    if (n.size() > 4 && n.substr(n.size() - 4) == ".sst") sst = copy + "/db/" + n;
  }
  ASSERT_FALSE(sst.empty());
  {
    std::fstream f(sst, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x7f');
  }
  refused(shard(copy, 0, 2), 2, "Corruption");
  // The coordinator's record of this run, with another model, shard count or a damaged
  // dense checkpoint.
  auto coord = [&](const std::string& data_dir, const std::string& config,
                   const std::string& servers) {
    return std::vector<std::string>{testing::BinDir() + "/pepnet_coord",
                                    "--num_workers=1",
                                    "--servers=" + servers,
                                    "--config=" + config,
                                    "--data_dir=" + data_dir,
                                    "--port=0"};
  };
  std::string model = testing::ReadFile(fixture->spec.model_config);
  model.replace(model.find("tower: 32"), 9, "tower: 24");
  testing::WriteFile(fixture->dir.File("model-other.pbtxt"), model);
  refused(coord(ref + "/coord", fixture->dir.File("model-other.pbtxt"), "127.0.0.1:1,127.0.0.1:2"),
          1, "coordinator data dir " + ref + "/coord holds a run of another model config");
  refused(coord(ref + "/coord", fixture->spec.model_config, "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"),
          1, "holds a run of 2 shards; --servers lists 3");
  const std::string coord_copy = fixture->dir.File("coord-damaged");
  ASSERT_EQ(system(("cp -r '" + ref + "/coord' '" + coord_copy + "'").c_str()), 0);
  ASSERT_TRUE(Env::Default()->GetChildren(coord_copy, &names).ok());
  for (const std::string& n : names) {
    if (n.rfind("dense-", 0) != 0) continue;
    std::fstream f(coord_copy + "/" + n, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(64);
    f.put('\x7f');
  }
  refused(coord(coord_copy, fixture->spec.model_config, "127.0.0.1:1,127.0.0.1:2"), 1,
          "checksum differs from the record's");
  // Nothing was overwritten: the data dirs still load.
  DurableCluster again(fixture->dir, "reference", fixture->spec);
  again.StartShard(0);
  again.StartShard(1);
  ClientOptions options;
  ASSERT_TRUE(ParseServerList(again.servers(), &options.servers).ok());
  std::unique_ptr<PsClient> client;
  for (int i = 0; i < 200 && !PsClient::Connect(options, &client).ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(client);
  for (const auto& p : client->shard_info()) EXPECT_EQ(p.committed_pass(), uint32_t{kPasses});
}

}  // namespace
}  // namespace pepnet
