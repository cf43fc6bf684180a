// Fuzz target: the data reader (worker/data_reader.h) turning CSV/TSV lines, plain or
// gzip, into batches of keys, labels and domains, with the configs of the shipped
// models.
//
// Input: one byte choosing the model config (configs/demo.pbtxt: CSV with a header,
// multi-valued and bucketed slots; byterec.pbtxt: headerless TSV; kuairand.pbtxt: CSV
// with log buckets and 16 domains), then the data file.
#include <glog/logging.h>

#include <string>
#include <vector>

#include "proto/model_config.pb.h"
#include "tests/fuzz/batch_check.h"
#include "tests/fuzz/fuzz_util.h"
#include "worker/data_reader.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

const char* const kConfigs[] = {"demo", "byterec", "kuairand"};

struct Setup {
  std::vector<proto::ModelConfig> configs;
  fuzz::MemFile file{"data"};
  Setup() {
    for (const char* name : kConfigs) {
      configs.emplace_back();
      fuzz::Require(LoadModelConfigFile(std::string(PEPNET_FUZZ_CONFIG_DIR) + "/" + name + ".pbtxt",
                                        &configs.back()),
                    name);
    }
  }
};

void Expect(bool ok, const std::string& what) {
  if (ok) return;
  fprintf(stderr, "data reader: %s\n", what.c_str());
  abort();
}

}  // namespace
}  // namespace pepnet

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  FLAGS_minloglevel = 2;  // the reader logs every malformed line it skips
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pepnet;
  static Setup* const setup = new Setup;
  if (size < 1) return 0;
  const proto::ModelConfig& config = setup->configs[data[0] % setup->configs.size()];
  setup->file.Set(data + 1, size - 1);
  DataReader reader(&config, {setup->file.path()});
  Batch batch;
  bool done = false;
  // Every call consumes a line or ends the file, and gzip expands at most about 1032
  // times: more calls than that many bytes is a spin.
  for (size_t calls = 0; !done; ++calls) {
    Expect(calls <= 1100 * size + 2, "Next() returns without consuming the input");
    if (!reader.Next(config.batch_size(), &batch, &done).ok()) break;
    fuzz::CheckBatch("data reader", config, batch);
  }
  return 0;
}
