// ScoreRequestParser (serve/score_request.h): a request's samples become exactly the keys a
// data file's lines give (the same hashing and bucketing, numbers by their text, arrays as
// joined cells, absent and null values as empty cells), and every bad body is refused with
// a reason that names the field.
#include "serve/score_request.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "proto/model_config.pb.h"
#include "tests/test_util.h"
#include "worker/data_reader.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

class ScoreRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = testing::SourceDir() + "/configs/demo.pbtxt";
    ASSERT_TRUE(LoadModelConfigFile(path, &config_).ok());
    parser_.reset(new ScoreRequestParser(&config_, 8));
  }

  // The samples of a CSV body (with the data files' header) as the trainer reads them.
  Batch FromCsv(const std::string& lines) {
    const std::string file = dir_.File("data" + std::to_string(files_++) + ".csv");
    testing::WriteFile(
        file, "domain,user,item,author,history,topic,hour,age,like,forward,follow\n" + lines);
    DataReader reader(&config_, {file});
    Batch batch;
    bool done = false;
    EXPECT_TRUE(reader.Next(100, &batch, &done).ok());
    EXPECT_EQ(reader.stats().malformed, 0u) << reader.stats().first_error;
    return batch;
  }
  Batch FromJson(const std::string& body) {
    Batch batch;
    const Status st = parser_->Parse(body, &batch);
    EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << body;
    return batch;
  }
  static void ExpectSameFeatures(const Batch& a, const Batch& b) {
    ASSERT_EQ(a.size, b.size);
    EXPECT_EQ(a.slot_keys, b.slot_keys);
    EXPECT_EQ(a.slot_offsets, b.slot_offsets);
    EXPECT_EQ(a.domain, b.domain);
    EXPECT_EQ(a.user, b.user);
  }
  // The refusal of `body`: InvalidArgument whose message holds `fragment`.
  void ExpectRefused(const std::string& body, const std::string& fragment) {
    Batch batch;
    const Status st = parser_->Parse(body, &batch);
    EXPECT_EQ(st.code(), Status::kInvalidArgument) << body;
    EXPECT_NE(st.message().find(fragment), std::string::npos) << st.ToString() << "\n" << body;
  }

  testing::TempDir dir_;
  int files_ = 0;
  proto::ModelConfig config_;
  std::unique_ptr<ScoreRequestParser> parser_;
};

TEST_F(ScoreRequestTest, SamplesGiveTheKeysOfTheSameDataLines) {
  const Batch csv = FromCsv(
      "1,u3466,i1338,a96,i9223|i18019|i379|i9619,t6,13,20,1,0,0\n"
      "2,u7,i2,a5,i4,t1,3.5,61,0,,\n"
      "0,u8,i9,,,t2,,,,,\n");
  const Batch json = FromJson(R"({"samples": [
    {"domain": 1, "user": "u3466", "item": "i1338", "author": "a96",
     "history": ["i9223", "i18019", "i379", "i9619"], "topic": "t6", "hour": 13, "age": "20",
     "like": 1, "forward": 0, "follow": "0"},
    {"domain": "2", "user": "u7", "item": "i2", "author": "a5", "history": "i4", "topic": "t1",
     "hour": 3.5, "age": 61, "forward": null},
    {"domain": 0, "user": "u8", "item": "i9", "author": null, "history": [], "topic": "t2",
     "hour": ""}
  ]})");
  ExpectSameFeatures(csv, json);
  // Labels are ignored: serving has none.
  for (uint8_t m : json.label_mask) EXPECT_EQ(m, 0);
}

TEST_F(ScoreRequestTest, ANumberIsTheTextItIsWrittenWith) {
  ExpectSameFeatures(FromJson(R"({"samples": [{"domain": 1, "topic": 13}]})"),
                     FromJson(R"({"samples": [{"domain": 1, "topic": "13"}]})"));
  ExpectSameFeatures(FromJson(R"({"samples": [{"domain": 1, "topic": 1.50}]})"),
                     FromCsv("1,,,,,1.50,,,,,\n"));
  const Batch a = FromJson(R"({"samples": [{"domain": 1, "topic": 1.50}]})");
  const Batch b = FromJson(R"({"samples": [{"domain": 1, "topic": 1.5}]})");
  EXPECT_NE(a.slot_keys, b.slot_keys);
}

