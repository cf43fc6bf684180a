// The dense half of a checkpoint: parameters and Adam's state captured together, their
// encoding, and a trainer restored from them continuing exactly as the one that never
// stopped (which a restore of the parameters alone does not).
#include "worker/dense_state.h"

#include <gtest/gtest.h>

#include "common/hash.h"
#include "proto/model_config.pb.h"
#include "tests/test_util.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

namespace pepnet {
namespace {

constexpr char kConfig[] = R"(
num_domains: 2
task { name: "click" }
task { name: "like" }
slot { name: "domain" id: 1 role: DOMAIN dim: 4 }
slot { name: "user" id: 2 role: USER dim: 8 }
slot { name: "item" id: 3 role: ITEM dim: 8 }
tower: 16
batch_size: 64
adam { learning_rate: 0.01 }
data { domain_column: "domain" }
)";

// Rows that never change (a pull reads values made from the key; pushes are dropped): the
// dense parameters are then all the state there is.
class FixedRows : public EmbeddingStore {
 public:
  explicit FixedRows(const proto::ModelConfig& config) {
    for (const auto& s : config.slot()) dims_[s.id()] = s.dim();
  }
  Status Pull(const uint64_t* keys, size_t n, float* values) override {
    for (size_t i = 0; i < n; ++i) {
      const uint32_t dim = dims_.at(SlotOfKey(keys[i], 10));
      for (uint32_t d = 0; d < dim; ++d) {
        *values++ = static_cast<float>(Mix64(keys[i] + d) % 1000) / 5000.0f - 0.1f;
      }
    }
    return Status::OK();
  }
  Status Push(const uint64_t*, size_t, const float*, const float*, const float*) override {
    return Status::OK();
  }

 private:
  std::map<uint32_t, uint32_t> dims_;
};

std::vector<Batch> Batches(const proto::ModelConfig& config, const testing::TempDir& dir) {
  std::string text = "user,item,domain,click,like\n";
  for (int n = 0; n < 640; ++n) {
    const uint64_t h = Mix64(n);
    text += "u" + std::to_string(h % 50) + ",i" + std::to_string((h >> 8) % 70) + "," +
            std::to_string((h >> 16) % 2) + "," + std::to_string((h >> 20) % 3 == 0) + "," +
            std::to_string((h >> 24) % 5 == 0) + "\n";
  }
  testing::WriteFile(dir.File("data.csv"), text);
  DataReader reader(&config, {dir.File("data.csv")});
  std::vector<Batch> batches;
  for (bool done = false; !done;) {
    Batch b;
    EXPECT_TRUE(reader.Next(config.batch_size(), &b, &done).ok());
    if (b.size > 0) batches.push_back(std::move(b));
  }
  return batches;
}

Status Train(Trainer* t, const proto::ModelConfig& config, const std::vector<Batch>& batches,
             size_t from, size_t to) {
  std::vector<std::string> tasks;
  for (const auto& task : config.task()) tasks.push_back(task.name());
  PassMetrics metrics(tasks, config.num_domains());
  for (size_t i = from; i < to; ++i) PEPNET_RETURN_IF_ERROR(t->TrainBatch(batches[i], &metrics));
  return Status::OK();
}

TEST(DenseStateTest, EncodingRoundTripsAndRefusesDamage) {
  DenseState s;
  s.params = {1, 2, 3};
  s.m = {0.5f, 0.25f, 0.125f};
  s.v = {4, 5, 6};
  s.step = 42;
  const std::string bytes = EncodeDenseState(s);
  DenseState back;
  ASSERT_TRUE(DecodeDenseState(bytes, "x", &back).ok());
  EXPECT_EQ(back.params, s.params);
  EXPECT_EQ(back.m, s.m);
  EXPECT_EQ(back.v, s.v);
  EXPECT_EQ(back.step, 42);
  std::string flipped = bytes;
  flipped[30] ^= 1;
  Status st = DecodeDenseState(flipped, "dense-1.bin", &back);
  EXPECT_EQ(st.code(), Status::kCorruption);
  EXPECT_NE(st.message().find("dense-1.bin: checksum mismatch"), std::string::npos) << st.message();
  EXPECT_EQ(DecodeDenseState(bytes.substr(0, bytes.size() - 3), "x", &back).code(),
            Status::kCorruption);
  EXPECT_EQ(DecodeDenseState("PEPROWS2" + bytes.substr(8), "x", &back).code(), Status::kCorruption);
}

TEST(DenseStateTest, ARestoredTrainerContinuesBitForBit) {
  testing::TempDir dir;
  proto::ModelConfig config;
  ASSERT_TRUE(ParseModelConfig(kConfig, "test", &config).ok());
  const std::vector<Batch> batches = Batches(config, dir);
  ASSERT_EQ(batches.size(), 10u);
  FixedRows rows(config);
  Trainer original(config, &rows, 7, 1);
  ASSERT_TRUE(Train(&original, config, batches, 0, 5).ok());
  DenseState state;
  original.CaptureDenseState(&state);
  EXPECT_EQ(state.step, 5);
  ASSERT_TRUE(Train(&original, config, batches, 5, 10).ok());

  Trainer restored(config, &rows, 8, 1);  // another seed: nothing left of its own start
  ASSERT_TRUE(restored.LoadDenseState(state).ok());
  ASSERT_TRUE(Train(&restored, config, batches, 5, 10).ok());
  EXPECT_EQ(restored.DenseChecksum(), original.DenseChecksum());

  // The weights alone, beside fresh moments, train into another model: what a checkpoint
  // with optimizer state from another moment gives.
  Trainer weights_only(config, &rows, 8, 1);
  ASSERT_TRUE(weights_only.LoadParams(state.params.data(), state.params.size()).ok());
  ASSERT_TRUE(Train(&weights_only, config, batches, 5, 10).ok());
  EXPECT_NE(weights_only.DenseChecksum(), original.DenseChecksum());

  DenseState wrong = state;
  wrong.m.pop_back();
  EXPECT_EQ(restored.LoadDenseState(wrong).code(), Status::kInvalidArgument);
}

}  // namespace
}  // namespace pepnet
