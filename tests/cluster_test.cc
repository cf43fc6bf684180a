// A real cluster over loopback: 2 pepnet_ps shards, pepnet_coord and 2 pepnet_worker
// processes training passes of pepnet_datagen data, publishing a model per pass.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "common/ps_client.h"
#include "common/text_proto.h"
#include "proto/model_config.pb.h"
#include "proto/publish.pb.h"
#include "ps/embedding_table.h"
#include "ps/table_config.h"
#include "publish/manifest.h"
#include "publish/published_model.h"
#include "publish/row_file.h"
#include "tests/test_util.h"
#include "worker/data_reader.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

namespace pepnet {
namespace {

std::string DemoConfig() { return testing::SourceDir() + "/configs/demo.pbtxt"; }

using testing::GenerateData;

std::string PassDir(const std::string& root, int pass) {
  char name[32];
  snprintf(name, sizeof(name), "/pass-%05d", pass);
  return root + name;
}

// The coordinator and the workers of one run.
class Cluster {
 public:
  Cluster(const testing::TempDir& dir, int workers, const std::string& config = DemoConfig())
      : dir_(dir),
        num_workers_(workers),
        config_path_(config),
        secret_flag_("--secret_file=" + testing::WriteSecretFile(dir)) {
    EXPECT_TRUE(LoadModelConfigFile(config_path_, &config_).ok());
    // As deploy/local/run_cluster.sh runs it: every process proves the secret.
    Status st = testing::StartShards(dir, FormatTableConfig(TableOptionsFor(config_, 1)), 2,
                                     servers_, {"--export_dir=" + dir.File("model"), secret_flag_});
    EXPECT_TRUE(st.ok()) << st.ToString();
  }

  // Every process of the run must have logged no sanitizer report (the sanitizer builds
  // run these tests too).
  ~Cluster() { testing::ExpectNoSanitizerReports(Logs()); }

