// Loading published versions (publish/published_model.h): a base and its deltas load;
// a version whose files disagree with its manifest, or whose weights are not finite, is
// refused with the file named, before anything is sized from what it claims.
#include "publish/published_model.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "common/checksum.h"
#include "proto/publish.pb.h"
#include "ps/embedding_table.h"
#include "tests/publish_util.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class PublishedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(publisher_.Train(1, 0, 5, 0.5f).ok());
    ASSERT_TRUE(publisher_.Publish(1, true, 1).ok());
    ASSERT_TRUE(publisher_.Train(2, 100, 3, 0.25f).ok());
    ASSERT_TRUE(publisher_.Publish(2, false, 1).ok());
  }

  Status Load(PublishedModel* model) {
    PublishedModel scratch;
    return LoadPublishedModel(publish_dir(), 0, model ? model : &scratch);
  }

  // The load must fail with `code` and `fragment` in its message.
  void ExpectRefused(Status::Code code, const std::string& fragment) {
    Status st = Load(nullptr);
    EXPECT_EQ(st.code(), code) << st.ToString();
    EXPECT_NE(st.message().find(fragment), std::string::npos) << st.message();
  }

  std::string publish_dir() const { return dir_.File("pub"); }
  std::string File(uint64_t version, const std::string& name) const {
    return publisher_.VersionDir(version) + "/" + name;
  }

  testing::TempDir dir_;
  testing::TestPublisher publisher_{dir_.File("pub")};
};

TEST_F(PublishedModelTest, ABaseAndItsDeltaLoad) {
  PublishedModel model;
  Status st = Load(&model);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(model.versions_applied, std::vector<uint64_t>({1, 2}));
  EXPECT_EQ(model.dense.size(), publisher_.dense_floats());
  RowSnapshot row;
  ASSERT_TRUE(model.table->Lookup(testing::ModelKey(2, 101), &row).ok());
  EXPECT_FLOAT_EQ(row.weights[0], 0.25f);
  ASSERT_TRUE(model.table->Lookup(testing::ModelKey(3, 4), &row).ok());
  EXPECT_FLOAT_EQ(row.weights[7], 0.5f);
}

TEST_F(PublishedModelTest, FindChecksTheChainOnly) {
  PublishedVersion v;
  ASSERT_TRUE(FindPublishedVersion(publish_dir(), 0, &v).ok());
  EXPECT_EQ(v.folders, std::vector<std::string>({"v-00000001", "v-00000002"}));
  EXPECT_EQ(v.top().version(), 2u);
  EXPECT_EQ(v.top_manifest_path(), File(2, "manifest.pbtxt"));
  ASSERT_TRUE(FindPublishedVersion(publish_dir(), 1, &v).ok());
  EXPECT_EQ(v.folders, std::vector<std::string>({"v-00000001"}));
  EXPECT_EQ(FindPublishedVersion(publish_dir(), 9, &v).code(), Status::kNotFound);
}

TEST_F(PublishedModelTest, NonFiniteDenseParametersAreRefused) {
  std::vector<float> dense(publisher_.dense_floats(), 0.01f);
  dense[3] = kNaN;
  ASSERT_TRUE(publisher_.Publish(3, true, 3, dense).ok());
  ExpectRefused(Status::kCorruption, File(3, "dense.bin") + ": dense parameter 3 is nan");
  dense[3] = std::numeric_limits<float>::infinity();
  ASSERT_TRUE(publisher_.Publish(4, true, 4, dense).ok());
  ExpectRefused(Status::kCorruption, File(4, "dense.bin") + ": dense parameter 3 is inf");
}

TEST_F(PublishedModelTest, NonFiniteRowsAreRefused) {
  const float bad[8] = {0, 0, kNaN, 0, 0, 0, 0, 0};
  ASSERT_TRUE(publisher_.table()->BeginPass(3).ok());
  ASSERT_TRUE(publisher_.table()->SetWeights(testing::ModelKey(2, 500), bad, 8).ok());
  ASSERT_TRUE(publisher_.Publish(3, false, 1).ok());
  ExpectRefused(Status::kCorruption, File(3, "rows-0.bin") + ": row of key ");
  ExpectRefused(Status::kCorruption, "weight 2 is nan, not finite");
}

