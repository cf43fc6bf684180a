// ServingTable (serve/serving_table.h): rows set, replaced and erased in any order read back
// exactly (against a map, through the index's growth and its backward-shift deletions);
// reservations keep every row; keys the model lacks read what the training table would
// create them with, or zeros under admission; bytes per row stay near weights + key.
#include "serve/serving_table.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "proto/model_config.pb.h"
#include "ps/embedding_table.h"
#include "ps/table_config.h"
#include "tests/test_util.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

constexpr char kModel[] = R"(
num_domains: 2
task { name: "click" }
slot { name: "domain" id: 1 role: DOMAIN dim: 4 }
slot { name: "user" id: 2 role: USER dim: 8 }
slot { name: "item" id: 3 dim: 16 eviction { admission_threshold: 3 } }
tower: 8
data { domain_column: "domain" }
)";

class ServingTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ParseModelConfig(kModel, "model", &model_).ok());
    ASSERT_TRUE(ServingTable::Create(model_, 42, &table_).ok());
  }
  std::vector<float> Row(uint64_t key) const {
    std::vector<float> out(table_->DimOf(key));
    table_->Read(key, out.data());
    return out;
  }
  proto::ModelConfig model_;
  std::unique_ptr<ServingTable> table_;
};

TEST_F(ServingTableTest, MatchesAMapThroughSetsReplacementsAndErasures) {
  std::map<uint64_t, std::vector<float>> expected;
  std::mt19937_64 rng(3);
  std::vector<uint64_t> keys;
  for (int i = 0; i < 3000; ++i) keys.push_back(testing::TestKey(2, i % 1500));
  for (int step = 0; step < 60000; ++step) {
    const uint64_t key = keys[rng() % keys.size()];
    if (rng() % 3 == 0) {
      table_->Erase(key);
      expected.erase(key);
    } else {
      std::vector<float> w(8);
      for (float& x : w) x = static_cast<float>(rng() % 1000) / 7.0f;
      ASSERT_TRUE(table_->Set(key, w.data(), 8).ok());
      expected[key] = w;
    }
    if (step % 5000 == 0 || step == 59999) {
      ASSERT_EQ(table_->rows(), expected.size()) << "step " << step;
      for (const auto& [k, w] : expected) {
        ASSERT_TRUE(table_->Contains(k));
        ASSERT_EQ(Row(k), w) << "step " << step;
      }
    }
  }
  for (uint64_t key : keys) EXPECT_EQ(table_->Contains(key), expected.count(key) > 0);
}

TEST_F(ServingTableTest, AReservationKeepsEveryRowAndMakesRoomForTheNew) {
  std::vector<uint64_t> first, second;
  const std::vector<float> one(8, 1.0f), two(8, 2.0f);
  for (int i = 0; i < 1000; ++i) first.push_back(testing::TestKey(2, i));
  for (int i = 500; i < 5000; ++i) second.push_back(testing::TestKey(2, i));
  for (uint64_t k : first) ASSERT_TRUE(table_->Set(k, one.data(), 8).ok());
  ServingTable::Reservation room = table_->Reserve(second.data(), second.size());
  // Made beside the live arrays: nothing read changes until it is installed.
  for (uint64_t k : first) ASSERT_EQ(Row(k), one);
  table_->Install(&room);
  for (uint64_t k : first) ASSERT_EQ(Row(k), one);
  for (uint64_t k : second) ASSERT_TRUE(table_->Set(k, two.data(), 8).ok());
  EXPECT_EQ(table_->rows(), 5000u);
  for (int i = 0; i < 5000; ++i) EXPECT_EQ(Row(testing::TestKey(2, i)), i < 500 ? one : two);
}

TEST_F(ServingTableTest, AbsentKeysReadWhatTheTrainingTableCreatesThemWith) {
  std::unique_ptr<EmbeddingTable> training;
  ASSERT_TRUE(EmbeddingTable::Create(TableOptionsFor(model_, 42), &training).ok());
  const std::vector<float> w(8, 0.5f);
  ASSERT_TRUE(table_->Set(testing::TestKey(2, 1), w.data(), 8).ok());
  for (uint64_t id = 0; id < 50; ++id) {
    const uint64_t user = testing::TestKey(2, id), item = testing::TestKey(3, id);
    std::vector<float> pulled(8 + 16);
    const uint64_t both[2] = {user, item};
    ASSERT_TRUE(training->Pull(both, 2, pulled.data()).ok());
    if (id != 1) {
      EXPECT_EQ(Row(user), std::vector<float>(pulled.begin(), pulled.begin() + 8)) << id;
    }
    // Admission: a key never pushed reads zeros on the servers and here.
    EXPECT_EQ(Row(item), std::vector<float>(16, 0.0f));
    EXPECT_EQ(std::vector<float>(pulled.begin() + 8, pulled.end()), std::vector<float>(16, 0.0f));
  }
  EXPECT_EQ(Row(testing::TestKey(2, 1)), w);
  EXPECT_EQ(table_->rows(), 1u);  // reads add no row
}

TEST_F(ServingTableTest, RefusesRowsOfNoSlotOrTheWrongDim) {
  const std::vector<float> w(16, 1.0f);
  Status st = table_->Set(testing::TestKey(9, 1), w.data(), 8);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("no slot"), std::string::npos) << st.ToString();
  st = table_->Set(testing::TestKey(2, 1), w.data(), 16);
  EXPECT_NE(st.message().find("dim 16, its slot's is 8"), std::string::npos) << st.ToString();
  EXPECT_EQ(table_->DimOf(testing::TestKey(9, 1)), 0u);
  EXPECT_EQ(table_->DimOf(testing::TestKey(3, 1)), 16u);
}

TEST_F(ServingTableTest, BytesPerRowStayNearTheWeightsAndTheKey) {
  const std::vector<float> w(16, 1.0f);
  for (int i = 0; i < 100000; ++i)
    ASSERT_TRUE(table_->Set(testing::TestKey(3, i), w.data(), 16).ok());
  const double per_row = double(table_->bytes()) / double(table_->rows());
  // 64 bytes of weights and 8 of key; the index and the arrays' spare room add the rest.
  EXPECT_GE(per_row, 72.0);
  EXPECT_LE(per_row, 72.0 * 2 + 10) << per_row;
}

}  // namespace
}  // namespace pepnet
