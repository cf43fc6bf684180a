#include "worker/batch_prefetcher.h"

#include <gtest/gtest.h>

#include "proto/model_config.pb.h"
#include "tests/test_util.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

constexpr char kConfig[] = R"(
num_domains: 2
task { name: "click" }
slot { name: "domain" id: 1 role: DOMAIN dim: 4 }
slot { name: "user" id: 2 role: USER dim: 8 }
tower: 8
data { domain_column: "domain" max_error_rate: 0.5 }
)";

class BatchPrefetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ParseModelConfig(kConfig, "test", &config_).ok());
    std::string text = "user,domain,click\n";
    for (int i = 0; i < 1000; ++i) {
      text += "u" + std::to_string(i) + "," + std::to_string(i % 2) + "," +
              (i % 3 == 0 ? "1" : "0") + "\n";
    }
    testing::WriteFile(file_ = dir_.File("a.csv"), text);
  }

  testing::TempDir dir_;
  proto::ModelConfig config_;
  std::string file_;
};

// The same batches, in the same order, as reading directly; buffers are recycled.
TEST_F(BatchPrefetcherTest, YieldsWhatTheReaderYields) {
  DataReader direct(&config_, {file_}), ahead(&config_, {file_});
  BatchPrefetcher prefetcher(&ahead, 64, 3);
  Batch a, b;
  bool done_a = false, done_b = false;
  size_t samples = 0;
  while (!done_a) {
    ASSERT_TRUE(direct.Next(64, &a, &done_a).ok());
    ASSERT_TRUE(prefetcher.Next(&b, &done_b).ok());
    ASSERT_EQ(done_a, done_b);
    ASSERT_EQ(a.size, b.size);
    EXPECT_EQ(a.slot_keys, b.slot_keys);
    EXPECT_EQ(a.slot_offsets, b.slot_offsets);
    EXPECT_EQ(a.labels, b.labels);
    EXPECT_EQ(a.domain, b.domain);
    samples += b.size;
  }
  EXPECT_EQ(samples, 1000u);
  EXPECT_EQ(ahead.stats().samples, 1000u);
}

TEST_F(BatchPrefetcherTest, ReportsReaderErrors) {
  DataReader reader(&config_, {dir_.File("missing.csv")});
  BatchPrefetcher prefetcher(&reader, 64);
  Batch b;
  bool done = false;
  const Status st = prefetcher.Next(&b, &done);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("missing.csv"), std::string::npos) << st.ToString();
}

// Dropping the prefetcher with batches unread stops its thread without hanging.
TEST_F(BatchPrefetcherTest, StopsWhenDroppedEarly) {
  DataReader reader(&config_, {file_});
  {
    BatchPrefetcher prefetcher(&reader, 10, 2);
    Batch b;
    bool done = false;
    ASSERT_TRUE(prefetcher.Next(&b, &done).ok());
    EXPECT_EQ(b.size, 10u);
  }
  SUCCEED();
}

}  // namespace
}  // namespace pepnet
