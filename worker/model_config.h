// Loading and checking the PEPNet model config (proto/model_config.proto, text format).
//
// A config is read from files an operator or a published model version provides, so
// every size in it is bounded before anything is allocated from it: the limits below are
// generous for real models (configs/bench.pbtxt, the largest shipped, has 2.4 M dense
// floats and 18 k activation floats per sample) and keep a hostile or mistyped config from
// asking for terabytes.
#ifndef PEPNET_WORKER_MODEL_CONFIG_H_
#define PEPNET_WORKER_MODEL_CONFIG_H_

#include <cstdint>
#include <string>

#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelConfig;
class ModelManifest;
}  // namespace proto

// Bounds of the fields that size the model (ValidateModelConfig).
constexpr uint32_t kMaxTasks = 64;
constexpr uint32_t kMaxDomains = 4096;
constexpr uint32_t kMaxTowerLayers = 16;
constexpr uint32_t kMaxLayerWidth = 16384;  // tower widths and gate.hidden
constexpr uint32_t kMaxBatchSize = 1 << 20;
constexpr uint32_t kMaxLineBytes = 1 << 30;  // data.max_line_bytes
// Dense parameters of the whole model: 1 GiB of float32 (training keeps about five
// copies: weights, gradients, two Adam moments, a thread's part).
constexpr uint64_t kMaxDenseFloats = uint64_t{1} << 28;
// batch_size times the activation floats of one sample (every layer's input and output).
constexpr uint64_t kMaxBatchActivationFloats = uint64_t{1} << 30;

// Parses `text` (errors name `source` and the line) and validates it.
Status ParseModelConfig(const std::string& text, const std::string& source,
                        proto::ModelConfig* config);
// Refuses a file that is not a config file (CheckConfigFile, ps/table_config.h) before
// reading it.
Status LoadModelConfigFile(const std::string& path, proto::ModelConfig* config);

// Consistency checks and bounds; each error names the field (and slot or task) at fault.
Status ValidateModelConfig(const proto::ModelConfig& config);

// What a config sizes, computed without allocating (the count equals DenseParamCount of
// worker/trainer.h, which builds the parameters). Saturates instead of overflowing, so
// it is safe on configs not validated yet.
struct ModelSize {
  uint64_t dense_floats = 0;
  // Every linear layer's input and output width, summed: the forward activations of one
  // sample.
  uint64_t activation_floats_per_sample = 0;
};
ModelSize ModelSizeOf(const proto::ModelConfig& config);

// The model of a published version (its manifest at `manifest_path`): a valid config
// whose dense parameter count is the manifest's dense_floats. Errors name the manifest
// and the field.
Status CheckManifestModel(const proto::ModelManifest& manifest, const std::string& manifest_path);

// A hash of the config's content: processes of one cluster must agree on it.
uint64_t ModelConfigFingerprint(const proto::ModelConfig& config);

// The data column a slot or task reads (its `column`, or else its name).
std::string SlotColumn(const proto::ModelConfig& config, int slot_index);
std::string TaskColumn(const proto::ModelConfig& config, int task_index);

}  // namespace pepnet

#endif  // PEPNET_WORKER_MODEL_CONFIG_H_
