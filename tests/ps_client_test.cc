// The client library against two real pepnet_ps processes on loopback. A local
// EmbeddingTable with the same config is the reference: row initialization depends only
// on (key, seed), so the distributed table must hold exactly the same rows.
#include "common/ps_client.h"
#include "common/stats.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <map>
#include <random>
#include <set>
#include <thread>

#include "common/hash.h"
#include "proto/ps.pb.h"
#include "ps/embedding_table.h"
#include "ps/table_config.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

constexpr char kConfig[] = R"(
slot { id: 1 dim: 16 }
slot { id: 2 dim: 4 accumulator: PER_DIM learning_rate: 0.1 }
seed: 5
)";

class PsClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status st = testing::StartShards(dir_, kConfig, 2, servers_);
    ASSERT_TRUE(st.ok()) << st.ToString();
    ClientOptions options;
    options.servers = {servers_[0].address(), servers_[1].address()};
    options.timeout_ms = 10000;
    st = PsClient::Connect(options, &client_);
    ASSERT_TRUE(st.ok()) << st.ToString();
    TableOptions table_options;
    ASSERT_TRUE(ParseTableConfig(kConfig, "kConfig", &table_options).ok());
    ASSERT_TRUE(EmbeddingTable::Create(table_options, &reference_).ok());
  }

  testing::TempDir dir_;
  testing::ServerProcess servers_[2];
  std::unique_ptr<PsClient> client_;
  std::unique_ptr<EmbeddingTable> reference_;
};

TEST_F(PsClientTest, LearnsSchemaAndShardCount) {
  EXPECT_EQ(client_->num_shards(), 2u);
  EXPECT_EQ(client_->DimOf(testing::TestKey(1, 3)), 16u);
  EXPECT_EQ(client_->DimOf(testing::TestKey(2, 3)), 4u);
  EXPECT_EQ(client_->DimOf(testing::TestKey(3, 3)), 0u);
}

TEST_F(PsClientTest, PullPushMatchLocalTableAndLandOnTheRightShard) {
  std::mt19937_64 rng(3);
  std::map<uint32_t, std::set<uint64_t>> keys_by_shard;
  for (int round = 0; round < 20; ++round) {
    std::vector<uint64_t> keys(500);
    for (auto& k : keys) k = testing::TestKey(1 + rng() % 2, rng() % 2000);
    keys[10] = keys[20];  // a duplicate
    for (uint64_t k : keys) keys_by_shard[ShardOfKey(k, 2)].insert(k);

    std::vector<float> got;
    Status st = client_->Wait(client_->Pull(keys.data(), keys.size(), &got));
    ASSERT_TRUE(st.ok()) << st.ToString();
    uint64_t num_values;
    ASSERT_TRUE(reference_->CountValues(keys.data(), keys.size(), &num_values).ok());
    std::vector<float> want(num_values);
    ASSERT_TRUE(reference_->Pull(keys.data(), keys.size(), want.data()).ok());
    ASSERT_EQ(got, want) << "round " << round;

    std::vector<float> grads(num_values), shows(keys.size(), 1.0f), clicks(keys.size(), 0.0f);
    std::normal_distribution<float> normal(0, 0.1f);
    for (auto& g : grads) g = normal(rng);
    st = client_->Wait(
        client_->Push(keys.data(), keys.size(), grads.data(), shows.data(), clicks.data()));
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_TRUE(
        reference_->Push(keys.data(), keys.size(), grads.data(), shows.data(), clicks.data()).ok());
  }
  std::vector<proto::ServerStats> stats;
  ASSERT_TRUE(client_->Stats(&stats).ok());
  ASSERT_EQ(stats.size(), 2u);
  for (uint32_t s = 0; s < 2; ++s) {
    EXPECT_EQ(stats[s].shard_id(), s);
    const StatSet set = StatsFromProto(stats[s]);
    EXPECT_EQ(set.Value("pepnet_table_rows"), keys_by_shard[s].size()) << "shard " << s;
    EXPECT_EQ(set.Value("pepnet_ps_requests_total", {{"type", "pull"}}), 20);
    EXPECT_EQ(set.Value("pepnet_ps_requests_total", {{"type", "push"}}), 20);
  }
  // Final values agree row by row, including the accumulators' effect.
  std::vector<uint64_t> all;
  for (auto& [s, ks] : keys_by_shard) all.insert(all.end(), ks.begin(), ks.end());
  std::vector<float> got;
  ASSERT_TRUE(client_->Wait(client_->Pull(all.data(), all.size(), &got)).ok());
  uint64_t num_values;
  ASSERT_TRUE(reference_->CountValues(all.data(), all.size(), &num_values).ok());
  std::vector<float> want(num_values);
  ASSERT_TRUE(reference_->Pull(all.data(), all.size(), want.data()).ok());
  EXPECT_EQ(got, want);
}

