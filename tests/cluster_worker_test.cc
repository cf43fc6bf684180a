// RunClusterWorker driven in this process, against real shard and coordinator processes:
// it trains a durable run to the end, and joining a resumed run with a pass list that
// disagrees with what the run committed fails the run with a message naming both.
#include "worker/cluster_worker.h"

#include <gtest/gtest.h>

#include "common/ps_client.h"
#include "proto/model_config.pb.h"
#include "tests/durable_cluster.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

TEST(ClusterWorkerTest, TrainsADurableRunAndRefusesAPassListTheRunContradicts) {
  testing::TempDir dir;
  testing::GenerateData(dir, dir.File("data"), 0, 2, 2000);
  testing::ClusterSpec spec;
  spec.model_config = testing::SourceDir() + "/configs/demo.pbtxt";
  proto::ModelConfig model;
  ASSERT_TRUE(LoadModelConfigFile(spec.model_config, &model).ok());
  testing::WriteFile(dir.File("table.pbtxt"), FormatTableConfig(TableOptionsFor(model, 1)));
  spec.table_config = dir.File("table.pbtxt");
  spec.passes = {dir.File("data/pass-00000"), dir.File("data/pass-00001")};
  testing::DurableCluster cluster(dir, "run", spec);
  cluster.StartShard(0);
  cluster.StartShard(1);
  cluster.StartCoordinator();

  ClusterWorkerOptions o;
  ASSERT_TRUE(ParseServerList(cluster.servers(), &o.servers).ok());
  o.coordinator_host = "127.0.0.1";
  o.coordinator_port = cluster.coordinator_port();
  o.source.passes = spec.passes;
  o.threads = 1;
  o.reconnect_timeout_ms = 60000;
  Status st = RunClusterWorker(model, o);
  ASSERT_TRUE(st.ok()) << st.ToString() << cluster.Logs();
  EXPECT_EQ(cluster.WaitExit(cluster.coordinator(), 60000), 0) << cluster.Logs();
  std::vector<std::string> versions;
  ASSERT_TRUE(ListVersions(cluster.publish_dir(), &versions).ok());
  EXPECT_EQ(versions.size(), 2u);

  // The run is over; a coordinator started again resumes it, and a worker whose list
  // names the passes in another order is refused.
  cluster.StartCoordinator();
  o.source.passes = {spec.passes[1], spec.passes[0]};
  st = RunClusterWorker(model, o);
  EXPECT_EQ(st.code(), Status::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("the run committed '" + spec.passes[0] +
                              "' as its pass 1, but --passes lists '" + spec.passes[1] + "'"),
            std::string::npos)
      << st.ToString();
  EXPECT_EQ(cluster.WaitExit(cluster.coordinator(), 60000), 1) << cluster.Logs();
  EXPECT_NE(cluster.CoordinatorLog().find("worker 0 (127.0.0.1:"), std::string::npos);
  EXPECT_NE(cluster.CoordinatorLog().find("as its pass 1, but --passes lists"), std::string::npos)
      << cluster.CoordinatorLog();
}

}  // namespace
}  // namespace pepnet
