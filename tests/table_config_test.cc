#include "ps/table_config.h"

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace pepnet {
namespace {

TEST(TableConfigTest, ParsesSlotsWithDefaults) {
  TableOptions o;
  Status st = ParseTableConfig(R"(
    slot { id: 0 dim: 16 name: "user" }
    slot { id: 5 dim: 8 accumulator: PER_DIM learning_rate: 0.1 }
    seed: 3
  )",
                               "t.pbtxt", &o);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(o.slots.size(), 2u);
  EXPECT_EQ(o.slot_bits, 10u);
  EXPECT_EQ(o.seed, 3u);
  EXPECT_EQ(o.slots[0].dim, 16u);
  EXPECT_FALSE(o.slots[0].adagrad.per_dim);
  EXPECT_FLOAT_EQ(o.slots[0].adagrad.learning_rate, 0.05f);
  EXPECT_TRUE(o.slots[1].adagrad.per_dim);
  EXPECT_FLOAT_EQ(o.slots[1].adagrad.learning_rate, 0.1f);
}

void ExpectError(const std::string& text, const std::string& fragment) {
  TableOptions o;
  Status st = ParseTableConfig(text, "bad.pbtxt", &o);
  EXPECT_EQ(st.code(), Status::kInvalidArgument) << text;
  EXPECT_NE(st.message().find(fragment), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("bad.pbtxt"), std::string::npos) << st.message();
}

TEST(TableConfigTest, ErrorsNameTheProblem) {
  ExpectError("slot { id: 0 dim: 16 colour: 3 }", "colour");
  ExpectError("slot { id: 0 dim: 16 } bogus: 1", "bogus");
  ExpectError("slot { id: 0 }", "dim");
  ExpectError("slot { id: 0 dim: 0 }", "slot 0: dim");
  ExpectError("slot { id: 0 dim: 5000 }", "dim must be in");
  ExpectError("slot { id: 1 dim: 4 } slot { id: 1 dim: 8 }", "slot 1: configured twice");
  ExpectError("slot_bits: 4 slot { id: 16 dim: 4 }", "does not fit");
  ExpectError("slot { id: 2 dim: 4 learning_rate: -1 }", "learning_rate");
  ExpectError("slot { id: 2 dim: 4 initial_accumulator: 0 epsilon: 0 }", "initial_accumulator");
  ExpectError("partition_bits: 9 slot { id: 2 dim: 4 }", "partition_bits");
  ExpectError("", "no slot");
}

// An infinite rate or bound turns a row's first update into NaN weights.
TEST(TableConfigTest, NumbersMustBeFinite) {
  ExpectError("slot { id: 2 dim: 4 learning_rate: inf }", "slot 2: learning_rate");
  ExpectError("slot { id: 2 dim: 4 weight_bound: inf }", "must be finite");
  ExpectError("slot { id: 2 dim: 4 init_range: nan }", "must be finite");
  ExpectError("slot { id: 2 dim: 4 epsilon: inf }", "must be finite");
  ExpectError("slot { id: 2 dim: 4 eviction { delete_score_threshold: inf } }",
              "slot 2: eviction.delete_score_threshold must be >= 0 and finite");
  ExpectError("slot { id: 2 dim: 4 } score { nonclick_coeff: inf }",
              "score: nonclick_coeff and click_coeff must be >= 0 and finite");
  ExpectError("slot { id: 2 dim: 4 } score { decay: nan }", "score: decay");
  ExpectError("slot { id: 2 dim: 4 } admission_filter_bytes: 1099511627776",
              "admission_filter_bytes must be in");
}

TEST(TableConfigTest, FilesThatAreNoConfigAreRefusedUnread) {
  testing::TempDir dir;
  TableOptions o;
  const std::string big = dir.File("big.pbtxt");
  testing::WriteFile(big, std::string(kMaxConfigFileBytes + 1, '#'));
  Status st = LoadTableConfigFile(big, &o);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("table config " + big + " has 16777217 bytes, over the limit"),
            std::string::npos)
      << st.message();
  st = LoadTableConfigFile(dir.path(), &o);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find(dir.path() + " is not a regular file"), std::string::npos)
      << st.message();
}

TEST(TableConfigTest, FormatRoundTrips) {
  TableOptions o;
  ASSERT_TRUE(ParseTableConfig("slot { id: 3 dim: 8 accumulator: PER_DIM learning_rate: 0.2 "
                               "name: \"x\" } slot { id: 9 dim: 2 init_range: 0.5 } seed: 4 "
                               "partition_bits: 2",
                               "t", &o)
                  .ok());
  TableOptions back;
  Status st = ParseTableConfig(FormatTableConfig(o), "formatted", &back);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(FormatTableConfig(back), FormatTableConfig(o));
  EXPECT_EQ(back.seed, 4u);
  EXPECT_EQ(back.partition_bits, 2u);
  ASSERT_EQ(back.slots.size(), 2u);
  EXPECT_TRUE(back.slots[0].adagrad.per_dim);
  EXPECT_FLOAT_EQ(back.slots[0].adagrad.learning_rate, 0.2f);
  EXPECT_EQ(back.slots[0].name, "x");
  EXPECT_FLOAT_EQ(back.slots[1].adagrad.init_range, 0.5f);
}

TEST(TableConfigTest, MissingFileIsNotFound) {
  TableOptions o;
  Status st = LoadTableConfigFile("/nonexistent/table.pbtxt", &o);
  EXPECT_EQ(st.code(), Status::kNotFound);
  EXPECT_NE(st.message().find("/nonexistent/table.pbtxt"), std::string::npos);
}

}  // namespace
}  // namespace pepnet