TEST_F(PsClientTest, ManyCallsInFlightFromSeveralThreads) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint64_t> keys(256);
      for (int i = 0; i < 256; ++i) keys[i] = testing::TestKey(1, t * 1000 + i);
      std::vector<std::vector<float>> outs(8);
      std::vector<PsClient::Ticket> tickets;
      for (int i = 0; i < 8; ++i) tickets.push_back(client_->Pull(keys.data(), 256, &outs[i]));
      for (auto ticket : tickets) failures += !client_->Wait(ticket).ok();
      for (auto& o : outs) failures += (o != outs[0]) || o.size() != 256 * 16;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(PsClientTest, UnknownSlotFailsWithoutSending) {
  const uint64_t keys[2] = {testing::TestKey(1, 1), testing::TestKey(9, 1)};
  std::vector<float> out;
  Status st = client_->Wait(client_->Pull(keys, 2, &out));
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("slot 9"), std::string::npos) << st.message();
  EXPECT_EQ(client_->Wait(12345).code(), Status::kInvalidArgument);
}

TEST_F(PsClientTest, NonFiniteOrNegativeCountsAreRefusedNamingTheKey) {
  const uint64_t key = testing::TestKey(1, 7);
  const std::vector<float> grad(client_->DimOf(key), 0.1f);
  for (float bad : {std::nanf(""), -1.0f, std::numeric_limits<float>::infinity()}) {
    const float show = bad, click = 0;
    Status st = client_->Wait(client_->Push(&key, 1, grad.data(), &show, &click));
    EXPECT_EQ(st.code(), Status::kInvalidArgument) << bad;
    EXPECT_NE(st.message().find(FormatKey(key)), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("must be finite, >= 0"), std::string::npos) << st.message();
  }
  // The server keeps serving, and nothing of the refused pushes was applied.
  const float show = 1, click = 0;
  EXPECT_TRUE(client_->Wait(client_->Push(&key, 1, grad.data(), &show, &click)).ok());
  std::vector<float> pulled, expected(grad.size());
  ASSERT_TRUE(client_->Wait(client_->Pull(&key, 1, &pulled)).ok());
  ASSERT_TRUE(reference_->Push(&key, 1, grad.data(), &show, &click).ok());
  ASSERT_TRUE(reference_->Pull(&key, 1, expected.data()).ok());
  EXPECT_EQ(pulled, expected);
}

TEST_F(PsClientTest, EmptyCallsSucceed) {
  std::vector<float> out;
  EXPECT_TRUE(client_->Wait(client_->Pull(nullptr, 0, &out)).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(client_->Wait(client_->Push(nullptr, 0, nullptr, nullptr, nullptr)).ok());
}

TEST_F(PsClientTest, ServersListedInTheWrongOrderAreRefused) {
  ClientOptions options;
  options.servers = {servers_[1].address(), servers_[0].address()};
  std::unique_ptr<PsClient> bad;
  Status st = PsClient::Connect(options, &bad);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("listed as shard 0"), std::string::npos) << st.message();
}

TEST_F(PsClientTest, DeadServerIsReportedByNameNotAHang) {
  servers_[1].process().Signal(SIGKILL);
  int code;
  ASSERT_TRUE(servers_[1].process().Wait(10000, &code).ok());
  std::vector<uint64_t> keys;
  for (int i = 0; i < 100; ++i) keys.push_back(testing::TestKey(1, i));
  std::vector<float> out;
  const auto start = std::chrono::steady_clock::now();
  Status st = client_->Wait(client_->Pull(keys.data(), keys.size(), &out));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(8));
  EXPECT_EQ(st.code(), Status::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("shard 1 (" + servers_[1].address() + ")"), std::string::npos)
      << st.message();
  // The live shard still answers for its own keys.
  std::vector<uint64_t> mine;
  for (uint64_t k : keys)
    if (ShardOfKey(k, 2) == 0) mine.push_back(k);
  EXPECT_TRUE(client_->Wait(client_->Pull(mine.data(), mine.size(), &out)).ok());
  // Reconnect attempts keep failing clearly.
  st = client_->Wait(client_->Pull(keys.data(), keys.size(), &out));
  EXPECT_EQ(st.code(), Status::kUnavailable);
}

