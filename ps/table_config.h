// Options of a shard's embedding table, and their loading from protobuf text format
// (proto/table_config.proto; every field is described in docs/config.md).
#ifndef PEPNET_PS_TABLE_CONFIG_H_
#define PEPNET_PS_TABLE_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "ps/row_layout.h"

namespace pepnet {
namespace proto {
class SlotEviction;
class FeatureScoreConfig;
class ModelConfig;
}  // namespace proto

// Per-slot memory control (proto SlotEviction); every policy is off at its default.
struct SlotEvictionOptions {
  uint64_t max_rows = 0;  // per shard; 0 = no cap
  uint32_t ttl_passes = 0;
  uint32_t min_updates = 0;
  uint32_t min_updates_passes = 1;
  float delete_score_threshold = 0;
  uint32_t admission_threshold = 0;  // 0 or 1 = off

  bool admission() const { return admission_threshold > 1; }
};

struct SlotOptions {
  uint32_t id = 0;
  uint32_t dim = 0;
  std::string name;
  AdagradParams adagrad;
  SlotEvictionOptions eviction;
};

struct FeatureScoreOptions {
  ScoreCoefficients coefficients;
  float decay = 0.98f;  // show and click are multiplied by this at every pass end
};

struct TableOptions {
  std::vector<SlotOptions> slots;
  // Keys carry their slot in the top slot_bits bits.
  uint32_t slot_bits = 10;
  // 2^partition_bits partitions, each with its own lock: more means less contention
  // between server threads and a little more per-partition overhead.
  uint32_t partition_bits = 5;
  // Seed of the deterministic initialization of new rows.
  uint64_t seed = 0;
  FeatureScoreOptions score;
  uint64_t admission_filter_bytes = 4u << 20;
  uint32_t admission_halving_passes = 1;

  // Not part of the table config file: a property of the machine a shard runs on
  // (pepnet_ps --memory_limit_bytes). 0 = no limit. Past high_watermark * limit bytes
  // the lowest-score rows are evicted until low_watermark * limit is reached.
  uint64_t memory_limit_bytes = 0;
  double memory_high_watermark = 0.99;
  double memory_low_watermark = 0.95;

  // Not part of the table config file either: set by a shard that keeps storage
  // (pepnet_ps --data_dir). The table then logs the rows that deletions move, and a
  // commit rebuilds its indexes in a canonical layout, so that storage can restore the
  // table exactly (ps/table_image.h).
  bool durable = false;
};

constexpr uint32_t kMaxSlotDim = 4096;
// Rows record pass numbers modulo 2^16; ages up to this are compared exactly.
constexpr uint32_t kMaxPassAge = 32767;
// Admission counters are one byte.
constexpr uint32_t kMaxAdmissionThreshold = 255;

// Conversions of the config messages shared with the model config.
SlotEvictionOptions SlotEvictionFromProto(const proto::SlotEviction& p);
void SlotEvictionToProto(const SlotEvictionOptions& e, proto::SlotEviction* p);
FeatureScoreOptions FeatureScoreFromProto(const proto::FeatureScoreConfig& p);
void FeatureScoreToProto(const FeatureScoreOptions& o, proto::FeatureScoreConfig* p);

// Config files (table, model) are a few kilobytes; a bigger file is not a config.
constexpr uint64_t kMaxConfigFileBytes = 16 << 20;
// NotFound if `path` (a `what`, for the message) cannot be examined, InvalidArgument if
// it is not a regular file or is over kMaxConfigFileBytes: checked before a config or a
// manifest is read whole into memory.
Status CheckConfigFile(const std::string& path, const std::string& what);

// Parses and validates a TableConfig text. Errors name `source` (a file name) and the
// line, field or slot at fault.
Status ParseTableConfig(const std::string& text, const std::string& source, TableOptions* out);
// LoadTableConfigFile refuses what CheckConfigFile refuses first.
Status LoadTableConfigFile(const std::string& path, TableOptions* out);

// The text form of `options`, which ParseTableConfig reads back to the same options.
std::string FormatTableConfig(const TableOptions& options);

// Checks ranges and consistency; ParseTableConfig calls it.
Status ValidateTableOptions(const TableOptions& options);

// The embedding table a model config needs (its slots, dims, AdaGrad settings and
// memory control); shard servers for the model run with FormatTableConfig of it.
TableOptions TableOptionsFor(const proto::ModelConfig& config, uint64_t seed);

}  // namespace pepnet

#endif  // PEPNET_PS_TABLE_CONFIG_H_
