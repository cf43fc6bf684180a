#include "worker/data_reader.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>

#include "proto/model_config.pb.h"
#include "tests/test_util.h"
#include "worker/feature_hash.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

constexpr char kConfig[] = R"(
num_domains: 2
task { name: "click" }
task { name: "like" column: "liked" }
slot { name: "domain" id: 1 role: DOMAIN dim: 4 }
slot { name: "user" id: 2 role: USER dim: 8 }
slot { name: "hist" id: 3 dim: 8 multi_valued: true }
slot { name: "age" id: 4 dim: 4 bucketing { boundary: [18, 30, 50] } }
slot { name: "views" id: 5 dim: 4 bucketing { log_base: 10 } }
tower: 8
data { domain_column: "domain" max_error_rate: 0.5 }
)";

uint64_t Key(uint32_t slot, const std::string& value) {
  return FeatureKeyOf(slot, value.data(), value.size(), 10);
}

class DataReaderTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(ParseModelConfig(kConfig, "test", &config_).ok()); }

  Status ReadAll(const std::vector<std::string>& files, Batch* batch, ReaderStats* stats) {
    DataReader reader(&config_, files);
    bool done = false;
    Status st = reader.Next(1000, batch, &done);
    *stats = reader.stats();
    if (st.ok()) {
      EXPECT_TRUE(done);
    }
    return st;
  }

  testing::TempDir dir_;
  proto::ModelConfig config_;
};

TEST_F(DataReaderTest, ParsesKeysLabelsDomainsAndBuckets) {
  const std::string f = dir_.File("a.csv");
  testing::WriteFile(f,
                     "user,domain,hist,click,liked,age,views\n"
                     "u1,0,i1|i2|,1,0,25,999\n"
                     "u2,1,,0,,60,\n");
  Batch b;
  ReaderStats stats;
  ASSERT_TRUE(ReadAll({f}, &b, &stats).ok());
  ASSERT_EQ(b.size, 2u);
  EXPECT_EQ(stats.samples, 2u);
  EXPECT_EQ(stats.malformed, 0u);
  // Slots in config order: domain, user, hist, age, views.
  EXPECT_EQ(b.slot_keys[0], (std::vector<uint64_t>{Key(1, "0"), Key(1, "1")}));
  EXPECT_EQ(b.slot_keys[1], (std::vector<uint64_t>{Key(2, "u1"), Key(2, "u2")}));
  EXPECT_EQ(b.slot_keys[2], (std::vector<uint64_t>{Key(3, "i1"), Key(3, "i2")}));
  EXPECT_EQ(b.slot_offsets[2], (std::vector<uint32_t>{0, 2, 2}));  // sample 2: no history
  EXPECT_EQ(b.slot_keys[3], (std::vector<uint64_t>{Key(4, "bucket:1"), Key(4, "bucket:3")}));
  // log10(1 + 999) = 3; an empty numeric cell is a missing value.
  EXPECT_EQ(b.slot_keys[4], (std::vector<uint64_t>{Key(5, "bucket:3")}));
  EXPECT_EQ(b.slot_offsets[4], (std::vector<uint32_t>{0, 1, 1}));
  EXPECT_EQ(b.labels, (std::vector<float>{1, 0, 0, 0}));
  EXPECT_EQ(b.label_mask, (std::vector<uint8_t>{1, 1, 1, 0}));
  EXPECT_EQ(b.domain, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(b.user[0], HashBytes("u1", 2));
  EXPECT_EQ(SlotOfKey(b.slot_keys[1][0], 10), 2u);
}

TEST_F(DataReaderTest, GzipAndHeaderlessAndBatches) {
  config_.mutable_data()->set_has_header(false);
  for (const char* c : {"user", "domain", "hist", "click", "liked", "age", "views"}) {
    config_.mutable_data()->add_column(c);
  }
  config_.mutable_data()->set_delimiter("\t");
  ASSERT_TRUE(ValidateModelConfig(config_).ok());
  const std::string f = dir_.File("a.tsv.gz");
  gzFile gz = gzopen(f.c_str(), "wb");
  for (int i = 0; i < 2500; ++i) {
    gzprintf(gz, "u%d\t%d\th%d\t%d\t1\t%d\t%d\n", i, i % 2, i % 7, i % 3 == 0, i % 90, i);
  }
  gzclose(gz);
  DataReader reader(&config_, {f});
  Batch b;
  bool done = false;
  size_t total = 0, batches = 0;
  while (!done) {
    ASSERT_TRUE(reader.Next(1024, &b, &done).ok());
    total += b.size;
    batches += b.size > 0;
    ASSERT_LE(b.size, 1024u);
  }
  EXPECT_EQ(total, 2500u);
  EXPECT_EQ(batches, 3u);
  EXPECT_EQ(reader.stats().malformed, 0u);
}

TEST_F(DataReaderTest, MalformedLinesAreSkippedCountedAndNamed) {
  const std::string f = dir_.File("bad.csv");
  testing::WriteFile(f,
                     "user,domain,hist,click,liked,age,views\n"
                     "u1,0,,1,0,25,1\n"
                     "u2,0,,1,0,25\n"      // line 3: too few fields
                     "u3,0,,yes,0,25,1\n"  // line 4: label not a number
                     "u4,7,,1,0,25,1\n"    // line 5: domain out of range
                     "u5,1,,1,0,old,1\n"   // line 6: bucketed value not a number
                     "u6,1,,1,0,25,1\n");
  Batch b;
  ReaderStats stats;
  Status st = ReadAll({f}, &b, &stats);
  // 4 of 6 lines are bad: over max_error_rate 0.5.
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("4 of 6 lines malformed"), std::string::npos) << st.message();
  EXPECT_EQ(stats.malformed, 4u);
  EXPECT_EQ(stats.first_error, f + ":3: has 6 fields, expected 7");

  config_.mutable_data()->set_max_error_rate(1.0);
  ASSERT_TRUE(ReadAll({f}, &b, &stats).ok());
  EXPECT_EQ(b.size, 2u);
  EXPECT_EQ(b.user[1], HashBytes("u6", 2)) << "a bad line leaves nothing behind";
  EXPECT_EQ(b.slot_keys[3].size(), 2u);
}

