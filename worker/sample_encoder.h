// SampleEncoder: one sample's cells (each column's text, as a data file holds it) into a
// Batch: labels, domain, and each slot's feature keys through the feature hashing and
// bucketing of the model config. The one place that turns raw values into keys, shared by
// the data reader (a line's fields) and serving (a request's JSON values), so that the two
// read a value the same way.
//
// An empty cell is a missing value: no key for its slot, no label for its task. Not
// thread-safe (scratch buffers); one encoder per thread.
#ifndef PEPNET_WORKER_SAMPLE_ENCODER_H_
#define PEPNET_WORKER_SAMPLE_ENCODER_H_

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "worker/data_reader.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}

struct SampleCells {
  std::vector<std::string_view> slot;  // [s]: the cell of slot s's column
  std::vector<std::string_view> task;  // [t]: the label cell of task t
  std::string_view domain;
  bool has_user = false;  // GAUC group: the user column's cell, if the data has one
  std::string_view user;

  explicit SampleCells(const proto::ModelConfig& config);
};

class SampleEncoder {
 public:
  // `config` is borrowed, valid (ValidateModelConfig), and outlives the encoder.
  explicit SampleEncoder(const proto::ModelConfig* config);

  // Appends the sample to `batch` (Reset for the config's slots), or leaves the batch as
  // it was and returns InvalidArgument naming the column and the value: a label or a
  // bucketed value that is not a number, a domain outside the config's, a multi-valued
  // cell over data.max_values_per_cell.
  Status Append(const SampleCells& cells, Batch* batch);

 private:
  const proto::ModelConfig* config_;
  std::vector<std::string> slot_column_, task_column_;
  std::unordered_map<std::string, uint32_t> domain_index_;  // from data.domain_value
  std::string scratch_;
};

// Parses a whole cell as a finite number.
bool ParseCellNumber(std::string_view cell, double* out);

}  // namespace pepnet

#endif  // PEPNET_WORKER_SAMPLE_ENCODER_H_
