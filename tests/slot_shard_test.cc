// SlotShard against a std::map reference under random inserts, erases and replacements:
// every live key is found at its row, erased and replaced keys are not, and the byte count
// follows every allocation.
#include "ps/slot_shard.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "common/hash.h"

namespace pepnet {
namespace {

constexpr uint64_t kSalt = 0x1234567;

class SlotShardTest : public ::testing::TestWithParam<int> {};

TEST_P(SlotShardTest, RandomInsertsAndErasesMatchAMap) {
  const RowLayout layout = RowLayout::Make(4, AdagradParams());
  SlotShard shard(&layout, kSalt);
  std::map<uint64_t, float> ref;  // key -> first weight at creation
  std::mt19937_64 rng(GetParam());
  const uint64_t universe = 3000;
  for (int step = 0; step < 40000; ++step) {
    const uint64_t key = Mix64(rng() % universe);
    const uint64_t hash = TableHash(key, kSalt);
    if (rng() % 3 != 0 || shard.rows() == 0) {
      bool created;
      char* row = shard.FindOrInsert(key, hash, 7, 0, &created);
      ASSERT_NE(row, nullptr);
      ASSERT_EQ(created, ref.count(key) == 0);
      if (created) ref[key] = RowLayout::Weights(row)[0];
      ASSERT_EQ(RowLayout::Key(row), key);
      ASSERT_EQ(RowLayout::Weights(row)[0], ref[key]);
    } else {
      // Erase a random live row by id, or give its place to an absent key.
      const uint32_t id = static_cast<uint32_t>(rng() % shard.rows());
      const uint64_t victim = RowLayout::Key(shard.RowAt(id));
      uint32_t found;
      ASSERT_TRUE(shard.FindId(victim, TableHash(victim, kSalt), &found));
      ASSERT_EQ(found, id);
      const uint64_t bytes = shard.allocated_bytes();
      if (rng() % 2 == 0 && !shard.IndexRebuildDue() && ref.count(key) == 0) {
        char* row = shard.ReplaceAt(id, key, hash, 7, 0);
        ASSERT_EQ(row, shard.RowAt(id));
        ASSERT_EQ(RowLayout::Key(row), key);
        ASSERT_EQ(shard.Find(key, hash), row);
        ASSERT_EQ(shard.allocated_bytes(), bytes) << "a replacement allocates nothing";
        ref[key] = RowLayout::Weights(row)[0];
      } else {
        shard.EraseAt(id);
      }
      ASSERT_EQ(ref.erase(victim), 1u);
      ASSERT_EQ(shard.Find(victim, TableHash(victim, kSalt)), nullptr);
    }
    ASSERT_EQ(shard.rows(), ref.size());
    if (step % 997 == 0) {
      for (const auto& [k, w0] : ref) {
        const char* row = shard.Find(k, TableHash(k, kSalt));
        ASSERT_NE(row, nullptr) << step;
        ASSERT_EQ(RowLayout::Weights(row)[0], w0);
      }
      ASSERT_EQ(shard.allocated_bytes(), shard.Bytes().total());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, SlotShardTest, ::testing::Values(1, 2, 3));

TEST(SlotShardBytesTest, ErasingEverythingFreesChunksAndShrinkingFreesTheIndex) {
  const RowLayout layout = RowLayout::Make(16, AdagradParams());
  SlotShard shard(&layout, kSalt);
  for (uint64_t i = 0; i < 10000; ++i) {
    const uint64_t key = Mix64(i);
    const uint64_t need = shard.GrowthForInsert();
    const uint64_t before = shard.allocated_bytes();
    bool created;
    shard.FindOrInsert(key, TableHash(key, kSalt), 1, 0, &created);
    // The estimate made beforehand covers what the insert allocated.
    ASSERT_LE(shard.allocated_bytes(), before + need) << i;
  }
  const uint64_t full = shard.allocated_bytes();
  while (shard.rows() > 100) shard.EraseAt(shard.rows() / 2);
  EXPECT_EQ(shard.allocated_bytes(), shard.Bytes().total());
  EXPECT_LT(shard.allocated_bytes(), full);
  const uint64_t before_shrink = shard.allocated_bytes();
  shard.ShrinkIndexIfSparse();
  EXPECT_LT(shard.allocated_bytes(), before_shrink);
  EXPECT_EQ(shard.allocated_bytes(), shard.Bytes().total());
  // 100 rows: one chunk, a small index and the chunk directory.
  EXPECT_LT(shard.allocated_bytes(), 128u * layout.row_bytes + 4096);
  uint64_t live = 0;
  shard.ForEachRow([&](const char* row) {
    ++live;
    EXPECT_NE(shard.Find(RowLayout::Key(row), TableHash(RowLayout::Key(row), kSalt)), nullptr);
  });
  EXPECT_EQ(live, 100u);
}

}  // namespace
}  // namespace pepnet
