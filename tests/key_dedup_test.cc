#include "common/key_dedup.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace pepnet {
namespace {

TEST(KeyDeduperTest, FirstAppearanceOrderAndPositions) {
  KeyDeduper d;
  const std::vector<uint64_t> keys = {7, 3, 7, 0, 3, 3, 9};
  std::vector<uint64_t> unique;
  std::vector<uint32_t> position;
  EXPECT_EQ(d.Dedup(keys.data(), keys.size(), &unique, &position), 4u);
  EXPECT_EQ(unique, (std::vector<uint64_t>{7, 3, 0, 9}));
  EXPECT_EQ(position, (std::vector<uint32_t>{0, 1, 0, 2, 1, 1, 3}));
  EXPECT_FALSE(d.AllDistinct(keys.data(), keys.size()));
  EXPECT_TRUE(d.AllDistinct(unique.data(), unique.size()));
  EXPECT_TRUE(d.AllDistinct(nullptr, 0));
}

TEST(KeyDeduperTest, RandomBatchesMatchAMap) {
  KeyDeduper d;
  std::mt19937_64 rng(5);
  for (int round = 0; round < 50; ++round) {
    const size_t n = rng() % 5000;
    std::vector<uint64_t> keys(n);
    for (auto& k : keys) k = rng() % (1 + n / 2) * 0x9e3779b97f4a7c15ULL;  // many repeats
    std::vector<uint64_t> unique;
    std::vector<uint32_t> position;
    d.Dedup(keys.data(), n, &unique, &position);
    std::map<uint64_t, uint32_t> first;
    for (uint64_t k : keys) first.emplace(k, static_cast<uint32_t>(first.size()));
    ASSERT_EQ(unique.size(), first.size());
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(unique[position[i]], keys[i]);
      ASSERT_EQ(position[i], first[keys[i]]);
    }
    ASSERT_EQ(d.AllDistinct(keys.data(), n), unique.size() == n);
  }
}

}  // namespace
}  // namespace pepnet
