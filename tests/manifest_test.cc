// Manifests (publish/manifest.h): every field is checked before anything is read or
// sized from it, and the refusal names the file and the field.
#include "publish/manifest.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "proto/publish.pb.h"
#include "tests/publish_util.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

class ManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(publisher_.Train(1, 0, 5, 0.5f).ok());
    ASSERT_TRUE(publisher_.Publish(1, true, 1).ok());
    ASSERT_TRUE(ReadManifest(publisher_.VersionDir(1), &good_).ok());
  }

  // `edit` applied to the good manifest must be refused with `fragment` in the message.
  void ExpectRefused(const std::function<void(proto::ModelManifest*)>& edit,
                     const std::string& fragment) {
    proto::ModelManifest m = good_;
    edit(&m);
    Status st = ValidateManifest(m, "pub/v-00000001/manifest.pbtxt");
    EXPECT_EQ(st.code(), Status::kCorruption) << fragment;
    EXPECT_EQ(st.message().rfind("pub/v-00000001/manifest.pbtxt: ", 0), 0u) << st.message();
    EXPECT_NE(st.message().find(fragment), std::string::npos) << st.message();
  }

  testing::TempDir dir_;
  testing::TestPublisher publisher_{dir_.File("pub")};
  proto::ModelManifest good_;
};

TEST_F(ManifestTest, WhatTheWriterWritesIsValid) {
  EXPECT_EQ(good_.version(), 1u);
  EXPECT_EQ(good_.rows(0).rows(), 10u);
  EXPECT_TRUE(ValidateManifest(good_, "m").ok());
  ASSERT_TRUE(publisher_.Train(2, 100, 3, 0.25f).ok());
  ASSERT_TRUE(publisher_.Publish(2, false, 1).ok());
  proto::ModelManifest delta;
  Status st = ReadManifest(publisher_.VersionDir(2), &delta);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(delta.is_base());
}

TEST_F(ManifestTest, TheVersionChainMustFit) {
  ExpectRefused([](proto::ModelManifest* m) { m->set_version(0); }, "version 0");
  ExpectRefused([](proto::ModelManifest* m) { m->set_parent_version(1); },
                "parent_version 1 is not before version 1");
  ExpectRefused([](proto::ModelManifest* m) { m->set_base_version(0); },
                "base_version 0 for a base of version 1");
  ExpectRefused(
      [](proto::ModelManifest* m) {
        m->set_version(5);
        m->set_is_base(false);
        m->set_base_version(5);
      },
      "base_version 5 for a delta of version 5");
}

// A row file's path comes from the manifest: it must be the shard's own name, so that a
// manifest cannot make a reader open a file outside its version folder.
TEST_F(ManifestTest, RowFilesAreTheShardsOwn) {
  ExpectRefused([](proto::ModelManifest* m) { m->mutable_rows(0)->set_path("../../etc/passwd"); },
                "rows[0]: shard 0 path '../../etc/passwd'; row file i is shard i's, named "
                "rows-0.bin");
  ExpectRefused([](proto::ModelManifest* m) { m->mutable_rows(0)->set_shard(3); }, "rows[0]");
  ExpectRefused(
      [](proto::ModelManifest* m) {
        m->mutable_rows(0)->set_deleted(1);
        m->set_total_deleted(1);
      },
      "rows[0]: a base with 1 deleted keys");
  ExpectRefused([](proto::ModelManifest* m) { m->mutable_rows(0)->set_rows(1000000000); },
                "rows[0]: 1000000000 rows and 0 deleted keys cannot fit in");
  ExpectRefused(
      [](proto::ModelManifest* m) {
        m->set_is_base(false);
        m->set_version(2);
        m->set_parent_version(1);
        m->mutable_rows(0)->set_deleted(uint64_t{1} << 62);
      },
      "deleted keys cannot fit in");
  ExpectRefused([](proto::ModelManifest* m) { m->mutable_rows(0)->set_bytes(3); },
                "cannot fit in 3 bytes");
  ExpectRefused([](proto::ModelManifest* m) { m->set_total_rows(11); },
                "total_rows 11 and total_deleted 0, the row files hold 10 and 0");
  ExpectRefused(
      [](proto::ModelManifest* m) {
        for (int i = 1; i <= 65536; ++i) *m->add_rows() = m->rows(0);
      },
      "65537 row files, over the limit of 65536");
}

TEST_F(ManifestTest, DenseFieldsAreBounded) {
  ExpectRefused([](proto::ModelManifest* m) { m->set_dense_path("/dev/zero"); },
                "dense_path '/dev/zero' is not dense.bin");
  ExpectRefused([](proto::ModelManifest* m) { m->set_dense_floats(0); },
                "dense_floats 0 is not in [1, 268435456]");
  ExpectRefused([](proto::ModelManifest* m) { m->set_dense_floats(1000000000000); },
                "dense_floats 1000000000000 is not in [1, 268435456]");
  ExpectRefused([](proto::ModelManifest* m) { m->clear_model(); }, "no model");
}

TEST_F(ManifestTest, ReadManifestChecksAndNamesTheFile) {
  ASSERT_TRUE(
      publisher_.EditManifest(1, [](proto::ModelManifest* m) { m->set_dense_floats(0); }).ok());
  proto::ModelManifest m;
  Status st = ReadManifest(publisher_.VersionDir(1), &m);
  EXPECT_EQ(st.code(), Status::kCorruption);
  EXPECT_NE(st.message().find(publisher_.VersionDir(1) + "/manifest.pbtxt: dense_floats 0"),
            std::string::npos)
      << st.message();
  const std::string path = publisher_.VersionDir(1) + "/manifest.pbtxt";
  testing::WriteFile(path, std::string(kMaxConfigFileBytes + 1, '#'));
  st = ReadManifest(publisher_.VersionDir(1), &m);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find(path + " has 16777217 bytes, over the limit"), std::string::npos)
      << st.message();
}

}  // namespace
}  // namespace pepnet
