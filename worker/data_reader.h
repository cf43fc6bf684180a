// DataReader: streams training samples from CSV/TSV files (optionally gzip-compressed)
// into batches of feature keys, labels and domains, as the model config describes.
//
// Memory stays constant however large the files: one line is held at a time. A
// malformed line (wrong field count, non-numeric label or bucketed value, unknown
// domain) is skipped, counted and logged with file and line; a file whose share of
// malformed lines exceeds data.max_error_rate fails the read.
//
// Not thread-safe; one reader per thread.
#ifndef PEPNET_WORKER_DATA_READER_H_
#define PEPNET_WORKER_DATA_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}
class SampleEncoder;
struct SampleCells;

// Samples in slot-major (CSR) layout: sample i's keys of slot s are
// slot_keys[s][slot_offsets[s][i] .. slot_offsets[s][i + 1]).
struct Batch {
  size_t size = 0;
  std::vector<std::vector<uint32_t>> slot_offsets;
  std::vector<std::vector<uint64_t>> slot_keys;
  std::vector<float> labels;        // [i * num_tasks + t], 1 or 0
  std::vector<uint8_t> label_mask;  // [i * num_tasks + t], 0 = no label
  std::vector<uint32_t> domain;     // [i], in [0, num_domains)
  std::vector<uint64_t> user;       // [i], GAUC group: hash of the user column

  void Reset(size_t num_slots);
};

struct ReaderStats {
  uint64_t lines = 0;       // data lines read (headers excluded)
  uint64_t samples = 0;     // lines turned into samples
  uint64_t malformed = 0;   // lines skipped
  std::string first_error;  // "file:line: reason" of the first malformed line
};

class DataReader {
 public:
  // Reads `files` in order. `config` is borrowed and must be valid (ValidateModelConfig)
  // and outlive the reader.
  DataReader(const proto::ModelConfig* config, std::vector<std::string> files);
  ~DataReader();
  DataReader(const DataReader&) = delete;
  DataReader& operator=(const DataReader&) = delete;

  // Fills `batch` (cleared first) with up to max_samples samples. *done becomes true
  // once every file is consumed (the batch may still hold samples). Errors: a file that
  // cannot be opened or read, a header without a configured column, too many malformed
  // lines.
  Status Next(size_t max_samples, Batch* batch, bool* done);

  const ReaderStats& stats() const { return stats_; }

 private:
  class File;
  struct Columns;

  Status OpenNextFile();
  // Parses one line into the batch, or returns the reason it is malformed.
  Status ParseLine(const std::string& line, Batch* batch);
  Status CheckErrorRate(bool at_end) const;

  const proto::ModelConfig* config_;
  std::vector<std::string> files_;
  size_t next_file_ = 0;
  std::unique_ptr<File> file_;
  std::unique_ptr<Columns> columns_;
  uint64_t file_lines_ = 0, file_malformed_ = 0;
  ReaderStats stats_;
  std::unique_ptr<SampleEncoder> encoder_;
  std::unique_ptr<SampleCells> cells_;
  std::vector<std::string_view> fields_;
};

}  // namespace pepnet

#endif  // PEPNET_WORKER_DATA_READER_H_
