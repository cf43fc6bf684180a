// End-to-end training in process: reader -> local table -> PEPNet -> pushes and Adam.
#include "worker/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "common/ps_client.h"
#include "proto/model_config.pb.h"
#include "tests/test_util.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

constexpr char kConfig[] = R"(
num_domains: 2
task { name: "click" }
task { name: "like" }
slot { name: "domain" id: 1 role: DOMAIN dim: 4 }
slot { name: "user" id: 2 role: USER dim: 8 }
slot { name: "item" id: 3 role: ITEM dim: 8 }
slot { name: "hist" id: 4 dim: 8 multi_valued: true pooling: MEAN }
tower: 16
batch_size: 128
adam { learning_rate: 0.01 }
data { domain_column: "domain" }
)";

// Planted structure: domain 0 clicks far more than domain 1 (as a featured page would);
// good items (even IDs) and a third of the users add to the click rate; likes follow
// clicks at a rate set by the user's parity, halved in domain 1. The history slot holds
// the user's recent items. Without the gates the model never sees the domain (E excludes
// the domain slots, as in the paper), so only EPNet can use the domain effects.
void WritePlantedData(const std::string& path, int rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::string text = "user,item,domain,hist,click,like\n";
  for (int n = 0; n < rows; ++n) {
    const int u = rng() % 300, i = rng() % 400, d = rng() % 2;
    const double p = (d == 0 ? 0.45 : 0.12) + (i % 2 == 0 ? 0.25 : 0) + (u % 3 == 0 ? 0.15 : 0);
    const bool click = uniform(rng) < p;
    const bool like = click && uniform(rng) < (u % 2 ? 0.6 : 0.2) * (d == 0 ? 1.0 : 0.5);
    text += "u" + std::to_string(u) + ",i" + std::to_string(i) + "," + std::to_string(d) + ",i" +
            std::to_string((u * 7) % 400) + "|i" + std::to_string((u * 11) % 400) + "," +
            (click ? "1" : "0") + "," + (like ? "1" : "0") + "\n";
  }
  testing::WriteFile(path, text);
}

// Streams `file` through the trainer `passes` times; `metrics` ends with the last pass.
// With `prefetch`, each step is told the next batch (as pepnet_worker does).
Status TrainPasses(const proto::ModelConfig& config, const std::string& file, int passes,
                   Trainer* trainer, PassMetrics* metrics, bool prefetch = false) {
  for (int pass = 0; pass < passes; ++pass) {
    metrics->Clear();
    DataReader reader(&config, {file});
    Batch batch, next;
    bool done = false;
    PEPNET_RETURN_IF_ERROR(reader.Next(config.batch_size(), &batch, &done));
    while (batch.size > 0) {
      next.size = 0;
      if (!done) PEPNET_RETURN_IF_ERROR(reader.Next(config.batch_size(), &next, &done));
      PEPNET_RETURN_IF_ERROR(trainer->TrainBatch(batch, metrics, prefetch ? &next : nullptr));
      std::swap(batch, next);
    }
    PEPNET_RETURN_IF_ERROR(trainer->Flush());
  }
  return Status::OK();
}

// Last-pass progressive-validation metrics of `passes` passes over `data`.
PassMetrics TrainLocally(const proto::ModelConfig& config, const std::string& data, int passes,
                         int threads) {
  std::unique_ptr<EmbeddingStore> store;
  EXPECT_TRUE(MakeLocalStore(config, 1, &store).ok());
  Trainer trainer(config, store.get(), 1, threads);
  PassMetrics metrics({"click", "like"}, 2);
  Status st = TrainPasses(config, data, passes, &trainer, &metrics);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return metrics;
}

