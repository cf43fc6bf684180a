// Fuzz target: the model config parser and its validation (worker/model_config.h):
// protobuf text format, then every bound and consistency check. A config it accepts
// must keep its promises: a bounded model size, table settings a table accepts, and the
// same verdict on its own text form.
//
// Input: the text of a model config.
#include <google/protobuf/text_format.h>

#include <string>

#include "proto/model_config.pb.h"
#include "ps/table_config.h"
#include "tests/fuzz/fuzz_util.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

void Expect(bool ok, const std::string& what) {
  if (ok) return;
  fprintf(stderr, "model config: %s\n", what.c_str());
  abort();
}

}  // namespace
}  // namespace pepnet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pepnet;
  const std::string text(reinterpret_cast<const char*>(data), size);
  proto::ModelConfig config;
  if (!ParseModelConfig(text, "fuzz.pbtxt", &config).ok()) return 0;
  const ModelSize model = ModelSizeOf(config);
  Expect(model.dense_floats <= kMaxDenseFloats, "dense floats over the limit passed");
  Expect(config.batch_size() >= 1 &&
             config.batch_size() * model.activation_floats_per_sample <= kMaxBatchActivationFloats,
         "batch activations over the limit passed");
  TableOptions table = TableOptionsFor(config, 0);
  Expect(ValidateTableOptions(table).ok(), "its table settings do not validate");
  TableOptions back;
  Expect(ParseTableConfig(FormatTableConfig(table), "formatted", &back).ok(),
         "its table config does not read back");
  std::string again;
  google::protobuf::TextFormat::PrintToString(config, &again);
  proto::ModelConfig reparsed;
  Expect(ParseModelConfig(again, "printed", &reparsed).ok(), "its printed form is refused");
  Expect(ModelConfigFingerprint(reparsed) == ModelConfigFingerprint(config),
         "its printed form is another config");
  return 0;
}
