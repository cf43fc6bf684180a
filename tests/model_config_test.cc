#include "worker/model_config.h"

#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <string>

#include "proto/model_config.pb.h"
#include "proto/publish.pb.h"
#include "tests/test_util.h"
#include "worker/trainer.h"

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

// Sizes that would make a reader loop spin, or ask for more memory than any real model
// needs, are refused before anything is allocated from them.
TEST(ModelConfigTest, SizesAreBounded) {
  ExpectError("batch_size: 0", "batch_size must be in [1, 1048576], got 0");
  ExpectError("batch_size: 2000000", "batch_size must be in [1, 1048576]");
  ExpectError("tower: 100000", "tower[1] must be in [1, 16384], got 100000");
  ExpectError("tower: 4294967295", "tower[1]");
  std::string layers;
  for (int i = 0; i < 16; ++i) layers += "tower: 4 ";
  ExpectError(layers, "tower: 17 layers, over the limit of 16");
  ExpectError("gate { hidden: 1000000 }", "gate.hidden must be at most 16384");
  for (const char* domains : {"0", "100000"}) {
    std::string text = std::string(kGood) + kData;
    text.replace(text.find("num_domains: 2"), 14, std::string("num_domains: ") + domains);
    proto::ModelConfig c;
    Status st = ParseModelConfig(text, "bad.pbtxt", &c);
    EXPECT_NE(st.message().find("bad.pbtxt: num_domains must be in [1, 4096], got " +
                                std::string(domains)),
              std::string::npos)
        << st.message();
  }
  std::string tasks;
  for (int i = 0; i < 64; ++i) tasks += "task { name: \"t" + std::to_string(i) + "\" } ";
  ExpectError(tasks, "task: 65 tasks, over the limit of 64");
  // Each width within its bound, the whole over the dense limit: 16384 x 16384 floats.
  ExpectError("tower: 16384 tower: 16384", "dense parameters, over the limit of 268435456");
  ExpectError("data { domain_column: \"domain\" max_line_bytes: 0 }",
              "data.max_line_bytes must be in [1, 1073741824], got 0");
  ExpectError("data { domain_column: \"domain\" max_line_bytes: 4294967295 }",
              "data.max_line_bytes must be in [1, 1073741824]");
  ExpectError("data { domain_column: \"domain\" max_values_per_cell: 0 }",
              "data.max_values_per_cell must be >= 1");
  ExpectError("tower: 16384 gate { hidden: 8 } batch_size: 1048576",
              "activation floats per sample is over the limit of 1073741824");
}

TEST(ModelConfigTest, NumbersMustBeFinite) {
  ExpectError("gate { gamma: inf }", "gate.gamma must be > 0 and finite");
  ExpectError("adam { learning_rate: nan }", "adam.learning_rate");
  ExpectError("adam { learning_rate: inf }", "adam.learning_rate");
  ExpectError("adam { beta1: 1 }", "adam.beta1 and adam.beta2 must be in [0, 1)");
  ExpectError("adam { beta2: -0.5 }", "adam.beta1 and adam.beta2");
  ExpectError("adam { epsilon: 0 }", "adam.epsilon");
  ExpectError("embedding_learning_rate: inf", "embedding_learning_rate");
  ExpectError("slot { name: \"x\" id: 9 dim: 4 learning_rate: inf }", "slot 'x': learning_rate");
  ExpectError("slot { name: \"x\" id: 9 dim: 4 bucketing { boundary: [inf] } }",
              "slot 'x'.bucketing.boundary entry 0 is not finite");
  ExpectError("slot { name: \"x\" id: 9 dim: 4 bucketing { boundary: [nan] } }", "not finite");
  ExpectError("slot { name: \"x\" id: 9 dim: 4 bucketing { log_base: inf } }", "log_base");
  ExpectError("task { name: \"t\" click_weight: -1 }", "task 't': click_weight");
  ExpectError("task { name: \"t\" click_weight: nan }", "task 't': click_weight");
}

TEST(ModelConfigTest, TheTableSettingsItCarriesAreChecked) {
  ExpectError("score { decay: 2 }", "the table settings of the model: score: decay");
  ExpectError("score { click_coeff: inf }", "score: nonclick_coeff and click_coeff");
  ExpectError("admission_filter_bytes: 1", "admission_filter_bytes");
  ExpectError("slot { name: \"x\" id: 9 dim: 4 eviction { ttl_passes: 100000 } }",
              "eviction.ttl_passes");
}

