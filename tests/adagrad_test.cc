// AdaGrad and initialization numerics against values computed by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ps/row_layout.h"

namespace pepnet {
namespace {

std::vector<char> NewRow(const RowLayout& layout, uint64_t key, uint64_t seed = 7) {
  std::vector<char> row(layout.row_bytes);
  layout.InitRow(row.data(), key, seed, /*pass=*/3);
  return row;
}

TEST(AdagradTest, PerDimStepMatchesHandComputation) {
  AdagradParams p;
  p.per_dim = true;
  p.learning_rate = 0.05f;
  p.initial_accumulator = 0.1f;
  p.epsilon = 0.0f;
  RowLayout layout = RowLayout::Make(2, p);
  auto row = NewRow(layout, 42);
  float* w = RowLayout::Weights(row.data());
  w[0] = 1.0f;
  w[1] = -1.0f;
  const float g[2] = {0.3f, -0.4f};
  layout.ApplyAdagrad(row.data(), g);
  // acc = 0.1 + g^2 = {0.19, 0.26}; w -= 0.05 * g / sqrt(acc).
  EXPECT_NEAR(layout.Accumulator(row.data())[0], 0.19f, 1e-7);
  EXPECT_NEAR(layout.Accumulator(row.data())[1], 0.26f, 1e-7);
  EXPECT_NEAR(w[0], 1.0 - 0.05 * 0.3 / std::sqrt(0.19), 1e-6);
  EXPECT_NEAR(w[1], -1.0 + 0.05 * 0.4 / std::sqrt(0.26), 1e-6);
  // Second step accumulates.
  layout.ApplyAdagrad(row.data(), g);
  EXPECT_NEAR(layout.Accumulator(row.data())[0], 0.28f, 1e-7);
  EXPECT_NEAR(w[0], 1.0 - 0.05 * 0.3 / std::sqrt(0.19) - 0.05 * 0.3 / std::sqrt(0.28), 1e-6);
}

TEST(AdagradTest, PerRowAccumulatesMeanSquare) {
  AdagradParams p;
  p.per_dim = false;
  p.learning_rate = 0.1f;
  p.initial_accumulator = 0.5f;
  p.epsilon = 1e-8f;
  RowLayout layout = RowLayout::Make(4, p);
  EXPECT_EQ(layout.row_bytes, 8u + 16u + 16u + 4u);
  auto row = NewRow(layout, 9);
  float* w = RowLayout::Weights(row.data());
  for (int d = 0; d < 4; ++d) w[d] = 0.0f;
  const float g[4] = {1.0f, 2.0f, 0.0f, -2.0f};
  layout.ApplyAdagrad(row.data(), g);
  // mean(g^2) = 9/4 = 2.25; acc = 2.75; scale = 0.1 / sqrt(2.75 + 1e-8).
  EXPECT_FLOAT_EQ(layout.Accumulator(row.data())[0], 2.75f);
  const double scale = 0.1 / std::sqrt(2.75 + 1e-8);
  EXPECT_NEAR(w[0], -scale * 1, 1e-7);
  EXPECT_NEAR(w[1], -scale * 2, 1e-7);
  EXPECT_EQ(w[2], 0.0f);
  EXPECT_NEAR(w[3], scale * 2, 1e-7);
}

TEST(AdagradTest, WeightBoundClips) {
  AdagradParams p;
  p.per_dim = true;
  p.learning_rate = 10.0f;
  p.weight_bound = 0.5f;
  RowLayout layout = RowLayout::Make(2, p);
  auto row = NewRow(layout, 1);
  const float g[2] = {-1.0f, 1.0f};
  layout.ApplyAdagrad(row.data(), g);
  EXPECT_EQ(RowLayout::Weights(row.data())[0], 0.5f);
  EXPECT_EQ(RowLayout::Weights(row.data())[1], -0.5f);
}

TEST(AdagradTest, InitIsDeterministicSmallAndKeyed) {
  AdagradParams p;
  p.init_range = 0.01f;
  RowLayout layout = RowLayout::Make(16, p);
  auto a = NewRow(layout, 1234, 7);
  auto b = NewRow(layout, 1234, 7);
  auto c = NewRow(layout, 1235, 7);
  auto d = NewRow(layout, 1234, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(std::vector<float>(RowLayout::Weights(a.data()), RowLayout::Weights(a.data()) + 16),
            std::vector<float>(RowLayout::Weights(c.data()), RowLayout::Weights(c.data()) + 16));
  EXPECT_NE(RowLayout::Weights(a.data())[0], RowLayout::Weights(d.data())[0]);
  double sum = 0;
  for (int i = 0; i < 16; ++i) {
    const float w = RowLayout::Weights(a.data())[i];
    EXPECT_LE(std::fabs(w), 0.01f);
    sum += std::fabs(w);
  }
  EXPECT_GT(sum, 0.0);
  EXPECT_EQ(RowLayout::Key(a.data()), 1234u);
  EXPECT_EQ(RowLayout::Meta(a.data())->created_pass, 3);
  EXPECT_EQ(RowLayout::Meta(a.data())->update_count, 0u);
  EXPECT_FLOAT_EQ(layout.Accumulator(a.data())[0], p.initial_accumulator);
}

TEST(AdagradTest, CountUpdateAddsCountsAndSaturates) {
  RowLayout layout = RowLayout::Make(1, AdagradParams());
  auto row = NewRow(layout, 5);
  RowLayout::CountUpdate(row.data(), 2.0f, 1.0f, 9);
  RowMeta* m = RowLayout::Meta(row.data());
  EXPECT_EQ(m->show, 2.0f);
  EXPECT_EQ(m->click, 1.0f);
  EXPECT_EQ(m->update_count, 1u);
  EXPECT_EQ(m->last_update_pass, 9);
  m->update_count = UINT32_MAX;
  RowLayout::CountUpdate(row.data(), 1.0f, 0.0f, 9);
  EXPECT_EQ(m->update_count, UINT32_MAX);
}

TEST(FeatureScoreTest, WeighsShowsAndClicks) {
  RowMeta m;
  m.show = 10;
  m.click = 2;
  EXPECT_FLOAT_EQ(FeatureScore(m), 8 * 0.1f + 2 * 1.0f);
  EXPECT_FLOAT_EQ(FeatureScore(m, {0.5f, 3.0f}), 8 * 0.5f + 2 * 3.0f);
  // Decaying the counts decays the score by the same factor.
  RowMeta decayed = m;
  decayed.show *= 0.98f;
  decayed.click *= 0.98f;
  EXPECT_NEAR(FeatureScore(decayed), 0.98f * FeatureScore(m), 1e-5);
}

}  // namespace
}  // namespace pepnet