// The planted signal is learnt on every task, and the gates are what learns its domain
// part: the same network with disable_gates scores clearly lower on every task.
TEST(TrainerTest, LearnsPlantedSignalAndGatesBeatTheAblation) {
  testing::TempDir dir;
  const std::string data = dir.File("train.csv");
  WritePlantedData(data, 20000, 5);
  proto::ModelConfig config;
  ASSERT_TRUE(ParseModelConfig(kConfig, "test", &config).ok());
  const PassMetrics gated = TrainLocally(config, data, 3, 2);
  config.set_disable_gates(true);
  const PassMetrics ablated = TrainLocally(config, data, 3, 2);
  const std::string report = gated.ToText(2) + ablated.ToText(2);
  for (int t = 0; t < 2; ++t) {
    EXPECT_GT(gated.Task(t).auc, 0.6) << report;
    EXPECT_GT(gated.Task(t).auc, ablated.Task(t).auc + 0.03) << report;
  }
  EXPECT_EQ(gated.Task(0).samples, 20000u);
}

// The batch split over two threads trains the same model as one thread, up to the order
// of float additions.
TEST(TrainerTest, TwoThreadsTrainLikeOne) {
  testing::TempDir dir;
  const std::string data = dir.File("train.csv");
  WritePlantedData(data, 4000, 6);
  proto::ModelConfig config;
  ASSERT_TRUE(ParseModelConfig(kConfig, "test", &config).ok());
  const PassMetrics one = TrainLocally(config, data, 2, 1);
  const PassMetrics two = TrainLocally(config, data, 2, 2);
  for (int t = 0; t < 2; ++t) {
    EXPECT_NEAR(one.Task(t).auc, two.Task(t).auc, 2e-3);
    EXPECT_NEAR(one.Task(t).logloss, two.Task(t).logloss, 1e-3);
  }
}

// The planted data of `rows` rows in dir, and the test config into *config.
std::string PlantedSetup(const testing::TempDir& dir, int rows, uint64_t seed,
                         proto::ModelConfig* config) {
  const std::string data = dir.File("train.csv");
  WritePlantedData(data, rows, seed);
  EXPECT_TRUE(ParseModelConfig(kConfig, "test", config).ok());
  return data;
}

// What two passes over `data` leave: the last pass's metrics and the first head's weights.
struct TrainedRun {
  std::string metrics_json;
  std::vector<float> head;
  uint64_t dense_checksum = 0;  // of every dense parameter
};
TrainedRun TrainTwoPasses(const proto::ModelConfig& config, const std::string& data,
                          EmbeddingStore* store, bool prefetch) {
  Trainer trainer(config, store, 1, /*threads=*/2);
  PassMetrics metrics({"click", "like"}, 2);
  Status st = TrainPasses(config, data, 2, &trainer, &metrics, prefetch);
  EXPECT_TRUE(st.ok()) << st.ToString();
  const auto& w = trainer.params().heads[0].weight;
  return {metrics.ToJson(1), std::vector<float>(w.data(), w.data() + w.size()),
          trainer.DenseChecksum()};
}

// The same training through two real shard servers gives bit-identical predictions and
// dense parameters: rows start from (key, seed) and the servers run the same table code.
// Two trainer threads pull and push concurrently through one client.
TEST(TrainerTest, ShardServersAndLocalTableTrainIdentically) {
  testing::TempDir dir;
  const std::string data = dir.File("train.csv");
  WritePlantedData(data, 3000, 9);
  proto::ModelConfig config;
  ASSERT_TRUE(ParseModelConfig(kConfig, "test", &config).ok());
  testing::ServerProcess servers[2];
  Status st = testing::StartShards(dir, FormatTableConfig(TableOptionsFor(config, 1)), 2, servers);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ClientOptions options;
  options.servers = {servers[0].address(), servers[1].address()};
  std::unique_ptr<PsClient> client;
  ASSERT_TRUE(PsClient::Connect(options, &client).ok());
  std::unique_ptr<EmbeddingStore> local;
  ASSERT_TRUE(MakeLocalStore(config, 1, &local).ok());
  std::unique_ptr<EmbeddingStore> remote = MakeRemoteStore(client.get());
  EmbeddingStore* stores[2] = {local.get(), remote.get()};
  // The prefetching runs start from the rows the first runs left, the same in both stores.
  for (bool prefetch : {false, true}) {
    const TrainedRun in_process = TrainTwoPasses(config, data, stores[0], prefetch);
    const TrainedRun sharded = TrainTwoPasses(config, data, stores[1], prefetch);
    EXPECT_EQ(in_process.metrics_json, sharded.metrics_json) << "prefetch " << prefetch;
    EXPECT_EQ(in_process.head, sharded.head) << "prefetch " << prefetch;
    EXPECT_EQ(in_process.dense_checksum, sharded.dense_checksum) << "prefetch " << prefetch;
  }
}

