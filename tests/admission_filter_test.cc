#include "ps/admission_filter.h"

#include <gtest/gtest.h>

#include "common/hash.h"

namespace pepnet {
namespace {

TEST(AdmissionFilterTest, CountsExactlyWithoutCollisions) {
  AdmissionFilter f(1 << 16, 3);
  for (uint64_t k = 0; k < 50; ++k) {
    for (uint32_t i = 1; i <= k % 7; ++i) EXPECT_EQ(f.Add(Mix64(k), 1), i);
  }
  for (uint64_t k = 0; k < 50; ++k) EXPECT_EQ(f.Estimate(Mix64(k)), k % 7);
  EXPECT_EQ(f.Add(Mix64(1), 5), 6u);
}

TEST(AdmissionFilterTest, SaturatesAndHalves) {
  AdmissionFilter f(1024, 3);
  EXPECT_EQ(f.Add(42, 200), 200u);
  EXPECT_EQ(f.Add(42, 200), 255u);
  f.Halve();
  EXPECT_EQ(f.Estimate(42), 127u);
  f.Halve();
  EXPECT_EQ(f.Estimate(42), 63u);
}

TEST(AdmissionFilterTest, NeverUndercountsWhenFull) {
  // Far more keys than counters: estimates may exceed the truth, never fall below it.
  AdmissionFilter f(256, 9);
  for (uint64_t k = 0; k < 5000; ++k) f.Add(Mix64(k), 1 + k % 3);
  for (uint64_t k = 0; k < 5000; ++k) EXPECT_GE(f.Estimate(Mix64(k)), 1 + k % 3);
  EXPECT_EQ(f.size(), 256u);
}

}  // namespace
}  // namespace pepnet
