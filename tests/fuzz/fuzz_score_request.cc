// Fuzz target: the body of pepnet_serve's POST /v1/score (serve/score_request.h), what a
// hostile client controls: malformed JSON, wrong types, unknown and repeated columns,
// huge arrays. With the demo's model config (multi-valued and bucketed slots, three
// domains).
//
// Input: the request body.
#include <glog/logging.h>

#include <string>

#include "proto/model_config.pb.h"
#include "serve/score_request.h"
#include "tests/fuzz/batch_check.h"
#include "tests/fuzz/fuzz_util.h"
#include "worker/data_reader.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

constexpr size_t kMaxSamples = 64;

struct Setup {
  proto::ModelConfig config;
  std::unique_ptr<ScoreRequestParser> parser;
  Setup() {
    fuzz::Require(LoadModelConfigFile(std::string(PEPNET_FUZZ_CONFIG_DIR) + "/demo.pbtxt", &config),
                  "demo.pbtxt");
    parser.reset(new ScoreRequestParser(&config, kMaxSamples));
  }
};

}  // namespace
}  // namespace pepnet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pepnet;
  static Setup* const setup = new Setup;
  const std::string body(reinterpret_cast<const char*>(data), size);
  Batch batch;
  // One parser for every input, as a server thread keeps one: a refusal must leave it
  // whole for the next body.
  const Status st = setup->parser->Parse(body, &batch);
  if (st.ok()) {
    fuzz::CheckBatch("score request", setup->config, batch);
    if (batch.size == 0 || batch.size > kMaxSamples) {
      fprintf(stderr, "score request: %zu samples accepted\n", batch.size);
      abort();
    }
  } else if (st.code() != Status::kInvalidArgument || st.message().empty()) {
    fprintf(stderr, "score request: refused as %s\n", st.ToString().c_str());
    abort();
  }
  return 0;
}
