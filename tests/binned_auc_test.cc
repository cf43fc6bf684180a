// The run-level binned AUC against the exact AUC of the same predictions: within the
// bound it reports, and its counters survive a round trip through the record.
#include "worker/binned_auc.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "worker/metrics.h"

namespace pepnet {
namespace {

TEST(BinnedAucTest, WithinItsBoundOfTheExactAuc) {
  std::mt19937_64 rng(3);
  for (double positive_rate : {0.5, 0.2, 0.02}) {
    SCOPED_TRACE(positive_rate);
    std::bernoulli_distribution label(positive_rate);
    std::normal_distribution<double> noise(0, 1);
    BinnedAuc binned;
    std::vector<Prediction> all;
    for (int i = 0; i < 50000; ++i) {
      const bool y = label(rng);
      const double logit = (y ? 0.8 : 0) + noise(rng) - 2;
      const float p = static_cast<float>(1 / (1 + std::exp(-logit)));
      binned.Add(p, y);
      all.push_back({p, y ? 1.0f : 0.0f, 0});
    }
    const double exact = Auc(all);
    EXPECT_LE(std::fabs(binned.Auc() - exact), binned.ErrorBound());
    EXPECT_LT(binned.ErrorBound(), 0.01);
    EXPECT_EQ(binned.samples(), 50000u);
  }
}

TEST(BinnedAucTest, OneClassIsNanAndCountersRoundTrip) {
  BinnedAuc a;
  a.Add(0.3f, true);
  EXPECT_TRUE(std::isnan(a.Auc()));
  a.Add(0.1f, false);
  a.Add(std::nanf(""), false);  // counted in the lowest bucket, never out of range
  a.Add(7.0f, true);
  EXPECT_DOUBLE_EQ(a.Auc(), 1.0);
  BinnedAuc b;
  ASSERT_TRUE(b.Deserialize(a.Serialize()).ok());
  EXPECT_EQ(b.Serialize(), a.Serialize());
  EXPECT_EQ(b.samples(), 4u);
  EXPECT_FALSE(b.Deserialize("short").ok());
}

}  // namespace
}  // namespace pepnet
