// DenseState: the dense half of a model in training, weights and optimizer together:
// the parameters, Adam's two moments and its step count, captured at one moment (between
// two steps). A checkpoint that took the moments from one step and the weights from
// another would restore a model that trains into garbage; this one cannot.
//
// Its encoding is a dense checkpoint file of the coordinator's data dir and the payload
// that sends it to rejoining workers (docs/storage-format.md, "Dense checkpoint"):
//   "PEPDENS1"  uint64 n  int64 step  n float32 params  n float32 m  n float32 v
//   uint64 FileChecksum of every byte before it
#ifndef PEPNET_WORKER_DENSE_STATE_H_
#define PEPNET_WORKER_DENSE_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace pepnet {

struct DenseState {
  std::vector<float> params;  // PepNetParams::ForEach order, as dense.bin
  std::vector<float> m, v;    // Adam's moments, same order
  int64_t step = 0;           // Adam steps taken
};

std::string EncodeDenseState(const DenseState& state);
// Corruption naming `source` for a bad magic, a truncated or padded encoding, or a
// checksum mismatch.
Status DecodeDenseState(const std::string& bytes, const std::string& source, DenseState* out);

}  // namespace pepnet

#endif  // PEPNET_WORKER_DENSE_STATE_H_
