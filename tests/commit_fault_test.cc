// A full disk at a commit, in a cluster of real processes but one: the process whose disk
// fills runs here, on a fault-injecting Env. The run fails cleanly with an error naming
// the process and the path, the last committed pass stays intact, and once the disk has
// room again, restarting the failed processes with the same flags finishes the run with
// exactly the model of a run that never failed.
#include <gtest/gtest.h>

#include <thread>

#include "common/ps_client.h"
#include "coord/coordinator.h"
#include "ps/embedding_table.h"
#include "ps/request_handler.h"
#include "ps/server.h"
#include "ps/shard_store.h"
#include "tests/durable_cluster.h"
#include "tests/fault_env.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

using testing::ClusterSpec;
using testing::DurableCluster;

// Shard `id` of a DurableCluster, served from this process with `env` under its store.
class InProcessShard {
 public:
  InProcessShard(const DurableCluster& cluster, const ClusterSpec& spec, int id, Env* env) {
    TableOptions options;
    Status st = LoadTableConfigFile(spec.table_config, &options);
    EXPECT_TRUE(st.ok()) << st.ToString();
    options.memory_limit_bytes = spec.memory_limit_bytes;
    options.durable = true;
    ShardStoreOptions so;
    so.dir = cluster.shard_data_dir(id);
    so.shard_id = id;
    so.num_shards = spec.shards;
    so.new_hash_salt = 1000 + id;  // as the cluster's processes
    so.env = env;
    st = ShardStore::Open(so, options, &store_, &table_);
    EXPECT_TRUE(st.ok()) << st.ToString();
    HandlerOptions handler_options;
    handler_options.shard_id = id;
    handler_options.num_shards = spec.shards;
    handler_options.export_dir = cluster.publish_dir();
    handler_.reset(new RequestHandler(table_.get(), store_.get(), env, handler_options));
    ServerOptions server_options;
    server_options.host = "127.0.0.1";
    server_options.port = static_cast<uint16_t>(cluster.port(id));
    server_.reset(new Server(server_options, handler_.get()));
    st = server_->Start();
    EXPECT_TRUE(st.ok()) << st.ToString();
    thread_ = std::thread([this] { server_->Run(false); });
  }
  ~InProcessShard() {
    server_->Stop();
    thread_.join();
  }
  ShardStore& store() { return *store_; }

 private:
  std::unique_ptr<ShardStore> store_;
  std::unique_ptr<EmbeddingTable> table_;
  std::unique_ptr<RequestHandler> handler_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

class CommitFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    proto::ModelConfig model;
    const std::string config = testing::SourceDir() + "/configs/demo.pbtxt";
    ASSERT_TRUE(LoadModelConfigFile(config, &model).ok());
    TableOptions table = TableOptionsFor(model, 1);
    table.partition_bits = 1;
    testing::WriteFile(dir_.File("table.pbtxt"), FormatTableConfig(table));
    testing::GenerateData(dir_, dir_.File("data"), 0, 3, 3000);
    spec_.model_config = config;
    spec_.table_config = dir_.File("table.pbtxt");
    for (int p = 0; p < 3; ++p)
      spec_.passes.push_back(dir_.File("data/pass-0000" + std::to_string(p)));
    DurableCluster reference(dir_, "reference", spec_);
    reference.StartAll();
    ASSERT_EQ(reference.WaitDone(300000), reference.AllZero()) << reference.Logs();
    reference_ = testing::ReadPublished(reference.publish_dir());
    ASSERT_EQ(reference_.versions.size(), 3u);
  }

  testing::TempDir dir_;
  ClusterSpec spec_;
  testing::PublishedImage reference_;
};

TEST_F(CommitFaultTest, AShardsFullDiskFailsTheRunAndARestartFinishesIt) {
  DurableCluster cluster(dir_, "shard-disk", spec_);
  testing::FaultEnv env;
  env.FailWrites("prepared-00000002");  // pass 1 commits; pass 2 finds the disk full
  std::string coord_log;
  {
    InProcessShard shard0(cluster, spec_, 0, &env);
    cluster.StartShard(1);
    cluster.StartCoordinator();
    cluster.StartWorker(0);
    EXPECT_EQ(cluster.WaitDone(300000), std::vector<int>({1, 1})) << cluster.Logs();
    coord_log = cluster.CoordinatorLog();
    EXPECT_NE(coord_log.find("shard 0: cannot prepare pass 2 in " + cluster.shard_data_dir(0) +
                             "/staging/prepared-00000002.sst"),
              std::string::npos)
        << coord_log;
    EXPECT_NE(coord_log.find("No space left on device"), std::string::npos) << coord_log;
    EXPECT_EQ(coord_log.find("recovering"), std::string::npos) << "a full disk is not retried";
    EXPECT_EQ(shard0.store().committed_pass(), 1u) << "the committed pass stays";
    std::vector<std::string> versions;
    ASSERT_TRUE(ListVersions(cluster.publish_dir(), &versions).ok());
    EXPECT_EQ(versions.size(), 1u);
    // Room again: the failed processes are started again, the shard keeps serving.
    env.Heal();
    cluster.StartCoordinator();
    cluster.StartWorker(0);
    ASSERT_EQ(cluster.WaitDone(300000), cluster.AllZero()) << cluster.Logs();
  }
  testing::ExpectSameModel(reference_, testing::ReadPublished(cluster.publish_dir()));
}

TEST_F(CommitFaultTest, TheCoordinatorsFullDiskFailsTheRunAndARestartFinishesIt) {
  DurableCluster cluster(dir_, "coord-disk", spec_);
  cluster.StartShard(0);
  cluster.StartShard(1);
  testing::FaultEnv env;
  env.FailWrites("dense-00000002");
  CoordinatorOptions o;
  o.num_workers = 1;
  ASSERT_TRUE(ParseServerList(cluster.servers(), &o.servers).ok());
  o.model_config = spec_.model_config;
  o.publish_dir = cluster.publish_dir();
  o.base_every = spec_.base_every;
  o.port = cluster.coordinator_port();
  o.metrics_out = cluster.metrics_path();
  o.data_dir = cluster.coord_data_dir();
  o.env = &env;
  Status result;
  std::thread coordinator([&] { result = RunCoordinator(o); });
  cluster.StartWorker(0);
  EXPECT_EQ(cluster.WaitExit(cluster.worker(0), 300000), 1) << cluster.Logs();
  coordinator.join();
  EXPECT_EQ(result.code(), Status::kIoError) << result.ToString();
  EXPECT_NE(result.message().find(cluster.coord_data_dir() + "/dense-00000002.bin"),
            std::string::npos)
      << result.ToString();
  EXPECT_NE(testing::ReadFile(cluster.root() + "/worker-0.2.log").find("the cluster failed"),
            std::string::npos);
  // The shards prepared pass 2 and were never told: a restarted coordinator rolls them
  // back to pass 1 and trains pass 2 again.
  cluster.StartCoordinator();
  cluster.StartWorker(0);
  ASSERT_EQ(cluster.WaitDone(300000), cluster.AllZero()) << cluster.Logs();
  testing::ExpectSameModel(reference_, testing::ReadPublished(cluster.publish_dir()));
}

}  // namespace
}  // namespace pepnet
