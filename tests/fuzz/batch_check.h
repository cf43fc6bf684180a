// What every batch promises its consumers (the trainer and the scorer index with these),
// checked by the fuzz targets of the readers that build batches: the data reader and the
// scoring request parser.
#ifndef PEPNET_TESTS_FUZZ_BATCH_CHECK_H_
#define PEPNET_TESTS_FUZZ_BATCH_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

#include "proto/model_config.pb.h"
#include "worker/data_reader.h"

namespace pepnet {
namespace fuzz {

inline void CheckBatch(const char* who, const proto::ModelConfig& config, const Batch& b) {
  auto expect = [who](bool ok, const char* what) {
    if (ok) return;
    fprintf(stderr, "%s: %s\n", who, what);
    abort();
  };
  expect(b.slot_offsets.size() == static_cast<size_t>(config.slot_size()), "slot count");
  for (int s = 0; s < config.slot_size(); ++s) {
    const auto& offsets = b.slot_offsets[s];
    expect(offsets.size() == b.size + 1 && offsets.front() == 0 &&
               offsets.back() == b.slot_keys[s].size(),
           "slot offsets");
    for (size_t i = 0; i < b.size; ++i) expect(offsets[i] <= offsets[i + 1], "offsets descend");
  }
  expect(b.labels.size() == b.size * config.task_size() && b.label_mask.size() == b.labels.size(),
         "labels");
  expect(b.domain.size() == b.size && b.user.size() == b.size, "domains or users");
  for (uint32_t d : b.domain) expect(d < config.num_domains(), "domain out of range");
  for (float l : b.labels) expect(l == 0 || l == 1, "label not 0 or 1");
}

}  // namespace fuzz
}  // namespace pepnet

#endif  // PEPNET_TESTS_FUZZ_BATCH_CHECK_H_