// One worker trains bit-identically with and without the overlap: the rows a step's push
// changed are pulled again for the next step, so no step sees a stale row.
TEST(TrainerTest, PrefetchingTrainsBitIdentically) {
  testing::TempDir dir;
  proto::ModelConfig config;
  const std::string data = PlantedSetup(dir, 3000, 9, &config);
  TrainedRun runs[2];
  for (int prefetch = 0; prefetch < 2; ++prefetch) {
    std::unique_ptr<EmbeddingStore> store;
    ASSERT_TRUE(MakeLocalStore(config, 1, &store).ok());
    runs[prefetch] = TrainTwoPasses(config, data, store.get(), prefetch == 1);
  }
  EXPECT_EQ(runs[0].metrics_json, runs[1].metrics_json);
  EXPECT_EQ(runs[0].head, runs[1].head);
  EXPECT_EQ(runs[0].dense_checksum, runs[1].dense_checksum);
}

// Where the prefetch sits: batch t+1's rows are pulled after batch t-1's push and before
// batch t's; once batch t's push is acknowledged, the rows of the keys t+1 shares with t
// are pulled again.
TEST(TrainerTest, PrefetchPullsTheNextBatchBetweenTwoPushes) {
  // Logs every call. A started pull runs only when it is finished, so a pull that
  // finished after a push was started would show it in the log's order.
  class RecordingStore : public EmbeddingStore {
   public:
    explicit RecordingStore(std::unique_ptr<EmbeddingStore> inner) : inner_(std::move(inner)) {}
    Status Pull(const uint64_t* keys, size_t n, float* values) override {
      events.push_back("pull " + Name(keys, n));
      return inner_->Pull(keys, n, values);
    }
    Status Push(const uint64_t* keys, size_t n, const float* grads, const float* shows,
                const float* clicks) override {
      events.push_back("push " + Name(keys, n));
      return inner_->Push(keys, n, grads, shows, clicks);
    }
    Ticket StartPull(const uint64_t* keys, size_t n, float* values) override {
      events.push_back("start pull " + Name(keys, n));
      pending_[++last_] = {std::vector<uint64_t>(keys, keys + n), values};
      return last_;
    }
    Ticket StartPush(const uint64_t* keys, size_t n, const float* grads, const float* shows,
                     const float* clicks) override {
      events.push_back("start push " + Name(keys, n));
      pending_[++last_] = {std::vector<uint64_t>(keys, keys + n), nullptr};
      outcomes_[last_] = inner_->Push(keys, n, grads, shows, clicks);
      return last_;
    }
    Status Finish(Ticket t) override {
      const Pending p = pending_.at(t);
      pending_.erase(t);
      if (p.values == nullptr) {
        events.push_back("finish push " + Name(p.keys.data(), p.keys.size()));
        return outcomes_.at(t);
      }
      events.push_back("finish pull " + Name(p.keys.data(), p.keys.size()));
      return inner_->Pull(p.keys.data(), p.keys.size(), p.values);
    }
    // A batch's distinct keys by their count and sum.
    static std::string Name(const uint64_t* keys, size_t n) {
      uint64_t sum = 0;
      for (size_t i = 0; i < n; ++i) sum += keys[i];
      return std::to_string(n) + ":" + std::to_string(sum);
    }
    std::vector<std::string> events;

   private:
    struct Pending {
      std::vector<uint64_t> keys;
      float* values;  // null for a push
    };
    std::unique_ptr<EmbeddingStore> inner_;
    std::map<Ticket, Pending> pending_;
    std::map<Ticket, Status> outcomes_;
    Ticket last_ = 0;
  };
  testing::TempDir dir;
  proto::ModelConfig config;
  const std::string data = PlantedSetup(dir, 128 * 4, 3, &config);
  std::vector<std::string> name;    // of each batch, as the pulls and pushes name it
  std::vector<std::string> shared;  // [t]: of the keys batch t shares with batch t - 1
  std::set<uint64_t> previous;
  {
    DataReader reader(&config, {data});
    Batch batch;
    bool done = false;
    while (!done) {
      ASSERT_TRUE(reader.Next(config.batch_size(), &batch, &done).ok());
      if (batch.size == 0) continue;
      std::set<uint64_t> distinct;
      for (const auto& keys : batch.slot_keys) distinct.insert(keys.begin(), keys.end());
      const std::vector<uint64_t> keys(distinct.begin(), distinct.end());
      name.push_back(RecordingStore::Name(keys.data(), keys.size()));
      // In the order of the batch's distinct keys: first appearance, slot by slot.
      std::vector<uint64_t> ordered, both;
      std::set<uint64_t> seen;
      for (const auto& slot : batch.slot_keys) {
        for (uint64_t k : slot) {
          if (seen.insert(k).second) ordered.push_back(k);
        }
      }
      for (uint64_t k : ordered) {
        if (previous.count(k)) both.push_back(k);
      }
      shared.push_back(both.empty() ? "" : RecordingStore::Name(both.data(), both.size()));
      previous = distinct;
    }
  }
  ASSERT_EQ(name.size(), 4u);
  for (bool prefetch : {false, true}) {
    std::unique_ptr<EmbeddingStore> inner;
    ASSERT_TRUE(MakeLocalStore(config, 1, &inner).ok());
    RecordingStore store(std::move(inner));
    Trainer trainer(config, &store, 1, /*threads=*/1);
    PassMetrics metrics({"click", "like"}, 2);
    ASSERT_TRUE(TrainPasses(config, data, 1, &trainer, &metrics, prefetch).ok());
    // Each step: the previous push acknowledged; this batch's rows (or, prefetched, those
    // of its keys the previous batch pushed); the next batch's pull started and finished;
    // this batch's push, acknowledged at once when no next batch was given.
    std::vector<std::string> expected;
    for (size_t t = 0; t < name.size(); ++t) {
      const bool next = prefetch && t + 1 < name.size();
      if (prefetch && t > 0) expected.push_back("finish push " + name[t - 1]);
      if (!prefetch || t == 0) {
        expected.push_back("pull " + name[t]);
      } else if (!shared[t].empty()) {
        expected.push_back("pull " + shared[t]);
      }
      if (next) {
        expected.push_back("start pull " + name[t + 1]);
        expected.push_back("finish pull " + name[t + 1]);
      }
      expected.push_back("start push " + name[t]);
      if (!next) expected.push_back("finish push " + name[t]);
    }
    EXPECT_EQ(store.events, expected) << "prefetch " << prefetch;
  }
}

