#include "worker/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace pepnet {
namespace {

TEST(MetricsTest, AucByHand) {
  // Positives at 0.9 and 0.4, negatives at 0.7 and 0.1: pairs (0.9>0.7, 0.9>0.1,
  // 0.4<0.7, 0.4>0.1) -> 3 of 4.
  std::vector<Prediction> p = {{0.9f, 1, 0}, {0.4f, 1, 0}, {0.7f, 0, 0}, {0.1f, 0, 0}};
  EXPECT_DOUBLE_EQ(Auc(p), 0.75);
  // A tie between a positive and a negative counts half.
  EXPECT_DOUBLE_EQ(Auc({{0.5f, 1, 0}, {0.5f, 0, 0}}), 0.5);
  EXPECT_TRUE(std::isnan(Auc({{0.5f, 1, 0}, {0.7f, 1, 0}})));
}

// A poisoned model scores NaN: the metrics say "undefined" instead of looping forever on
// a tie group that never advances.
TEST(MetricsTest, NanScoresGiveAnUndefinedAucAndReturn) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<Prediction> p = {{nan, 1, 0}, {nan, 0, 0}, {0.3f, 1, 1}, {0.2f, 0, 1}};
  EXPECT_TRUE(std::isnan(Auc(p)));
  const MetricSummary s = Summarize(p);
  EXPECT_TRUE(std::isnan(s.auc));
  EXPECT_TRUE(std::isnan(s.logloss));
  EXPECT_DOUBLE_EQ(s.gauc, 1.0);  // user 1's scores are finite and ranked
}

TEST(MetricsTest, AucMatchesPairCountOnRandomData) {
  std::mt19937 rng(1);
  std::vector<Prediction> p;
  for (int i = 0; i < 300; ++i) p.push_back({float(rng() % 20) / 20, float(rng() % 2), 0});
  double wins = 0, pairs = 0;
  for (const auto& a : p)
    for (const auto& b : p)
      if (a.label > 0 && b.label == 0) {
        pairs += 1;
        wins += a.score > b.score ? 1 : a.score == b.score ? 0.5 : 0;
      }
  EXPECT_NEAR(Auc(p), wins / pairs, 1e-12);
}

TEST(MetricsTest, GaucWeighsUsersBySamples) {
  std::vector<Prediction> p = {// user 1: AUC 1 over 2 samples
                               {0.9f, 1, 1},
                               {0.1f, 0, 1},
                               // user 2: AUC 0 over 4 samples
                               {0.1f, 1, 2},
                               {0.2f, 1, 2},
                               {0.8f, 0, 2},
                               {0.9f, 0, 2},
                               // user 3: one class only, left out
                               {0.5f, 1, 3}};
  EXPECT_NEAR(Gauc(p), (1.0 * 2 + 0.0 * 4) / 6, 1e-12);
}

TEST(MetricsTest, SummaryAndJson) {
  PassMetrics m({"like", "follow"}, 2);
  m.Add(0, 0, {0.8f, 1, 1});
  m.Add(0, 1, {0.2f, 0, 1});
  PassMetrics other({"like", "follow"}, 2);
  other.Add(0, 1, {0.6f, 0, 2});
  m.Merge(other);
  const MetricSummary s = m.Task(0);
  EXPECT_EQ(s.samples, 3u);
  EXPECT_DOUBLE_EQ(s.auc, 1.0);
  EXPECT_NEAR(s.logloss, -(std::log(0.8) + std::log(0.8) + std::log(0.4)) / 3, 1e-6);
  EXPECT_NEAR(s.positive_rate, 1.0 / 3, 1e-12);
  EXPECT_EQ(m.TaskDomain(0, 1).samples, 2u);
  const std::string json = m.ToJson(7);
  EXPECT_EQ(json.rfind("{\"pass\":7,\"tasks\":{\"like\":{\"samples\":3,\"auc\":1,", 0), 0u) << json;
  EXPECT_NE(json.find("\"follow\":{\"samples\":0,\"auc\":null"), std::string::npos) << json;
}

}  // namespace
}  // namespace pepnet