TEST(ModelConfigTest, FilesThatAreNoConfigAreRefusedUnread) {
  testing::TempDir dir;
  proto::ModelConfig c;
  const std::string big = dir.File("big.pbtxt");
  testing::WriteFile(big, std::string(kMaxConfigFileBytes + 1, '#'));
  Status st = LoadModelConfigFile(big, &c);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find(big + " has 16777217 bytes, over the limit"), std::string::npos)
      << st.message();
  st = LoadModelConfigFile(dir.path(), &c);
  EXPECT_NE(st.message().find(dir.path() + " is not a regular file"), std::string::npos)
      << st.message();
  EXPECT_EQ(LoadModelConfigFile(dir.File("absent.pbtxt"), &c).code(), Status::kNotFound);
}

// ModelSizeOf mirrors the model's own layout; a difference would refuse every published
// version of that model (or let a wrong dense_floats through).
TEST(ModelConfigTest, ModelSizeIsTheModelsDenseParameterCount) {
  const std::string src = testing::SourceDir();
  ASSERT_FALSE(src.empty()) << "run through ctest";
  const char* variants[] = {"",
                            "disable_gates: true",
                            "ppnet_shared_gate_per_layer: true",
                            "ppnet_gate_outputs: true",
                            "epnet_gate_sees_e: false",
                            "gate { hidden: 24 }",
                            "ppnet_shared_gate_per_layer: true ppnet_gate_outputs: true "
                            "gate { hidden: 8 }"};
  for (const char* name : {"bench", "byterec", "demo", "kuairand"}) {
    proto::ModelConfig base;
    const std::string path = src + "/configs/" + name + ".pbtxt";
    ASSERT_TRUE(LoadModelConfigFile(path, &base).ok()) << path;
    for (const char* variant : variants) {
      proto::ModelConfig c = base;
      proto::ModelConfig extra;
      google::protobuf::TextFormat::Parser parser;
      parser.AllowPartialMessage(true);  // a variant sets a few fields, no required ones
      ASSERT_TRUE(parser.ParseFromString(variant, &extra)) << variant;
      c.MergeFrom(extra);
      ASSERT_TRUE(ValidateModelConfig(c).ok()) << name << " " << variant;
      EXPECT_EQ(ModelSizeOf(c).dense_floats, DenseParamCount(c)) << name << " " << variant;
    }
  }
  proto::ModelConfig bench;
  ASSERT_TRUE(LoadModelConfigFile(src + "/configs/bench.pbtxt", &bench).ok());
  EXPECT_EQ(ModelSizeOf(bench).dense_floats, 2372099u);
}

TEST(ModelConfigTest, AManifestsModelMustImplyItsDenseFloats) {
  proto::ModelManifest m;
  Status st = CheckManifestModel(m, "pub/v-00000003/manifest.pbtxt");
  EXPECT_EQ(st.code(), Status::kCorruption);
  EXPECT_EQ(st.message(), "pub/v-00000003/manifest.pbtxt: no model");
  ASSERT_TRUE(ParseModelConfig(std::string(kGood) + kData, "good.pbtxt", m.mutable_model()).ok());
  const uint64_t implied = ModelSizeOf(m.model()).dense_floats;
  m.set_dense_floats(implied);
  EXPECT_TRUE(CheckManifestModel(m, "pub/v-00000003/manifest.pbtxt").ok());
  m.set_dense_floats(1000000000000);
  st = CheckManifestModel(m, "pub/v-00000003/manifest.pbtxt");
  EXPECT_EQ(st.message(),
            "pub/v-00000003/manifest.pbtxt: dense_floats 1000000000000 is not what "
            "the model config implies (" +
                std::to_string(implied) + ")");
  m.set_dense_floats(implied);
  m.mutable_model()->set_batch_size(0);
  st = CheckManifestModel(m, "pub/v-00000003/manifest.pbtxt");
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("pub/v-00000003/manifest.pbtxt: model: batch_size must be in"),
            std::string::npos)
      << st.message();
}

}  // namespace
}  // namespace pepnet
