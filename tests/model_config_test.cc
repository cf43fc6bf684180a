#include "worker/model_config.h"

#include <gtest/gtest.h>

#include "proto/model_config.pb.h"

namespace pepnet {
namespace {

constexpr char kGood[] = R"(
num_domains: 2
task { name: "click" }
slot { name: "domain" id: 1 role: DOMAIN dim: 4 }
slot { name: "user" id: 2 role: USER dim: 8 }
slot { name: "hist" id: 3 dim: 8 multi_valued: true pooling: MEAN }
tower: 32
)";

constexpr char kData[] = "data { domain_column: \"domain\" }\n";

TEST(ModelConfigTest, ParsesWithDefaults) {
  proto::ModelConfig c;
  Status st = ParseModelConfig(std::string(kGood) + kData, "good.pbtxt", &c);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_FLOAT_EQ(c.gate().gamma(), 2.0f);
  EXPECT_TRUE(c.epnet_gate_sees_e());
  EXPECT_FLOAT_EQ(c.adam().learning_rate(), 5e-6f);
  EXPECT_EQ(c.batch_size(), 1024u);
  EXPECT_EQ(c.data().delimiter(), ",");
  EXPECT_EQ(SlotColumn(c, 1), "user");
  EXPECT_EQ(TaskColumn(c, 0), "click");
}

void ExpectError(const std::string& extra, const std::string& fragment) {
  proto::ModelConfig c;
  // Cases about `data` bring their own.
  const bool has_data = extra.find("data {") != std::string::npos;
  Status st =
      ParseModelConfig(std::string(kGood) + (has_data ? "" : kData) + extra, "bad.pbtxt", &c);
  EXPECT_EQ(st.code(), Status::kInvalidArgument) << extra;
  EXPECT_NE(st.message().find(fragment), std::string::npos) << st.message();
  EXPECT_EQ(st.message().rfind("bad.pbtxt", 0), 0u) << st.message();
}

TEST(ModelConfigTest, ErrorsNameTheField) {
  ExpectError("colour: 1", "colour");
  ExpectError("slot { name: \"user\" id: 9 dim: 4 }", "slot 'user': name used twice");
  ExpectError("slot { name: \"x\" id: 2 dim: 4 }", "slot 'x': id 2 used by another slot");
  ExpectError("slot { name: \"x\" id: 5000 dim: 4 }", "does not fit in slot_bits=10");
  ExpectError("slot { name: \"x\" id: 9 dim: 0 }", "slot 'x': dim");
  ExpectError("slot { name: \"x\" id: 9 dim: 4 bucketing { } }", "set exactly one of");
  ExpectError("slot { name: \"x\" id: 9 dim: 4 bucketing { boundary: [2, 1] } }",
              "strictly ascending");
  ExpectError("slot { name: \"x\" id: 9 dim: 4 bucketing { log_base: 1 } }", "log_base");
  ExpectError("task { name: \"click\" }", "task 'click': name used twice");
  ExpectError("tower: 0", "tower[1]");
  ExpectError("gate { gamma: 0 }", "gate.gamma");
  ExpectError("data { domain_column: \"domain\" delimiter: \"ab\" }", "data.delimiter");
  ExpectError("data { domain_column: \"domain\" has_header: false column: \"user\" }",
              "'domain' is not in data.column");
  ExpectError("data { domain_column: \"domain\" domain_value: \"a\" }",
              "data.domain_value lists 1 values");
  ExpectError("data { }", "domain_column");
}

TEST(ModelConfigTest, StructuralErrors) {
  proto::ModelConfig c;
  EXPECT_NE(ParseModelConfig("num_domains: 1 task { name: \"t\" } tower: 4 "
                             "slot { name: \"u\" id: 1 dim: 4 } data { domain_column: \"d\" }",
                             "x", &c)
                .message()
                .find("no slot has role DOMAIN"),
            std::string::npos);
  EXPECT_NE(ParseModelConfig("task { name: \"t\" }", "x", &c).message().find("num_domains"),
            std::string::npos);
}

TEST(ModelConfigTest, ShippedConfigsAreValid) {
  const char* dir = getenv("PEPNET_SOURCE_DIR");
  ASSERT_NE(dir, nullptr) << "run through ctest";
  for (const char* name : {"bench", "byterec", "kuairand"}) {
    proto::ModelConfig c;
    Status st = LoadModelConfigFile(std::string(dir) + "/configs/" + name + ".pbtxt", &c);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  proto::ModelConfig bench;
  ASSERT_TRUE(LoadModelConfigFile(std::string(dir) + "/configs/bench.pbtxt", &bench).ok());
  EXPECT_EQ(bench.slot_size(), 24);
  EXPECT_EQ(bench.task_size(), 3);
}

}  // namespace
}  // namespace pepnet
