// The coordinator's record: what a commit and a publish write, what a restart reads back,
// refusals of another run's record, and a full disk or a stop between the dense checkpoint
// and the record.
#include "coord/coordinator_store.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/fault_env.h"
#include "tests/test_util.h"
#include "worker/dense_state.h"

namespace pepnet {
namespace {

CoordinatorStore::Identity Id() {
  CoordinatorStore::Identity id;
  id.model_fingerprint = 0xABCDEF;
  id.num_dense = 4;
  id.num_shards = 2;
  return id;
}

std::string Dense(float base, int64_t step) {
  DenseState s;
  s.params = {base, base + 1, base + 2, base + 3};
  s.m = {0.1f, 0.2f, 0.3f, 0.4f};
  s.v = {1, 2, 3, 4};
  s.step = step;
  return EncodeDenseState(s);
}

std::unique_ptr<CoordinatorStore> Open(Env* env, const std::string& dir,
                                       const CoordinatorStore::Identity& id = Id()) {
  std::unique_ptr<CoordinatorStore> store;
  Status st = CoordinatorStore::Open(env, dir, id, &store);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return store;
}

TEST(CoordinatorStoreTest, CommitsAndPublishesAreReadBackAfterARestart) {
  testing::TempDir dir;
  {
    auto store = Open(Env::Default(), dir.File("coord"));
    EXPECT_EQ(store->record().committed_pass(), 0u);
    EXPECT_TRUE(store->dense().empty());
    ASSERT_TRUE(store->WriteDense(1, Dense(1, 10)).ok());
    ASSERT_TRUE(store->Commit(1, "/data/pass-00000", 1, "{\"pass\":1,}").ok());
    ASSERT_TRUE(store->MarkPublished(1, true).ok());
    ASSERT_TRUE(store->WriteDense(2, Dense(5, 20)).ok());
    ASSERT_TRUE(store->Commit(2, "/data/pass-00001", 2, "{\"pass\":2,}").ok());
  }
  auto store = Open(Env::Default(), dir.File("coord"));
  const proto::CoordinatorRecord& r = store->record();
  EXPECT_EQ(r.committed_pass(), 2u);
  ASSERT_EQ(r.done_passes_size(), 2);
  EXPECT_EQ(r.done_passes(1), "/data/pass-00001");
  EXPECT_EQ(r.last_version(), 1u);  // version 2 is committed but not yet published
  EXPECT_EQ(r.committed_version(), 2u);
  EXPECT_EQ(r.last_base(), 1u);
  EXPECT_EQ(r.metrics_json(), "{\"pass\":2,}");
  EXPECT_EQ(store->dense(), Dense(5, 20));
  // Only the committed pass's checkpoint is kept.
  EXPECT_EQ(Env::Default()->FileExists(dir.File("coord/dense-00000001.bin")).code(),
            Status::kNotFound);
}

TEST(CoordinatorStoreTest, AnotherRunsRecordIsRefused) {
  testing::TempDir dir;
  {
    auto store = Open(Env::Default(), dir.File("coord"));
    ASSERT_TRUE(store->WriteDense(1, Dense(1, 10)).ok());
    ASSERT_TRUE(store->Commit(1, "p", 0, "").ok());
  }
  std::unique_ptr<CoordinatorStore> store;
  CoordinatorStore::Identity other = Id();
  other.model_fingerprint = 7;
  Status st = CoordinatorStore::Open(Env::Default(), dir.File("coord"), other, &store);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("holds a run of another model config (fingerprint "
                              "0000000000abcdef; this config 0000000000000007)"),
            std::string::npos)
      << st.message();
  other = Id();
  other.num_shards = 3;
  st = CoordinatorStore::Open(Env::Default(), dir.File("coord"), other, &store);
  EXPECT_NE(st.message().find("holds a run of 2 shards; --servers lists 3"), std::string::npos)
      << st.message();
  other = Id();
  other.num_dense = 5;
  st = CoordinatorStore::Open(Env::Default(), dir.File("coord"), other, &store);
  EXPECT_NE(st.message().find("holds a dense checkpoint of 4 floats; this model has 5"),
            std::string::npos)
      << st.message();
  testing::WriteFile(dir.File("coord/coordinator.pbtxt"), "committed_pass: banana\n");
  st = CoordinatorStore::Open(Env::Default(), dir.File("coord"), Id(), &store);
  EXPECT_EQ(st.code(), Status::kCorruption) << st.ToString();
}

TEST(CoordinatorStoreTest, AFullDiskFailsTheCommitAndKeepsTheRecord) {
  testing::TempDir dir;
  testing::FaultEnv env;
  auto store = Open(&env, dir.File("coord"));
  ASSERT_TRUE(store->WriteDense(1, Dense(1, 10)).ok());
  ASSERT_TRUE(store->Commit(1, "p0", 0, "").ok());
  env.FailWrites("dense-00000002");
  Status st = store->WriteDense(2, Dense(2, 20));
  EXPECT_EQ(st.code(), Status::kIoError) << st.ToString();
  EXPECT_NE(st.message().find(dir.File("coord/dense-00000002.bin")), std::string::npos)
      << st.message();
  EXPECT_FALSE(store->Commit(2, "p1", 0, "").ok()) << "a commit without its dense state";
  env.Heal();
  auto reopened = Open(Env::Default(), dir.File("coord"));
  EXPECT_EQ(reopened->record().committed_pass(), 1u);
  EXPECT_EQ(reopened->dense(), Dense(1, 10));
}

TEST(CoordinatorStoreTest, AStopBetweenTheCheckpointAndTheRecordLeavesTheLastCommit) {
  testing::TempDir dir;
  {
    auto store = Open(Env::Default(), dir.File("coord"));
    ASSERT_TRUE(store->WriteDense(1, Dense(1, 10)).ok());
    ASSERT_TRUE(store->Commit(1, "p0", 0, "").ok());
    ASSERT_TRUE(store->WriteDense(2, Dense(2, 20)).ok());
    // The process stops here, before Commit(2).
  }
  testing::WriteFile(dir.File("coord/coordinator.pbtxt.tmp"), "half a record");
  auto store = Open(Env::Default(), dir.File("coord"));
  EXPECT_EQ(store->record().committed_pass(), 1u);
  EXPECT_EQ(store->dense(), Dense(1, 10));
  // What the stop left is gone: the unnamed checkpoint and the half-written record.
  EXPECT_EQ(Env::Default()->FileExists(dir.File("coord/dense-00000002.bin")).code(),
            Status::kNotFound);
  EXPECT_EQ(Env::Default()->FileExists(dir.File("coord/coordinator.pbtxt.tmp")).code(),
            Status::kNotFound);
}

}  // namespace
}  // namespace pepnet