// A shard restarted on the same port between calls is reached again (the client noticed
// its idle connections closing and reconnects for the next call), but it is another
// table: the shard refuses the old client's pulls and pushes by their epoch, so nothing
// trains on against a state that replaced its own unnoticed. A new client works.
TEST_F(PsClientTest, RestartedServerIsReachedButRefusesTheOldClient) {
  std::vector<uint64_t> keys;
  for (int i = 0; i < 100; ++i) keys.push_back(testing::TestKey(1, i));
  std::vector<float> out;
  ASSERT_TRUE(client_->Wait(client_->Pull(keys.data(), keys.size(), &out)).ok());
  const uint16_t port = servers_[1].port();
  servers_[1].process().Signal(SIGTERM);
  int code;
  ASSERT_TRUE(servers_[1].process().Wait(10000, &code).ok());
  testing::ServerProcess restarted;
  Status st =
      restarted.Start(dir_, dir_.File("table.pbtxt"), 1, 2, {"--port=" + std::to_string(port)});
  ASSERT_TRUE(st.ok()) << st.ToString();
  st = client_->Wait(client_->Pull(keys.data(), keys.size(), &out));
  EXPECT_EQ(st.code(), Status::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("shard 1 restarted or rolled back since this client connected"),
            std::string::npos)
      << st.ToString();
  ClientOptions options;
  options.servers = {servers_[0].address(), restarted.address()};
  std::unique_ptr<PsClient> fresh;
  ASSERT_TRUE(PsClient::Connect(options, &fresh).ok());
  st = fresh->Wait(fresh->Pull(keys.data(), keys.size(), &out));
  EXPECT_TRUE(st.ok()) << st.ToString();
}

TEST_F(PsClientTest, StalledServerTimesOut) {
  ClientOptions options;
  options.servers = {servers_[0].address(), servers_[1].address()};
  options.timeout_ms = 500;
  std::unique_ptr<PsClient> client;
  ASSERT_TRUE(PsClient::Connect(options, &client).ok());
  ASSERT_TRUE(testing::StopProcess(&servers_[0].process()));
  std::vector<uint64_t> keys;
  for (int i = 0; i < 100; ++i) keys.push_back(testing::TestKey(1, i));
  std::vector<float> out;
  Status st = client->Wait(client->Pull(keys.data(), keys.size(), &out));
  servers_[0].process().Signal(SIGCONT);
  EXPECT_EQ(st.code(), Status::kDeadlineExceeded) << st.ToString();
  EXPECT_NE(st.message().find("shard 0"), std::string::npos) << st.message();
  // Once the server runs again, the next call reconnects and succeeds.
  st = client->Wait(client->Pull(keys.data(), keys.size(), &out));
  EXPECT_TRUE(st.ok()) << st.ToString();
}

