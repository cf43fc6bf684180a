// The body of POST /v1/score (docs/operations.md, "Serving"):
//
//   {"samples": [{"user": "u17", "history": ["i3", "i9"], "hour": 13, ...}, ...]}
//
// Each sample maps column names (the data files' columns) to values, turned into
// features exactly as a data line's cells are (worker/sample_encoder.h):
//   - a string is the cell's text; a number is the text it is written with, so 13 and
//     "13" are the same feature (an integer's text is its decimal digits; -0 reads "0");
//   - a multi-valued column takes an array of strings and numbers, or its values joined
//     by data.multi_value_separator in one string;
//   - null, an empty string or an absent column is an empty cell: a missing value;
//   - the config's label columns, and the other columns the data format names, are
//     accepted and ignored; the domain column is required as in a data file.
// Anything else is refused with InvalidArgument naming the field ("samples[2].hour: ..."),
// or the byte offset for malformed JSON.
//
// Not thread-safe; one parser per request at a time (it keeps its buffers).
#ifndef PEPNET_SERVE_SCORE_REQUEST_H_
#define PEPNET_SERVE_SCORE_REQUEST_H_

#include <memory>
#include <string>

#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}
struct Batch;

class ScoreRequestParser {
 public:
  // `config` is borrowed, valid, and outlives the parser.
  ScoreRequestParser(const proto::ModelConfig* config, size_t max_samples);
  ~ScoreRequestParser();

  // Fills `batch` (reset first) with the body's samples, in order.
  Status Parse(const std::string& body, Batch* batch);

 private:
  class Handler;
  std::unique_ptr<Handler> handler_;
};

}  // namespace pepnet

#endif  // PEPNET_SERVE_SCORE_REQUEST_H_