TEST_F(PublishedModelTest, TheDenseFileMustHoldWhatTheManifestSays) {
  // A claim bigger than the file is refused from the file's size, before any allocation.
  ASSERT_TRUE(
      publisher_.EditManifest(2, [](proto::ModelManifest* m) { m->set_dense_floats(100000000); })
          .ok());
  ExpectRefused(Status::kCorruption, File(2, "dense.bin") + ": ");
  ExpectRefused(Status::kCorruption, " bytes, not 100000000 floats");
  ASSERT_TRUE(publisher_
                  .EditManifest(2,
                                [&](proto::ModelManifest* m) {
                                  m->set_dense_floats(publisher_.dense_floats());
                                  m->set_dense_checksum(m->dense_checksum() + 1);
                                })
                  .ok());
  ExpectRefused(Status::kCorruption, File(2, "dense.bin") + ": checksum mismatch");
}

TEST_F(PublishedModelTest, RowFilesMustMatchTheirManifest) {
  uint64_t checksum = 0;
  ASSERT_TRUE(publisher_
                  .EditManifest(1,
                                [&](proto::ModelManifest* m) {
                                  checksum = m->rows(0).checksum();
                                  m->mutable_rows(0)->set_checksum(0);  // once "not checked"
                                })
                  .ok());
  ExpectRefused(Status::kCorruption, File(1, "rows-0.bin") + ": checksum mismatch");
  ASSERT_TRUE(publisher_
                  .EditManifest(1,
                                [&](proto::ModelManifest* m) {
                                  m->mutable_rows(0)->set_checksum(checksum);
                                  m->mutable_rows(0)->set_bytes(m->rows(0).bytes() + 4);
                                })
                  .ok());
  ExpectRefused(Status::kCorruption, File(1, "rows-0.bin") + ": ");
  ExpectRefused(Status::kCorruption, "bytes, the manifest says");
}

TEST_F(PublishedModelTest, ARowFileThatIsAFifoIsRefusedWithoutWaiting) {
  const std::string rows = File(2, "rows-0.bin");
  ASSERT_EQ(unlink(rows.c_str()), 0);
  ASSERT_EQ(mkfifo(rows.c_str(), 0600), 0);
  ExpectRefused(Status::kCorruption, rows + ": not a regular file");
}

TEST_F(PublishedModelTest, AManifestMustBeItsFoldersVersion) {
  ASSERT_TRUE(publisher_.EditManifest(2, [](proto::ModelManifest* m) { m->set_version(7); }).ok());
  ExpectRefused(Status::kCorruption, "manifest.pbtxt: version 7 in folder v-00000002");
}

TEST_F(PublishedModelTest, ADeltaMustFollowItsParent) {
  ASSERT_TRUE(publisher_.Train(3, 200, 1, 0.125f).ok());
  ASSERT_TRUE(publisher_.Publish(3, false, 1).ok());
  ASSERT_TRUE(
      publisher_.EditManifest(3, [](proto::ModelManifest* m) { m->set_parent_version(1); }).ok());
  ExpectRefused(Status::kCorruption, "v-00000003: parent version 1 is not v-00000002");
}

TEST_F(PublishedModelTest, ReadDenseFileComparesTheSizeFirst) {
  const std::string path = dir_.File("dense.bin");
  const std::vector<float> v = {1, 2, 3};
  testing::WriteFile(path, std::string(reinterpret_cast<const char*>(v.data()), 12));
  const uint64_t sum = ChecksumOf(v.data(), 12);
  std::vector<float> out;
  ASSERT_TRUE(ReadDenseFile(path, 3, sum, &out).ok());
  EXPECT_EQ(out, v);
  Status st = ReadDenseFile(path, 4, sum, &out);
  EXPECT_EQ(st.message(), path + ": 12 bytes, not 4 floats");
  st = ReadDenseFile(path, uint64_t{1} << 40, sum, &out);
  EXPECT_EQ(st.code(), Status::kCorruption);
  EXPECT_NE(st.message().find("over the limit of 268435456"), std::string::npos) << st.message();
  st = ReadDenseFile(dir_.path(), 3, sum, &out);
  EXPECT_EQ(st.message(), dir_.path() + ": not a regular file");
  // A FIFO is refused at once, not waited on for a writer.
  const std::string fifo = dir_.File("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  st = ReadDenseFile(fifo, 3, sum, &out);
  EXPECT_EQ(st.message(), fifo + ": not a regular file");
  EXPECT_EQ(ReadDenseFile(dir_.File("absent"), 3, sum, &out).code(), Status::kNotFound);
}

}  // namespace
}  // namespace pepnet