// A line or a multi-valued cell over its cap is malformed (it would otherwise take memory
// or create rows on the shards without bound); the lines around it still read.
TEST_F(DataReaderTest, OverlongLinesAndCellsAreMalformed) {
  config_.mutable_data()->set_max_error_rate(1.0);
  config_.mutable_data()->set_max_line_bytes(4096);
  config_.mutable_data()->set_max_values_per_cell(100);
  std::string many, too_many;
  for (int i = 0; i < 100; ++i) many += (i ? "|i" : "i") + std::to_string(i);
  too_many = many + "|extra";
  const std::string f = dir_.File("long.csv");
  testing::WriteFile(f,
                     "user,domain,hist,click,liked,age,views\n"
                     "u1,0," +
                         many + ",1,0,25,1\n" + "u2,0," + too_many +
                         ",1,0,25,1\n" +                                      // line 3: 101 values
                         "u3,0,i1,1,0,25," + std::string(5000, '7') + "\n" +  // line 4: long
                         "u4,0,i1,1,0,25,1\n");
  Batch b;
  ReaderStats stats;
  ASSERT_TRUE(ReadAll({f}, &b, &stats).ok());
  EXPECT_EQ(b.size, 2u);
  EXPECT_EQ(stats.malformed, 2u);
  EXPECT_EQ(b.slot_keys[2].size(), 101u);  // u1's 100 values and u4's one
  EXPECT_EQ(b.user[1], HashBytes("u4", 2));
  EXPECT_EQ(
      stats.first_error,
      f + ":3: slot 'hist' (column 'hist') has 101 values, over data.max_values_per_cell=100");

  // A line that is only long (no newline, 1 MiB) is read to its end and named.
  testing::WriteFile(f, "user,domain,hist,click,liked,age,views\n" + std::string(1 << 20, 'x'));
  ASSERT_TRUE(ReadAll({f}, &b, &stats).ok());
  EXPECT_EQ(b.size, 0u);
  EXPECT_EQ(stats.first_error, f + ":2: the line is longer than data.max_line_bytes=4096 bytes");
}

TEST_F(DataReaderTest, FileLevelErrorsAreClear) {
  Batch b;
  ReaderStats stats;
  Status st = ReadAll({dir_.File("missing.csv")}, &b, &stats);
  EXPECT_EQ(st.code(), Status::kNotFound);
  EXPECT_NE(st.message().find("missing.csv"), std::string::npos);
  const std::string f = dir_.File("nohist.csv");
  testing::WriteFile(f, "user,domain,click,liked,age,views\nu,0,1,1,1,1\n");
  st = ReadAll({f}, &b, &stats);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("no column 'hist' (slot 'hist') in the header"), std::string::npos)
      << st.message();
}

// The real samples shipped beside the project, read with the shipped configs.
TEST(RealSamplesTest, ByteRecAndKuaiRandReadCleanly) {
  const std::string src = testing::SourceDir();
  ASSERT_FALSE(src.empty()) << "run through ctest";
  const std::string shared = src + "/../shared/data";
  for (const testing::RealSample& c : testing::RealSamples()) {
    const std::string file = shared + "/" + c.file;
    if (testing::ReadFile(file).empty()) {
      GTEST_SKIP() << file << " is absent; the real-sample check needs the shared data";
    }
    proto::ModelConfig config;
    ASSERT_TRUE(LoadModelConfigFile(src + "/configs/" + c.config + ".pbtxt", &config).ok());
    DataReader reader(&config, {file});
    Batch b;
    bool done = false;
    ASSERT_TRUE(reader.Next(100000, &b, &done).ok()) << c.config;
    EXPECT_TRUE(done);
    EXPECT_EQ(b.size, 200u) << c.config;
    EXPECT_EQ(reader.stats().malformed, 0u) << reader.stats().first_error;
    double positives = 0;
    for (size_t i = 0; i < b.size; ++i) positives += b.labels[i * config.task_size()];
    EXPECT_GT(positives, 0) << c.config;
    EXPECT_LT(positives, b.size) << c.config;
  }
}

}  // namespace
}  // namespace pepnet
