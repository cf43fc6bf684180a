// Byte layout of one embedding row inside a SlotShard's chunks, and the per-row math
// (deterministic initialization, AdaGrad). Header-only so the hot loops inline.
//
//   [key u64][RowMeta 16 bytes][weights dim x f32][accumulator 1 or dim x f32]
//
// Rows are 4-byte aligned (a 16-dim per-row-AdaGrad row is 92 bytes): x86 loads do not
// care, and padding to 8 would cost 4% of the table.
#ifndef PEPNET_PS_ROW_LAYOUT_H_
#define PEPNET_PS_ROW_LAYOUT_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/hash.h"

namespace pepnet {

// Counters the eviction policies read. The feature score is not stored: it is a
// function of the (decayed) show and click counts and the slot's coefficients.
struct RowMeta {
  float show = 0;
  float click = 0;
  uint32_t update_count = 0;  // saturates at UINT32_MAX
  // Pass numbers modulo 2^16: age comparisons are exact for ages below 65536 passes.
  uint16_t created_pass = 0;
  uint16_t last_update_pass = 0;
};
static_assert(sizeof(RowMeta) == 16, "RowMeta is part of the memory budget");

// Weights of the feature score (the defaults of Paddle's CTR accessor).
struct ScoreCoefficients {
  float nonclick = 0.1f;
  float click = 1.0f;
};

// The feature score that eviction ranks rows by: (show - click) * nonclick + click * click.
// Decaying show and click by a factor decays the score by the same factor, so keeping the
// two counts is enough and saves 4 bytes per row.
inline float FeatureScore(const RowMeta& meta, const ScoreCoefficients& c = {}) {
  return (meta.show - meta.click) * c.nonclick + meta.click * c.click;
}

struct AdagradParams {
  float learning_rate = 0.05f;
  float initial_accumulator = 0.0f;
  float epsilon = 1e-8f;
  float weight_bound = 10.0f;
  float init_range = 0.01f;
  bool per_dim = false;
};

struct RowLayout {
  uint32_t dim = 0;
  uint32_t acc_floats = 0;  // 1 (per-row accumulator) or dim
  uint32_t row_bytes = 0;
  AdagradParams adagrad;

  static constexpr uint32_t kMetaOffset = 8;
  static constexpr uint32_t kWeightsOffset = 8 + sizeof(RowMeta);

  static RowLayout Make(uint32_t dim, const AdagradParams& params) {
    RowLayout l;
    l.dim = dim;
    l.acc_floats = params.per_dim ? dim : 1;
    l.row_bytes = kWeightsOffset + 4 * (dim + l.acc_floats);
    l.adagrad = params;
    return l;
  }

  static uint64_t Key(const char* row) {
    uint64_t k;
    std::memcpy(&k, row, 8);
    return k;
  }
  static void SetKey(char* row, uint64_t key) { std::memcpy(row, &key, 8); }
  static RowMeta* Meta(char* row) { return reinterpret_cast<RowMeta*>(row + kMetaOffset); }
  static const RowMeta* Meta(const char* row) {
    return reinterpret_cast<const RowMeta*>(row + kMetaOffset);
  }
  static float* Weights(char* row) { return reinterpret_cast<float*>(row + kWeightsOffset); }
  static const float* Weights(const char* row) {
    return reinterpret_cast<const float*>(row + kWeightsOffset);
  }
  float* Accumulator(char* row) const { return Weights(row) + dim; }
  const float* Accumulator(const char* row) const { return Weights(row) + dim; }

  // The weights a new row of `key` starts from: uniform in [-range, range) from a stream
  // seeded by (key, seed) alone. Serving computes them for keys the model lacks.
  static void InitWeights(uint64_t key, uint64_t seed, uint32_t dim, float range, float* w) {
    uint64_t state = Mix64(key ^ Mix64(seed));
    for (uint32_t d = 0; d < dim; ++d) {
      state = Mix64(state);
      // 24 random bits -> [0, 1) exactly representable, then to [-range, range).
      float unit = static_cast<float>(state >> 40) * (1.0f / 16777216.0f);
      w[d] = (2.0f * unit - 1.0f) * range;
    }
  }

  // Fills a new row: weights uniform in [-init_range, init_range] from a stream seeded by
  // (key, seed) alone, so replaying a stream rebuilds the same table on any shard count.
  void InitRow(char* row, uint64_t key, uint64_t seed, uint16_t pass) const {
    SetKey(row, key);
    RowMeta meta;
    meta.created_pass = pass;
    meta.last_update_pass = pass;
    std::memcpy(row + kMetaOffset, &meta, sizeof(meta));
    InitWeights(key, seed, dim, adagrad.init_range, Weights(row));
    float* acc = Accumulator(row);
    for (uint32_t i = 0; i < acc_floats; ++i) acc[i] = adagrad.initial_accumulator;
  }

  // One AdaGrad step with an already-summed gradient:
  //   acc += g^2 (per dim) or mean(g^2) (per row);  w -= lr * g / sqrt(acc + eps);
  //   w clipped to [-weight_bound, weight_bound].
  // Always inlined: called per row in the push loop, where a call would cost more than
  // the update of a small row.
  [[gnu::always_inline]] void ApplyAdagrad(char* row, const float* __restrict grad) const {
    float* __restrict w = Weights(row);
    float* __restrict acc = Accumulator(row);
    const float lr = adagrad.learning_rate, eps = adagrad.epsilon, bound = adagrad.weight_bound;
    if (acc_floats == 1) {
      float sq = 0;
      // A vector reduction, not a chain of dependent adds (needs -fopenmp-simd).
#pragma omp simd reduction(+ : sq)
      for (uint32_t d = 0; d < dim; ++d) sq += grad[d] * grad[d];
      acc[0] += sq / static_cast<float>(dim);
      const float scale = lr / std::sqrt(acc[0] + eps);
      for (uint32_t d = 0; d < dim; ++d) {
        w[d] = std::clamp(w[d] - scale * grad[d], -bound, bound);
      }
    } else {
      for (uint32_t d = 0; d < dim; ++d) {
        acc[d] += grad[d] * grad[d];
        w[d] = std::clamp(w[d] - lr * grad[d] / std::sqrt(acc[d] + eps), -bound, bound);
      }
    }
  }

  static void CountUpdate(char* row, float show, float click, uint16_t pass) {
    RowMeta* m = Meta(row);
    m->show += show;
    m->click += click;
    if (m->update_count != UINT32_MAX) ++m->update_count;
    m->last_update_pass = pass;
  }
};

}  // namespace pepnet

#endif  // PEPNET_PS_ROW_LAYOUT_H_