TEST_F(ScoreRequestTest, AMultiValuedColumnAsAnArrayOrAJoinedString) {
  ExpectSameFeatures(
      FromJson(R"({"samples": [{"domain": 1, "history": ["i3", 9, null, "", "i7"]}]})"),
      FromJson(R"({"samples": [{"domain": 1, "history": "i3|9|i7"}]})"));
  ExpectRefused(R"({"samples": [{"domain": 1, "history": ["i3|i4"]}]})",
                "samples[0].history: value 'i3|i4' holds the separator '|'");
}

TEST_F(ScoreRequestTest, BadBodiesAreRefusedNamingTheField) {
  ExpectRefused("", "empty body");
  ExpectRefused("  \n", "empty body");
  ExpectRefused("{\"samples\": [{\"domain\": 1,", "malformed JSON at byte");
  ExpectRefused("[1, 2]", "the body: an array, expected an object");
  ExpectRefused("{\"sample\": []}", "unknown key 'sample'");
  ExpectRefused("{}", "no \"samples\" key");
  ExpectRefused("{\"samples\": {}}", "samples: an object, expected an array of samples");
  ExpectRefused("{\"samples\": []}", "samples: no sample");
  ExpectRefused("{\"samples\": [1]}", "samples[0]: a number, expected a sample object");
  ExpectRefused(R"({"samples": [{"domain": 1}, {"domain": 1, "usr": "u1"}]})",
                "samples[1]: unknown column 'usr'");
  ExpectRefused(R"({"samples": [{"domain": 1, "user": true}]})",
                "samples[0].user: a boolean, expected a string or number");
  ExpectRefused(R"({"samples": [{"domain": 1, "user": {"id": 1}}]})",
                "samples[0].user: an object, expected a string or number");
  ExpectRefused(R"({"samples": [{"domain": 1, "user": ["u1"]}]})",
                "samples[0].user: an array, but the column is single-valued");
  ExpectRefused(R"({"samples": [{"domain": 1, "history": [["i1"]]}]})",
                "samples[0].history: an array, expected a string or number");
  ExpectRefused(R"({"samples": [{"domain": 1, "user": "a", "user": "b"}]})",
                "samples[0]: column 'user' given twice");
  ExpectRefused(R"({"samples": [{"domain": 1, "hour": "noon"}]})",
                "samples[0]: slot 'hour' (column 'hour') value 'noon' is not a number");
  ExpectRefused(R"({"samples": [{"user": "u1"}]})",
                "samples[0]: domain '' (column 'domain') is not an integer in [0, 3)");
  ExpectRefused(R"({"samples": [{"domain": 7}]})", "domain '7' (column 'domain')");
  std::string nine = "{\"samples\": [";
  for (int i = 0; i < 9; ++i) nine += std::string(i ? "," : "") + "{\"domain\": 1}";
  ExpectRefused(nine + "]}", "more than 8 samples in one request (--max_samples_per_request)");
  // The parser is whole again after a refusal.
  EXPECT_EQ(FromJson(R"({"samples": [{"domain": 2}]})").size, 1u);
}

TEST_F(ScoreRequestTest, ACellOverTheValueCapIsRefused) {
  std::string values;
  for (int i = 0; i < 1025; ++i) values += std::string(i ? "|" : "") + "i" + std::to_string(i);
  ExpectRefused("{\"samples\": [{\"domain\": 1, \"history\": \"" + values + "\"}]}",
                "samples[0]: slot 'history' (column 'history') has 1025 values, over "
                "data.max_values_per_cell=1024");
}

}  // namespace
}  // namespace pepnet