  // Starts the coordinator, then the workers with `source` flags (--passes=... or
  // --pass_root=...).
  void Start(const std::vector<std::string>& source) {
    const std::string port_file = dir_.File("coord.port");
    Status st = coord_.Start(
        {testing::BinDir() + "/pepnet_coord", "--num_workers=" + std::to_string(num_workers_),
         "--servers=" + servers(), "--config=" + config_path_, "--publish_dir=" + publish_dir(),
         "--base_every=5", "--port=0", "--port_file=" + port_file,
         "--metrics_out=" + metrics_path(), "--step_timeout_s=60", secret_flag_},
        dir_.File("coord.log"));
    ASSERT_TRUE(st.ok()) << st.ToString();
    uint16_t port = 0;
    st = WaitForPortFile(port_file, 20000, &coord_, &port);
    ASSERT_TRUE(st.ok()) << st.ToString() << testing::ReadFile(dir_.File("coord.log"));
    workers_.resize(num_workers_);
    for (int i = 0; i < num_workers_; ++i) {
      std::vector<std::string> argv = {testing::BinDir() + "/pepnet_worker",
                                       "--config=" + config_path_,
                                       "--servers=" + servers(),
                                       "--coordinator=127.0.0.1:" + std::to_string(port),
                                       "--worker_index=" + std::to_string(i),
                                       "--num_workers=" + std::to_string(num_workers_),
                                       "--threads=1",
                                       secret_flag_};
      argv.insert(argv.end(), source.begin(), source.end());
      workers_[i].reset(new Subprocess);
      st = workers_[i]->Start(argv, worker_log(i));
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
  }

  // Exit codes of the coordinator and the workers (-1: still running after the timeout).
  std::vector<int> WaitAll(int timeout_ms) {
    std::vector<int> codes;
    int code = -1;
    codes.push_back(coord_.Wait(timeout_ms, &code).ok() ? code : -1);
    for (auto& w : workers_) {
      code = -1;
      codes.push_back(w->Wait(timeout_ms, &code).ok() ? code : -1);
    }
    return codes;
  }

  std::string Logs() const {
    std::string all = "coordinator:\n" + testing::ReadFile(dir_.File("coord.log"));
    for (int i = 0; i < num_workers_; ++i) {
      all += "worker " + std::to_string(i) + ":\n" + testing::ReadFile(worker_log(i));
    }
    return all;
  }

  std::vector<std::string> MetricLines() const { return testing::ReadLines(metrics_path()); }

  std::string servers() const { return testing::ServerList(servers_, 2); }
  std::string publish_dir() const { return dir_.File("model"); }
  std::string metrics_path() const { return dir_.File("metrics.jsonl"); }
  std::string worker_log(int i) const { return dir_.File("worker" + std::to_string(i) + ".log"); }
  Subprocess& worker(int i) { return *workers_[i]; }
  const proto::ModelConfig& config() const { return config_; }
  std::string secret_path() const { return secret_flag_.substr(secret_flag_.find('=') + 1); }

 private:
  const testing::TempDir& dir_;
  const int num_workers_;
  const std::string config_path_;
  const std::string secret_flag_;
  proto::ModelConfig config_;
  testing::ServerProcess servers_[2];
  Subprocess coord_;
  std::vector<std::unique_ptr<Subprocess>> workers_;
};

double TaskAuc(const std::string& json, const std::string& task) {
  std::smatch m;
  const std::regex re("\"" + task + "\":\\{\"samples\":[0-9]+,\"auc\":([0-9.]+)");
  return std::regex_search(json, m, re) ? std::stod(m[1]) : -1;
}

// Every feature key in the files of a pass folder.
std::set<uint64_t> KeysOfPass(const proto::ModelConfig& config, const std::string& folder) {
  DataReader reader(&config, {folder + "/part-00000.csv", folder + "/part-00001.csv"});
  std::set<uint64_t> keys;
  Batch batch;
  bool done = false;
  while (!done) {
    EXPECT_TRUE(reader.Next(4096, &batch, &done).ok());
    for (const auto& slot : batch.slot_keys) keys.insert(slot.begin(), slot.end());
  }
  return keys;
}

bool ReadManifest(const std::string& version_folder, proto::ModelManifest* manifest) {
  std::string text;
  Status st = ReadFileToString(version_folder + "/manifest.pbtxt", "manifest", &text);
  if (st.ok()) st = ParseTextProto(text, "manifest", manifest);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return st.ok();
}

std::set<uint64_t> KeysOfRowFile(const std::string& path, uint64_t checksum) {
  std::set<uint64_t> keys;
  RowFileInfo info;
  Status st = ReadRowFile(
      path, checksum, [](uint64_t) { return Status::OK(); },
      [&](uint64_t key, const float*, uint32_t) {
        keys.insert(key);
        return Status::OK();
      },
      &info);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return keys;
}

// pepnet_predict on a held-out file equals the trainer's forward pass on the same model:
// the rows on the servers and the published dense parameters.
void ExpectPredictParity(Cluster& cluster, const testing::TempDir& dir, const std::string& holdout,
                         size_t samples) {
  std::string output;
  ASSERT_EQ(testing::RunCommand(
                {testing::BinDir() + "/pepnet_predict", "--model_dir=" + cluster.publish_dir(),
                 "--data=" + holdout, "--out=" + dir.File("scores.csv")},
                dir, &output),
            0)
      << output;
  PublishedModel model;
  ASSERT_TRUE(LoadPublishedModel(cluster.publish_dir(), 0, &model).ok());
  ClientOptions options;
  options.servers = {};
  ASSERT_TRUE(ParseServerList(cluster.servers(), &options.servers).ok());
  ASSERT_TRUE(Secret::Load(cluster.secret_path(), &options.secret).ok());
  std::unique_ptr<PsClient> client;
  ASSERT_TRUE(PsClient::Connect(options, &client).ok());
  std::unique_ptr<EmbeddingStore> store = MakeRemoteStore(client.get());
  Trainer trainer(cluster.config(), store.get(), 1, 1);
  ASSERT_TRUE(trainer.LoadParams(model.dense.data(), model.dense.size()).ok());
  DataReader reader(&cluster.config(), {holdout});
  Batch batch;
  bool done = false;
  std::vector<float> expected, scores;
  while (!done) {
    ASSERT_TRUE(reader.Next(512, &batch, &done).ok());
    ASSERT_TRUE(trainer.Predict(batch, &scores).ok());
    expected.insert(expected.end(), scores.begin(), scores.end());
  }
  std::ifstream in(dir.File("scores.csv"));
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "like,forward,follow");
  size_t k = 0;
  while (std::getline(in, line)) {
    std::stringstream fields(line);
    for (std::string cell; std::getline(fields, cell, ',');) {
      ASSERT_LT(k, expected.size());
      EXPECT_NEAR(std::stod(cell), expected[k], 1e-6) << "score " << k;
      ++k;
    }
  }
  EXPECT_EQ(k, expected.size());
  EXPECT_EQ(k, samples * cluster.config().task_size());
}

TEST(ClusterTest, TwoServersTwoWorkersTrainPublishAndServe) {
  testing::TempDir dir;
  const std::string data = dir.File("data");
  GenerateData(dir, data, 0, 4, 10000);  // passes 0-2 train, pass 3 is held out
  Cluster cluster(dir, 2);
  cluster.Start({"--passes=" + PassDir(data, 0) + "," + PassDir(data, 1) + "," + PassDir(data, 2)});
  const std::vector<int> codes = cluster.WaitAll(600000);
  ASSERT_EQ(codes, std::vector<int>({0, 0, 0})) << cluster.Logs();

  // Per-pass metrics, merged over both workers: every task learnt by the last pass.
  const std::vector<std::string> lines = cluster.MetricLines();
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& task : cluster.config().task()) {
    EXPECT_GT(TaskAuc(lines[2], task.name()), 0.6) << task.name() << "\n" << lines[2];
  }
  EXPECT_NE(lines[2].find("\"samples\":20000"), std::string::npos) << lines[2];

