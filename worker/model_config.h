// Loading and checking the PEPNet model config (proto/model_config.proto, text format).
#ifndef PEPNET_WORKER_MODEL_CONFIG_H_
#define PEPNET_WORKER_MODEL_CONFIG_H_

#include <cstdint>
#include <string>

#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}

// Parses `text` (errors name `source` and the line) and validates it.
Status ParseModelConfig(const std::string& text, const std::string& source,
                        proto::ModelConfig* config);
Status LoadModelConfigFile(const std::string& path, proto::ModelConfig* config);

// Consistency checks; each error names the field (and slot or task) at fault.
Status ValidateModelConfig(const proto::ModelConfig& config);

// A hash of the config's content: processes of one cluster must agree on it.
uint64_t ModelConfigFingerprint(const proto::ModelConfig& config);

// The data column a slot or task reads (its `column`, or else its name).
std::string SlotColumn(const proto::ModelConfig& config, int slot_index);
std::string TaskColumn(const proto::ModelConfig& config, int task_index);

}  // namespace pepnet

#endif  // PEPNET_WORKER_MODEL_CONFIG_H_