// Workers sum their dense gradients on the two shards: every worker gets the same bits,
// the sum in worker order, and a tool may not take part.
TEST_F(PsClientTest, DenseSumOverTwoShardsGivesEveryWorkerTheSameSum) {
  ClientOptions options;
  options.servers = {servers_[0].address(), servers_[1].address()};
  options.role = PeerRole::kCoordinator;
  std::unique_ptr<PsClient> coordinator;
  ASSERT_TRUE(PsClient::Connect(options, &coordinator).ok());
  ASSERT_TRUE(coordinator->BeginPass(1).ok());
  options.role = PeerRole::kWorker;
  constexpr int kWorkers = 3;
  constexpr size_t kDense = 2'000'001;
  std::vector<std::unique_ptr<PsClient>> workers(kWorkers);
  std::vector<std::vector<float>> grads(kWorkers);
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0, 1);
  for (int w = 0; w < kWorkers; ++w) {
    ASSERT_TRUE(PsClient::Connect(options, &workers[w]).ok());
    grads[w].resize(kDense);
    for (float& g : grads[w]) g = normal(rng);
  }
  for (uint64_t step = 0; step < 3; ++step) {
    // Worker 1 has no data from step 1 on; it still receives the sum.
    std::vector<float> want = grads[0];
    if (step == 0) {
      for (size_t k = 0; k < kDense; ++k) want[k] += grads[1][k];
    }
    for (size_t k = 0; k < kDense; ++k) want[k] += grads[2][k];
    std::vector<std::vector<float>> got = grads;
    std::vector<Status> status(kWorkers);
    std::vector<uint32_t> with(kWorkers, 0);
    // Each shard's slice is handed on as it arrives, already summed.
    std::vector<std::vector<std::pair<size_t, size_t>>> slices(kWorkers);
    std::vector<bool> slices_final(kWorkers, true);
    std::vector<std::thread> threads;
    for (int w = 0; w < kWorkers; ++w) {
      threads.emplace_back([&, w] {
        DenseStepInfo info;
        info.pass = 1;
        info.step = step;
        info.worker_index = w;
        info.num_workers = kWorkers;
        info.has_data = w != 1 || step == 0;
        status[w] = workers[w]->DenseSum(info, &got[w], &with[w], [&, w](size_t b, size_t e) {
          slices[w].emplace_back(b, e);
          if (!std::equal(got[w].begin() + b, got[w].begin() + e, want.begin() + b)) {
            slices_final[w] = false;
          }
        });
      });
    }
    for (auto& t : threads) t.join();
    for (int w = 0; w < kWorkers; ++w) {
      ASSERT_TRUE(status[w].ok()) << status[w].ToString();
      EXPECT_EQ(with[w], step == 0 ? 3u : 2u);
      EXPECT_TRUE(got[w] == want) << "worker " << w << " step " << step;
      std::sort(slices[w].begin(), slices[w].end());
      const std::vector<std::pair<size_t, size_t>> both = {{0, kDense / 2}, {kDense / 2, kDense}};
      EXPECT_EQ(slices[w], both);
      EXPECT_TRUE(slices_final[w]) << "a slice was handed on before its sum was in";
    }
  }
  // A tool is not a worker.
  options.role = PeerRole::kTool;
  std::unique_ptr<PsClient> tool;
  ASSERT_TRUE(PsClient::Connect(options, &tool).ok());
  DenseStepInfo info;
  info.pass = 1;
  info.num_workers = 2;
  std::vector<float> g(10);
  uint32_t with = 0;
  Status st = tool->DenseSum(info, &g, &with, nullptr);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("DENSE_SUM comes only from workers"), std::string::npos)
      << st.ToString();
  // The shards count the steps for /metrics.
  std::vector<proto::ServerStats> stats;
  ASSERT_TRUE(client_->Stats(&stats).ok());
  for (const proto::ServerStats& s : stats) {
    bool found = false;
    for (const proto::Stat& stat : s.stats()) {
      if (stat.name() == "pepnet_ps_dense_steps_total") {
        found = true;
        EXPECT_EQ(stat.value(), 3);
      }
    }
    EXPECT_TRUE(found);
  }
}

// A worker that never sends its part fails the step on every shard within the shards'
// timeout, naming it; the coordinator's abort frees waiting workers at once.
TEST(PsClientDenseTest, AMissingWorkerFailsTheStepWithinTheTimeout) {
  testing::TempDir dir;
  testing::ServerProcess servers[2];
  ASSERT_TRUE(testing::StartShards(dir, kConfig, 2, servers, {"--dense_sum_timeout_ms=500"}).ok());
  ClientOptions options;
  options.servers = {servers[0].address(), servers[1].address()};
  options.role = PeerRole::kCoordinator;
  std::unique_ptr<PsClient> coordinator, worker;
  ASSERT_TRUE(PsClient::Connect(options, &coordinator).ok());
  ASSERT_TRUE(coordinator->BeginPass(1).ok());
  options.role = PeerRole::kWorker;
  ASSERT_TRUE(PsClient::Connect(options, &worker).ok());
  DenseStepInfo info;
  info.pass = 1;
  info.num_workers = 2;
  info.has_data = true;
  std::vector<float> g(1000, 1.0f);
  uint32_t with = 0;
  const auto start = std::chrono::steady_clock::now();
  Status st = worker->DenseSum(info, &g, &with, nullptr);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(st.code(), Status::kDeadlineExceeded) << st.ToString();
  EXPECT_NE(st.message().find("no slice from worker 1 within 500 ms"), std::string::npos)
      << st.ToString();
  EXPECT_LT(seconds, 10);
  // Step 1 waits for worker 1 too, until the coordinator gives up on the pass.
  info.step = 1;
  std::thread abort([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_TRUE(coordinator->AbortDenseSums(1).ok());
  });
  st = worker->DenseSum(info, &g, &with, nullptr);
  abort.join();
  EXPECT_EQ(st.code(), Status::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("the coordinator gave up on pass 1"), std::string::npos)
      << st.ToString();
}

}  // namespace
}  // namespace pepnet