// A pass over each real sample shipped beside the project trains without error and
// yields finite metrics.
TEST(TrainerTest, TrainsAPassOnTheRealSamples) {
  const std::string src = testing::SourceDir();
  ASSERT_FALSE(src.empty()) << "run through ctest";
  const std::string shared = src + "/../shared/data";
  for (const testing::RealSample& c : testing::RealSamples()) {
    const std::string file = shared + "/" + c.file;
    if (testing::ReadFile(file).empty()) GTEST_SKIP() << file << " is absent";
    proto::ModelConfig config;
    ASSERT_TRUE(LoadModelConfigFile(src + "/configs/" + c.config + ".pbtxt", &config).ok());
    std::unique_ptr<EmbeddingStore> store;
    ASSERT_TRUE(MakeLocalStore(config, 1, &store).ok());
    Trainer trainer(config, store.get(), 1);
    std::vector<std::string> tasks;
    for (const auto& t : config.task()) tasks.push_back(t.name());
    PassMetrics metrics(tasks, config.num_domains());
    Status st = TrainPasses(config, file, 1, &trainer, &metrics);
    ASSERT_TRUE(st.ok()) << c.config << ": " << st.ToString();
    for (size_t t = 0; t < tasks.size(); ++t) {
      EXPECT_EQ(metrics.Task(t).samples, 200u) << c.config;
      EXPECT_TRUE(std::isfinite(metrics.Task(t).logloss)) << c.config;
    }
  }
}

}  // namespace
}  // namespace pepnet