  // Both workers ended every pass with the same dense checksum (the coordinator also
  // compares them and would have failed the pass).
  const std::regex checksum_re("pass ([0-9]+) .*dense checksum ([0-9a-f]{16})");
  std::vector<std::string> sums[2];
  for (int w = 0; w < 2; ++w) {
    const std::string log = testing::ReadFile(cluster.worker_log(w));
    for (std::sregex_iterator it(log.begin(), log.end(), checksum_re), end; it != end; ++it) {
      sums[w].push_back((*it)[1].str() + ":" + (*it)[2].str());
    }
  }
  EXPECT_EQ(sums[0].size(), 3u) << cluster.Logs();
  EXPECT_EQ(sums[0], sums[1]);

  // A base, then deltas holding exactly the rows of the keys each pass trained.
  std::vector<std::string> versions;
  ASSERT_TRUE(ListVersions(cluster.publish_dir(), &versions).ok());
  ASSERT_EQ(versions, std::vector<std::string>({"v-00000001", "v-00000002", "v-00000003"}));
  for (int v = 0; v < 3; ++v) {
    const std::string folder = cluster.publish_dir() + "/" + versions[v];
    proto::ModelManifest manifest;
    ASSERT_TRUE(ReadManifest(folder, &manifest));
    EXPECT_EQ(manifest.is_base(), v == 0);
    EXPECT_EQ(manifest.base_version(), 1u);
    EXPECT_EQ(manifest.parent_version(), uint64_t(v));
    std::set<uint64_t> published;
    uint64_t rows = 0;
    for (const auto& f : manifest.rows()) {
      const std::set<uint64_t> keys = KeysOfRowFile(folder + "/" + f.path(), f.checksum());
      EXPECT_EQ(keys.size(), f.rows());
      rows += f.rows();
      published.insert(keys.begin(), keys.end());
    }
    EXPECT_EQ(rows, manifest.total_rows());
    EXPECT_EQ(published, KeysOfPass(cluster.config(), PassDir(data, v))) << versions[v];
  }

