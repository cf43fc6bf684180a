// pepnet_predict (worker/predict_main.cc) on published versions: it scores a good one,
// and refuses a poisoned or oversized one with an error naming the file, exit code 1,
// and no scores, instead of printing NaN or dying of bad_alloc.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "proto/publish.pb.h"
#include "tests/publish_util.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

class PredictTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(publisher_.Train(1, 0, 5, 0.5f).ok());
    ASSERT_TRUE(publisher_.Publish(1, true, 1).ok());
    std::string data = "domain,user,item,click\n";
    for (int i = 0; i < 40; ++i) {
      data += std::to_string(i % 2) + ",u" + std::to_string(i % 7) + ",i" + std::to_string(i) +
              "," + std::to_string(i % 3 == 0) + "\n";
    }
    testing::WriteFile(dir_.File("data.csv"), data);
  }

  // Runs pepnet_predict on the publish folder; returns its exit code.
  int Predict(std::string* output) {
    return testing::RunCommand(
        {testing::BinDir() + "/pepnet_predict", "--model_dir=" + dir_.File("pub"),
         "--data=" + dir_.File("data.csv"), "--out=" + dir_.File("scores")},
        dir_, output);
  }

  void ExpectRefused(const std::string& fragment) {
    std::string output;
    EXPECT_EQ(Predict(&output), 1) << output;
    EXPECT_NE(output.find(fragment), std::string::npos) << output;
    EXPECT_EQ(output.find("bad_alloc"), std::string::npos) << output;
    EXPECT_TRUE(testing::ReadFile(dir_.File("scores")).empty());
  }

  std::string File(uint64_t version, const std::string& name) const {
    return publisher_.VersionDir(version) + "/" + name;
  }

  testing::TempDir dir_;
  testing::TestPublisher publisher_{dir_.File("pub")};
};

TEST_F(PredictTest, ScoresAGoodModel) {
  std::string output;
  ASSERT_EQ(Predict(&output), 0) << output;
  const std::vector<std::string> lines = testing::ReadLines(dir_.File("scores"));
  ASSERT_EQ(lines.size(), 41u);
  EXPECT_EQ(lines[0], "click");
  for (size_t i = 1; i < lines.size(); ++i) {
    const double p = std::stod(lines[i]);
    EXPECT_TRUE(p > 0 && p < 1) << lines[i];
  }
}

TEST_F(PredictTest, RefusesNonFiniteDenseParameters) {
  std::vector<float> dense(publisher_.dense_floats(), 0.01f);
  dense[10] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_TRUE(publisher_.Publish(2, true, 2, dense).ok());
  ExpectRefused(File(2, "dense.bin") + ": dense parameter 10 is nan, not finite");
}

TEST_F(PredictTest, RefusesNonFiniteRows) {
  const float bad[8] = {0, std::numeric_limits<float>::infinity(), 0, 0, 0, 0, 0, 0};
  ASSERT_TRUE(publisher_.table()->BeginPass(2).ok());
  ASSERT_TRUE(publisher_.table()->SetWeights(testing::ModelKey(3, 77), bad, 8).ok());
  ASSERT_TRUE(publisher_.Publish(2, false, 1).ok());
  ExpectRefused(File(2, "rows-0.bin") + ": row of key");
}

// batch_size 0 made the scoring loop spin forever; a huge tower asked for terabytes.
TEST_F(PredictTest, RefusesAManifestModelOutOfBounds) {
  const std::string manifest = File(1, "manifest.pbtxt");
  ASSERT_TRUE(
      publisher_
          .EditManifest(1, [](proto::ModelManifest* m) { m->mutable_model()->set_batch_size(0); })
          .ok());
  ExpectRefused(manifest + ": model: batch_size must be in [1, 1048576], got 0");
  ASSERT_TRUE(publisher_
                  .EditManifest(1,
                                [](proto::ModelManifest* m) {
                                  m->mutable_model()->set_batch_size(16);
                                  m->mutable_model()->set_tower(0, 1000000000);
                                })
                  .ok());
  ExpectRefused(manifest + ": model: tower[0] must be in [1, 16384], got 1000000000");
}

TEST_F(PredictTest, RefusesDenseFloatsTheModelDoesNotImply) {
  const uint64_t implied = publisher_.dense_floats();
  ASSERT_TRUE(
      publisher_.EditManifest(1, [](proto::ModelManifest* m) { m->set_dense_floats(200000000); })
          .ok());
  ExpectRefused(File(1, "manifest.pbtxt") +
                ": dense_floats 200000000 is not what the model config implies (" +
                std::to_string(implied) + ")");
}

}  // namespace
}  // namespace pepnet
