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

struct SlotOptions {
  uint32_t id = 0;
  uint32_t dim = 0;
  std::string name;
  AdagradParams adagrad;
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
};

constexpr uint32_t kMaxSlotDim = 4096;

// Parses and validates a TableConfig text. Errors name `source` (a file name) and the
// line, field or slot at fault.
Status ParseTableConfig(const std::string& text, const std::string& source, TableOptions* out);
Status LoadTableConfigFile(const std::string& path, TableOptions* out);

// The text form of `options`, which ParseTableConfig reads back to the same options.
std::string FormatTableConfig(const TableOptions& options);

// Checks ranges and consistency; ParseTableConfig calls it.
Status ValidateTableOptions(const TableOptions& options);

}  // namespace pepnet

#endif  // PEPNET_PS_TABLE_CONFIG_H_