  ExpectPredictParity(cluster, dir, PassDir(data, 3) + "/part-00000.csv", 10000);
}

std::set<uint64_t> SlotKeys(const std::set<uint64_t>& keys, uint32_t slot) {
  std::set<uint64_t> out;
  for (uint64_t k : keys) {
    if (SlotOfKey(k, 10) == slot) out.insert(k);
  }
  return out;
}

// With a TTL of one pass on the item slot (and the demo config's TTL of two on the
// history slot), every pass end deletes the items the pass did not train; each delta
// names exactly the deleted keys, and serving (which applies the deletions) still scores
// like the trainer.
TEST(ClusterTest, PassEndDeletionsReachTheDeltasAndServing) {
  testing::TempDir dir;
  std::string config = testing::ReadFile(DemoConfig());
  const std::string item = "slot { name: \"item\" id: 3 role: ITEM dim: 16 }";
  ASSERT_NE(config.find(item), std::string::npos);
  config.replace(config.find(item), item.size(),
                 "slot { name: \"item\" id: 3 role: ITEM dim: 16 eviction { ttl_passes: 1 } }");
  testing::WriteFile(dir.File("ttl.pbtxt"), config);
  const std::string data = dir.File("data");
  GenerateData(dir, data, 0, 4, 4000);
  Cluster cluster(dir, 2, dir.File("ttl.pbtxt"));
  cluster.Start({"--passes=" + PassDir(data, 0) + "," + PassDir(data, 1) + "," + PassDir(data, 2)});
  ASSERT_EQ(cluster.WaitAll(600000), std::vector<int>({0, 0, 0})) << cluster.Logs();

  std::vector<std::string> versions;
  ASSERT_TRUE(ListVersions(cluster.publish_dir(), &versions).ok());
  ASSERT_EQ(versions.size(), 3u);
  for (int v = 0; v < 3; ++v) {
    const std::string folder = cluster.publish_dir() + "/" + versions[v];
    proto::ModelManifest manifest;
    ASSERT_TRUE(ReadManifest(folder, &manifest));
    std::set<uint64_t> deleted, published;
    for (const auto& f : manifest.rows()) {
      RowFileInfo info;
      ASSERT_TRUE(ReadRowFile(
                      folder + "/" + f.path(), f.checksum(),
                      [&](uint64_t key) {
                        deleted.insert(key);
                        return Status::OK();
                      },
                      [&](uint64_t key, const float*, uint32_t) {
                        published.insert(key);
                        return Status::OK();
                      },
                      &info)
                      .ok());
      EXPECT_EQ(info.deleted, f.deleted());
    }
    EXPECT_EQ(deleted.size(), manifest.total_deleted());
    const std::set<uint64_t> trained = KeysOfPass(cluster.config(), PassDir(data, v));
    EXPECT_EQ(published, trained) << versions[v];
    std::set<uint64_t> expected;
    if (v > 0) {
      // The items of the previous pass that this pass did not train.
      const std::set<uint64_t> before =
          SlotKeys(KeysOfPass(cluster.config(), PassDir(data, v - 1)), 3);
      const std::set<uint64_t> now = SlotKeys(trained, 3);
      std::set_difference(before.begin(), before.end(), now.begin(), now.end(),
                          std::inserter(expected, expected.end()));
      EXPECT_GT(expected.size(), 0u);
    }
    if (v > 1) {
      // The demo config's history slot has a TTL of 2 passes: the history IDs of two
      // passes ago that neither the last pass nor this one trained.
      std::set<uint64_t> history = SlotKeys(KeysOfPass(cluster.config(), PassDir(data, v - 2)), 5);
      for (int u : {v - 1, v}) {
        for (uint64_t k : SlotKeys(KeysOfPass(cluster.config(), PassDir(data, u)), 5)) {
          history.erase(k);
        }
      }
      EXPECT_GT(history.size(), 0u);
      expected.insert(history.begin(), history.end());
    }
    std::vector<uint64_t> missing, extra;
    std::set_difference(expected.begin(), expected.end(), deleted.begin(), deleted.end(),
                        std::back_inserter(missing));
    std::set_difference(deleted.begin(), deleted.end(), expected.begin(), expected.end(),
                        std::back_inserter(extra));
    EXPECT_TRUE(missing.empty() && extra.empty())
        << versions[v] << ": " << deleted.size() << " deleted, " << expected.size() << " expected; "
        << missing.size() << " missing (first slot "
        << (missing.empty() ? 0 : SlotOfKey(missing[0], 10)) << "), " << extra.size()
        << " extra (first slot " << (extra.empty() ? 0 : SlotOfKey(extra[0], 10)) << ")";
  }
  // The coordinator's per-pass line counts the deletions.
  EXPECT_NE(testing::ReadFile(dir.File("coord.log")).find(", ttl "), std::string::npos);
  ExpectPredictParity(cluster, dir, PassDir(data, 3) + "/part-00000.csv", 4000);
}

// A worker killed in the middle of a pass fails the run with a message naming it; nothing
// hangs.
TEST(ClusterTest, KilledWorkerFailsThePassClearly) {
  testing::TempDir dir;
  const std::string data = dir.File("data");
  GenerateData(dir, data, 0, 1, 200000);
  Cluster cluster(dir, 2);
  cluster.Start({"--passes=" + PassDir(data, 0)});
  // Let training start, then kill worker 1.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (testing::ReadFile(cluster.worker_log(1)).find("training on") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  cluster.worker(1).Signal(SIGKILL);
  const std::vector<int> codes = cluster.WaitAll(60000);
  EXPECT_EQ(codes[0], 1) << cluster.Logs();
  EXPECT_EQ(codes[1], 1) << cluster.Logs();
  EXPECT_EQ(codes[2], 128 + SIGKILL);
  const std::string coord_log = testing::ReadFile(dir.File("coord.log"));
  EXPECT_NE(coord_log.find("worker 1 ("), std::string::npos) << coord_log;
  EXPECT_NE(coord_log.find("failed during pass 1"), std::string::npos) << coord_log;
  const std::string worker_log = testing::ReadFile(cluster.worker_log(0));
  EXPECT_NE(worker_log.find("the cluster failed"), std::string::npos) << cluster.Logs();
  EXPECT_NE(worker_log.find("worker 1 ("), std::string::npos) << cluster.Logs();
}

// Watching a root: a pass folder is read only once its _SUCCESS marker is there.
TEST(ClusterTest, WatchModeWaitsForSuccessMarkers) {
  testing::TempDir dir;
  const std::string data = dir.File("data");
  GenerateData(dir, data, 0, 2, 3000);
  ASSERT_EQ(std::remove((PassDir(data, 1) + "/_SUCCESS").c_str()), 0);
  Cluster cluster(dir, 2);
  cluster.Start({"--pass_root=" + data, "--idle_timeout_s=4", "--poll_ms=100"});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (cluster.MetricLines().size() < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(cluster.MetricLines().size(), 1u) << cluster.Logs();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(cluster.MetricLines().size(), 1u) << "an unmarked pass was read";
  EXPECT_NE(testing::ReadFile(cluster.worker_log(0)).find("waiting for the next pass folder"),
            std::string::npos);
  testing::WriteFile(PassDir(data, 1) + "/_SUCCESS", "");
  const std::vector<int> codes = cluster.WaitAll(120000);
  EXPECT_EQ(codes, std::vector<int>({0, 0, 0})) << cluster.Logs();
  EXPECT_EQ(cluster.MetricLines().size(), 2u);
}

// A mistyped pass folder is refused at start, naming it, instead of training nothing;
// pepnet_datagen creates missing parent folders of --out_dir.
TEST(ClusterTest, MissingPassFolderIsRefusedAndDatagenMakesParents) {
  testing::TempDir dir;
  const std::string nested = dir.File("a/b/data");
  GenerateData(dir, nested, 0, 1, 10);
  EXPECT_EQ(testing::ReadFile(PassDir(nested, 0) + "/part-00000.csv").empty(), false);
  std::string output;
  EXPECT_EQ(testing::RunCommand({testing::BinDir() + "/pepnet_worker", "--config=" + DemoConfig(),
                                 "--servers=127.0.0.1:1", "--coordinator=127.0.0.1:1",
                                 "--passes=" + PassDir(nested, 0) + "," + dir.File("no-such-pass")},
                                dir, &output),
            1);
  EXPECT_NE(output.find("--passes: " + dir.File("no-such-pass") + " is not a folder"),
            std::string::npos)
      << output;
}

}  // namespace
}  // namespace pepnet
