// The table's memory-control policies, each checked exactly on small tables: feature
// score and decay, count caps, TTL, minimum updates, score threshold, admission, the
// memory limit, the deleted-key log the publish reads, and eviction racing requests.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "common/hash.h"
#include "ps/embedding_table.h"
#include "publish/row_file.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

constexpr uint32_t kSlot = 3;
constexpr uint32_t kDim = 4;

uint64_t Key(uint64_t id) { return testing::TestKey(kSlot, id); }

TableOptions OneSlot(uint32_t partition_bits, const SlotEvictionOptions& eviction = {}) {
  TableOptions o;
  o.partition_bits = partition_bits;
  o.seed = 5;
  SlotOptions s;
  s.id = kSlot;
  s.dim = kDim;
  s.eviction = eviction;
  o.slots = {s};
  return o;
}

std::unique_ptr<EmbeddingTable> MakeTable(const TableOptions& o) {
  std::unique_ptr<EmbeddingTable> table;
  Status st = EmbeddingTable::Create(o, &table);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return table;
}

// One push of `key` with a gradient of 0.5 in every dim.
void PushOne(EmbeddingTable* t, uint64_t key, float show, float click) {
  const std::vector<float> grad(t->DimOf(key), 0.5f);
  Status st = t->Push(&key, 1, grad.data(), &show, &click);
  ASSERT_TRUE(st.ok()) << st.ToString();
}

void PullOne(EmbeddingTable* t, uint64_t key, std::vector<float>* out) {
  out->assign(t->DimOf(key), -1.0f);
  Status st = t->Pull(&key, 1, out->data());
  ASSERT_TRUE(st.ok()) << st.ToString();
}

PassEndReport End(EmbeddingTable* t) {
  PassEndReport report;
  Status st = t->EndPass(&report);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return report;
}

bool Has(const EmbeddingTable& t, uint64_t key) {
  RowSnapshot row;
  return t.Lookup(key, &row).ok();
}

uint64_t Deleted(const TableStatsSnapshot& st, DeleteReason r) {
  uint64_t n = 0;
  for (const auto& s : st.slots) n += s.deleted_total[static_cast<int>(r)];
  return n;
}

// The running byte count equals the walk over every structure when the table is idle.
void ExpectBytesConsistent(const EmbeddingTable& t) {
  const TableStatsSnapshot st = t.Stats();
  EXPECT_EQ(st.bytes_used, st.bytes.total());
  EXPECT_GE(st.max_bytes_used, st.bytes_used);
  EXPECT_EQ(st.rows, st.rows_created - st.rows_deleted - st.rows_erased);
}

TEST(MemoryControlTest, FeatureScoreAndDecayAreExact) {
  TableOptions o = OneSlot(0);
  o.score.coefficients.nonclick = 0.25f;
  o.score.coefficients.click = 2.0f;
  o.score.decay = 0.5f;
  auto t = MakeTable(o);
  ASSERT_TRUE(t->BeginPass(1).ok());
  PushOne(t.get(), Key(1), 3, 1);
  PushOne(t.get(), Key(1), 2, 0);
  RowSnapshot row;
  ASSERT_TRUE(t->Lookup(Key(1), &row).ok());
  EXPECT_EQ(row.meta.show, 5.0f);
  EXPECT_EQ(row.meta.click, 1.0f);
  // (5 - 1) * 0.25 + 1 * 2 = 3.
  EXPECT_EQ(FeatureScore(row.meta, o.score.coefficients), 3.0f);
  End(t.get());
  ASSERT_TRUE(t->Lookup(Key(1), &row).ok());
  EXPECT_EQ(row.meta.show, 2.5f);
  EXPECT_EQ(row.meta.click, 0.5f);
  EXPECT_EQ(FeatureScore(row.meta, o.score.coefficients), 1.5f);
  const TableStatsSnapshot st = t->Stats();
  ASSERT_FALSE(st.score_quantiles.empty());
  for (const auto& [q, score] : st.score_quantiles) EXPECT_EQ(score, 1.5f) << q;
}

TEST(MemoryControlTest, ScoreThresholdDeletesAfterTheDecay) {
  SlotEvictionOptions e;
  e.delete_score_threshold = 0.5f;
  auto t = MakeTable(OneSlot(2, e));  // default coefficients 0.1 / 1, decay 0.98
  ASSERT_TRUE(t->BeginPass(1).ok());
  PushOne(t.get(), Key(1), 1, 1);                              // score 1 -> 0.98: kept
  for (int i = 0; i < 5; ++i) PushOne(t.get(), Key(2), 1, 0);  // 0.5 -> 0.49: deleted
  PushOne(t.get(), Key(3), 6, 0);                              // 0.6 -> 0.588: kept
  const PassEndReport r = End(t.get());
  EXPECT_EQ(r.rows_before, 3u);
  EXPECT_EQ(r.rows_after, 2u);
  EXPECT_EQ(r.deleted[static_cast<int>(DeleteReason::kScore)], 1u);
  EXPECT_TRUE(Has(*t, Key(1)));
  EXPECT_FALSE(Has(*t, Key(2)));
  EXPECT_TRUE(Has(*t, Key(3)));
  EXPECT_EQ(Deleted(t->Stats(), DeleteReason::kScore), 1u);
  ExpectBytesConsistent(*t);
}

TEST(MemoryControlTest, CapEvictsTheLowestScoreRowOfTheSlot) {
  SlotEvictionOptions e;
  e.max_rows = 3;
  auto t = MakeTable(OneSlot(0, e));
  PushOne(t.get(), Key(1), 5, 0);  // 0.5
  PushOne(t.get(), Key(2), 1, 0);  // 0.1
  PushOne(t.get(), Key(3), 1, 1);  // 1.0
  std::vector<float> w;
  PullOne(t.get(), Key(4), &w);  // at the cap: key 2 goes; key 4 has score 0
  EXPECT_FALSE(Has(*t, Key(2)));
  EXPECT_TRUE(Has(*t, Key(1)) && Has(*t, Key(3)) && Has(*t, Key(4)));
  PushOne(t.get(), Key(5), 1, 0);  // key 4 (score 0) goes
  EXPECT_FALSE(Has(*t, Key(4)));
  EXPECT_TRUE(Has(*t, Key(1)) && Has(*t, Key(3)) && Has(*t, Key(5)));
  PushOne(t.get(), Key(6), 1, 0);  // key 5 (0.1) goes, not the new key
  EXPECT_FALSE(Has(*t, Key(5)));
  EXPECT_TRUE(Has(*t, Key(6)));
  const TableStatsSnapshot st = t->Stats();
  EXPECT_EQ(st.rows, 3u);
  EXPECT_EQ(Deleted(st, DeleteReason::kCap), 3u);
  EXPECT_EQ(st.slots[0].deleted_total[static_cast<int>(DeleteReason::kCap)], 3u);
  ExpectBytesConsistent(*t);
}

TEST(MemoryControlTest, CapHoldsAcrossPartitions) {
  // With two partitions a new key can only evict in its own partition: when that one
  // holds none of the slot's rows, the key is refused (pull reads zeros) and the cap holds.
  SlotEvictionOptions e;
  e.max_rows = 1;
  auto t = MakeTable(OneSlot(1, e));
  PushOne(t.get(), Key(0), 1, 0);
  uint64_t evicted = 0, refused = 0;
  for (uint64_t id = 1; id <= 40; ++id) {
    std::vector<float> w;
    PullOne(t.get(), Key(id), &w);
    const TableStatsSnapshot st = t->Stats();
    ASSERT_EQ(st.rows, 1u);
    if (st.cap_refused > refused) {
      refused = st.cap_refused;
      EXPECT_FALSE(Has(*t, Key(id)));
      EXPECT_EQ(w, std::vector<float>(kDim, 0.0f));
    } else {
      ++evicted;
      EXPECT_TRUE(Has(*t, Key(id)));
      EXPECT_EQ(Deleted(st, DeleteReason::kCap), evicted);
    }
  }
  EXPECT_GT(evicted, 0u);
  EXPECT_GT(refused, 0u);
  ExpectBytesConsistent(*t);
}

TEST(MemoryControlTest, TtlDeletesOnlyAtPassEnds) {
  SlotEvictionOptions e;
  e.ttl_passes = 2;
  auto t = MakeTable(OneSlot(3, e));
  ASSERT_TRUE(t->BeginPass(1).ok());
  PushOne(t.get(), Key(1), 1, 0);
  PushOne(t.get(), Key(2), 1, 0);
  EXPECT_EQ(End(t.get()).rows_after, 2u);
  ASSERT_TRUE(t->BeginPass(2).ok());
  PushOne(t.get(), Key(1), 1, 0);
  EXPECT_EQ(End(t.get()).rows_after, 2u);  // key 2 last updated 1 pass ago
  ASSERT_TRUE(t->BeginPass(3).ok());
  EXPECT_TRUE(Has(*t, Key(2)));  // never mid-pass
  const PassEndReport r3 = End(t.get());
  EXPECT_EQ(r3.deleted[static_cast<int>(DeleteReason::kTtl)], 1u);
  EXPECT_FALSE(Has(*t, Key(2)));  // not updated in passes 2 and 3
  EXPECT_TRUE(Has(*t, Key(1)));
  ASSERT_TRUE(t->BeginPass(4).ok());
  End(t.get());
  EXPECT_FALSE(Has(*t, Key(1)));  // not updated in passes 3 and 4
  EXPECT_EQ(Deleted(t->Stats(), DeleteReason::kTtl), 2u);
  ExpectBytesConsistent(*t);
}

TEST(MemoryControlTest, MinUpdatesWithinTheFirstPasses) {
  SlotEvictionOptions e;
  e.min_updates = 2;
  e.min_updates_passes = 2;
  auto t = MakeTable(OneSlot(0, e));
  std::vector<float> w;
  ASSERT_TRUE(t->BeginPass(1).ok());
  PushOne(t.get(), Key(1), 1, 0);  // 1 update in pass 1
  PushOne(t.get(), Key(2), 1, 0);
  PushOne(t.get(), Key(2), 1, 0);          // 2 updates
  PullOne(t.get(), Key(3), &w);            // never updated
  EXPECT_EQ(End(t.get()).rows_after, 3u);  // all are in their first of 2 passes
  ASSERT_TRUE(t->BeginPass(2).ok());
  PushOne(t.get(), Key(1), 1, 0);  // reaches 2 in its second pass
  PushOne(t.get(), Key(4), 1, 0);  // new: 1 update in its first pass
  const PassEndReport r2 = End(t.get());
  EXPECT_EQ(r2.deleted[static_cast<int>(DeleteReason::kMinUpdates)], 1u);
  EXPECT_FALSE(Has(*t, Key(3)));
  EXPECT_TRUE(Has(*t, Key(1)) && Has(*t, Key(2)) && Has(*t, Key(4)));
  ASSERT_TRUE(t->BeginPass(3).ok());
  End(t.get());
  EXPECT_FALSE(Has(*t, Key(4)));                    // 1 update after its 2 first passes
  EXPECT_TRUE(Has(*t, Key(1)) && Has(*t, Key(2)));  // old enough, counts reached
  EXPECT_EQ(Deleted(t->Stats(), DeleteReason::kMinUpdates), 2u);
  ExpectBytesConsistent(*t);
}

TEST(MemoryControlTest, AdmissionAfterExactlyThreeSightings) {
  SlotEvictionOptions e;
  e.admission_threshold = 3;
  auto t = MakeTable(OneSlot(2, e));
  auto plain = MakeTable(OneSlot(2));
  const uint64_t k = Key(7);
  std::vector<float> w;
  for (int seen = 1; seen <= 2; ++seen) {
    PullOne(t.get(), k, &w);
    EXPECT_EQ(w, std::vector<float>(kDim, 0.0f)) << "pull before sighting " << seen;
    PushOne(t.get(), k, 1, 0);
    EXPECT_FALSE(Has(*t, k)) << "row after " << seen << " sightings";
  }
  PushOne(t.get(), k, 1, 0);  // the third: the row is created and this update applied
  ASSERT_TRUE(Has(*t, k));
  PushOne(plain.get(), k, 1, 0);
  std::vector<float> expected;
  PullOne(t.get(), k, &w);
  PullOne(plain.get(), k, &expected);
  EXPECT_EQ(w, expected);
  RowSnapshot row;
  ASSERT_TRUE(t->Lookup(k, &row).ok());
  EXPECT_EQ(row.meta.update_count, 1u);
  // A push carrying 3 shows at once is 3 sightings.
  PushOne(t.get(), Key(8), 3, 0);
  EXPECT_TRUE(Has(*t, Key(8)));
  const TableStatsSnapshot st = t->Stats();
  EXPECT_EQ(st.admission.admitted, 2u);
  EXPECT_EQ(st.admission.pushes_dropped, 2u);
  EXPECT_EQ(st.admission.pulls_default, 2u);
  EXPECT_EQ(st.rows, 2u);
  ExpectBytesConsistent(*t);
}

TEST(MemoryControlTest, AdmissionCountsHalveAtPassEnds) {
  SlotEvictionOptions e;
  e.admission_threshold = 3;
  TableOptions o = OneSlot(0, e);
  o.admission_halving_passes = 1;
  auto t = MakeTable(o);
  ASSERT_TRUE(t->BeginPass(1).ok());
  PushOne(t.get(), Key(1), 1, 0);
  PushOne(t.get(), Key(1), 1, 0);  // 2 sightings
  End(t.get());                    // halved to 1
  ASSERT_TRUE(t->BeginPass(2).ok());
  PushOne(t.get(), Key(1), 1, 0);  // 2: not yet
  EXPECT_FALSE(Has(*t, Key(1)));
  PushOne(t.get(), Key(1), 1, 0);  // 3
  EXPECT_TRUE(Has(*t, Key(1)));
}

TEST(MemoryControlTest, PassesOnlyGoForwardAndEndOnce) {
  SlotEvictionOptions e;
  e.ttl_passes = 1;
  auto t = MakeTable(OneSlot(0, e));
  ASSERT_TRUE(t->BeginPass(5).ok());
  PushOne(t.get(), Key(1), 1, 0);
  End(t.get());
  Status st = t->EndPass();  // would decay the scores a second time
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("pass 5 has already ended"), std::string::npos) << st.ToString();
  st = t->BeginPass(1);  // a restarted coordinator counting from 1: TTL would wipe the table
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("at pass 5"), std::string::npos) << st.ToString();
  EXPECT_TRUE(Has(*t, Key(1)));
  EXPECT_EQ(t->pass(), 5u);
  EXPECT_TRUE(t->BeginPass(5).ok());  // the same pass again is allowed (a retried begin)
  EXPECT_TRUE(t->BeginPass(6).ok());
}

TEST(MemoryControlTest, TooSmallMemoryLimitIsRefusedNamingIt) {
  TableOptions o = OneSlot(5);
  o.memory_limit_bytes = 100000;
  std::unique_ptr<EmbeddingTable> t;
  Status st = EmbeddingTable::Create(o, &t);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("memory_limit_bytes 100000 is too small"), std::string::npos)
      << st.ToString();
}

// Flood an in-process table sized for ~100k rows with 1M one-off keys while a hot set is
// pushed with clicks: the limit holds at every moment and the hot keys survive.
TEST(MemoryControlTest, MemoryLimitHoldsUnderAFloodAndKeepsHotKeys) {
  TableOptions o = OneSlot(5);
  o.slots[0].dim = 16;
  o.memory_limit_bytes = 10 << 20;
  auto t = MakeTable(o);
  std::vector<uint64_t> hot;
  for (uint64_t i = 0; i < 1000; ++i) hot.push_back(Key(1000000000 + i));
  const std::vector<float> hot_grads(hot.size() * 16, 0.01f), ones(hot.size(), 1.0f);
  constexpr int kBatch = 4096;
  std::vector<uint64_t> keys(kBatch);
  const std::vector<float> grads(kBatch * 16, 0.01f), shows(kBatch, 1.0f), clicks(kBatch, 0.0f);
  uint64_t next = 0;
  uint64_t peak = 0;
  while (next < 1000000) {
    for (auto& k : keys) k = Key(next++);
    ASSERT_TRUE(t->Push(keys.data(), kBatch, grads.data(), shows.data(), clicks.data()).ok());
    ASSERT_TRUE(t->Push(hot.data(), hot.size(), hot_grads.data(), ones.data(), ones.data()).ok());
    peak = std::max(peak, t->bytes_used());
  }
  const TableStatsSnapshot st = t->Stats();
  EXPECT_LE(st.max_bytes_used, o.memory_limit_bytes);
  EXPECT_LE(peak, o.memory_limit_bytes);
  EXPECT_GT(st.bytes_used, o.memory_limit_bytes * 0.9);
  EXPECT_GT(st.rows, 90000u);
  EXPECT_EQ(st.memory_refused, 0u);
  EXPECT_EQ(Deleted(st, DeleteReason::kMemory), st.rows_created - st.rows);
  for (uint64_t k : hot) ASSERT_TRUE(Has(*t, k)) << FormatKey(k);
  ExpectBytesConsistent(*t);
}

// Expected weights of a per-row AdaGrad row after n pushes of 0.5 in every dim.
std::vector<float> AfterPushes(const RowLayout& layout, uint64_t key, uint64_t seed, uint32_t n) {
  std::vector<char> buf(layout.row_bytes);
  layout.InitRow(buf.data(), key, seed, 0);
  const std::vector<float> grad(layout.dim, 0.5f);
  for (uint32_t i = 0; i < n; ++i) layout.ApplyAdagrad(buf.data(), grad.data());
  const float* w = RowLayout::Weights(buf.data());
  return std::vector<float>(w, w + layout.dim);
}

// Under the limit a new row takes the place of the sweep's next victim of its slot
// (no row moves). A victim can be a row found earlier in the same request: the request
// must notice it holds another key now. Every key's update count stays at most its
// pushes (a push applied to another key's row would exceed them), and the table holds.
TEST(MemoryControlTest, NewRowsTakeVictimsPlacesWithinARequest) {
  TableOptions o = OneSlot(0);
  o.slots[0].dim = 8;
  o.memory_limit_bytes = 256 << 10;
  auto t = MakeTable(o);
  std::mt19937_64 rng(7);
  std::map<uint64_t, uint32_t> pushes;
  constexpr uint64_t kUniverse = 20000;
  const std::vector<float> grads(512 * 8, 0.5f), shows(512, 1.0f), clicks(512, 0.0f);
  for (int round = 0; round < 200; ++round) {
    std::set<uint64_t> distinct;
    while (distinct.size() < 512) distinct.insert(Key(rng() % kUniverse));
    std::vector<uint64_t> keys(distinct.begin(), distinct.end());
    std::shuffle(keys.begin(), keys.end(), rng);
    ASSERT_TRUE(t->Push(keys.data(), keys.size(), grads.data(), shows.data(), clicks.data()).ok());
    for (uint64_t k : keys) ++pushes[k];
    for (uint64_t k : keys) {
      RowSnapshot row;
      // A key of this request may have been evicted again by a later one of it.
      if (!t->Lookup(k, &row).ok()) continue;
      ASSERT_GE(row.meta.update_count, 1u) << FormatKey(k);
      ASSERT_LE(row.meta.update_count, pushes[k]) << FormatKey(k) << " round " << round;
    }
  }
  const TableStatsSnapshot st = t->Stats();
  EXPECT_GT(Deleted(st, DeleteReason::kMemory), 50000u);
  EXPECT_LE(st.max_bytes_used, o.memory_limit_bytes);
  EXPECT_EQ(st.memory_refused, 0u);
  ExpectBytesConsistent(*t);
  const RowLayout layout = RowLayout::Make(8, o.slots[0].adagrad);
  t->ForEachRow([&](uint64_t key, const float* w, uint32_t dim, const RowMeta& meta) {
    EXPECT_LE(meta.update_count, pushes[key]);
    EXPECT_EQ(std::vector<float>(w, w + dim), AfterPushes(layout, key, o.seed, meta.update_count));
  });
}

// Evictions race pulls and pushes: every row a reader sees has exactly the weights its
// update count implies (a row deleted and re-created starts over, never from stale data),
// and the counters add up.
TEST(MemoryControlTest, EvictionRacingRequestsNeverResurrectsStaleRows) {
  SlotEvictionOptions e;
  e.ttl_passes = 3;
  TableOptions o = OneSlot(2, e);
  o.slots[0].dim = 8;
  o.memory_limit_bytes = 1 << 20;
  auto t = MakeTable(o);
  const RowLayout layout = RowLayout::Make(8, o.slots[0].adagrad);
  constexpr uint64_t kUniverse = 40000;
  std::atomic<bool> stop{false};
  std::atomic<int> rounds_done{0};
  std::atomic<uint64_t> checked{0}, mismatches{0};
  auto writer = [&](int seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint64_t> keys(256);
    const std::vector<float> grads(256 * 8, 0.5f), shows(256, 1.0f), clicks(256, 0.0f);
    std::vector<float> out(256 * 8);
    for (int round = 0; round < 300; ++round) {
      std::set<uint64_t> distinct;
      while (distinct.size() < keys.size()) distinct.insert(Key(rng() % kUniverse));
      std::copy(distinct.begin(), distinct.end(), keys.begin());
      ASSERT_TRUE(
          t->Push(keys.data(), keys.size(), grads.data(), shows.data(), clicks.data()).ok());
      ASSERT_TRUE(t->Pull(keys.data(), keys.size(), out.data()).ok());
      ++rounds_done;
    }
  };
  auto reader = [&]() {
    std::mt19937_64 rng(99);
    while (!stop.load()) {
      const uint64_t k = Key(rng() % kUniverse);
      RowSnapshot row;
      if (!t->Lookup(k, &row).ok()) continue;
      if (row.weights != AfterPushes(layout, k, o.seed, row.meta.update_count)) ++mismatches;
      ++checked;
    }
  };
  // Pass ends (decay and TTL deletions) race the requests too: one per 60 writer rounds,
  // so that TTL does not keep the table under the memory limit on a slow (sanitizer) build.
  auto passes = [&]() {
    for (uint32_t pass = 1; !stop.load();) {
      if (rounds_done.load() >= static_cast<int>(pass) * 60) {
        ASSERT_TRUE(t->BeginPass(++pass).ok());
        End(t.get());
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back(writer, i + 1);
  std::thread r(reader), p(passes);
  for (auto& th : threads) th.join();
  stop = true;
  r.join();
  p.join();
  EXPECT_EQ(mismatches.load(), 0u) << "of " << checked.load() << " rows read";
  EXPECT_GT(checked.load(), 0u);
  const TableStatsSnapshot st = t->Stats();
  EXPECT_GT(Deleted(st, DeleteReason::kMemory), 0u);
  EXPECT_GT(Deleted(st, DeleteReason::kTtl), 0u);
  EXPECT_LE(st.max_bytes_used, o.memory_limit_bytes);
  ExpectBytesConsistent(*t);
  // Every surviving row is consistent too.
  uint64_t rows = 0;
  t->ForEachRow([&](uint64_t key, const float* w, uint32_t dim, const RowMeta& meta) {
    ++rows;
    EXPECT_EQ(std::vector<float>(w, w + dim), AfterPushes(layout, key, o.seed, meta.update_count));
  });
  EXPECT_EQ(rows, st.rows);
}

std::set<uint64_t> DeletedInDelta(const EmbeddingTable& t, const testing::TempDir& dir,
                                  std::set<uint64_t>* rows) {
  RowFileInfo info;
  const std::string path = dir.File("delta.bin");
  EXPECT_TRUE(WriteRowFile(Env::Default(), t, false, t.pass(), path, &info).ok());
  std::set<uint64_t> deleted;
  Status st = ReadRowFile(
      path, info.checksum,
      [&](uint64_t key) {
        deleted.insert(key);
        return Status::OK();
      },
      [&](uint64_t key, const float*, uint32_t) {
        rows->insert(key);
        return Status::OK();
      },
      &info);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(info.deleted, deleted.size());
  return deleted;
}

TEST(MemoryControlTest, DeltaListsExactlyTheRowsDeletedInThePass) {
  testing::TempDir dir;
  SlotEvictionOptions e;
  e.ttl_passes = 1;
  e.max_rows = 6;
  auto t = MakeTable(OneSlot(0, e));
  ASSERT_TRUE(t->BeginPass(1).ok());
  for (uint64_t id = 1; id <= 5; ++id) PushOne(t.get(), Key(id), id, 0);
  End(t.get());
  std::set<uint64_t> rows;
  EXPECT_TRUE(DeletedInDelta(*t, dir, &rows).empty());
  EXPECT_EQ(rows.size(), 5u);

  ASSERT_TRUE(t->BeginPass(2).ok());
  PushOne(t.get(), Key(3), 10, 0);
  PushOne(t.get(), Key(4), 10, 0);
  PushOne(t.get(), Key(5), 10, 0);
  PushOne(t.get(), Key(6), 3, 0);   // 0.3; 6 rows: at the cap
  PushOne(t.get(), Key(7), 4, 0);   // evicts key 1 (score 0.098, from pass 1)
  PushOne(t.get(), Key(8), 5, 0);   // evicts key 2 (0.196, from pass 1)
  PushOne(t.get(), Key(9), 6, 0);   // evicts key 6 (0.3, created in this pass)
  PushOne(t.get(), Key(1), 50, 0);  // evicts key 7 (0.4); key 1 comes back
  End(t.get());                     // TTL 1: every row updated in pass 2 stays
  rows.clear();
  const std::set<uint64_t> deleted = DeletedInDelta(*t, dir, &rows);
  // Key 2 existed before the pass and is gone; key 1 is back (a changed row); keys 6 and
  // 7 were born and died in the pass, so serving never had them.
  EXPECT_EQ(deleted, std::set<uint64_t>({Key(2)}));
  EXPECT_EQ(rows, std::set<uint64_t>({Key(1), Key(3), Key(4), Key(5), Key(8), Key(9)}));

  ASSERT_TRUE(t->BeginPass(3).ok());
  PushOne(t.get(), Key(3), 1, 0);
  End(t.get());  // TTL deletes every row not updated in pass 3
  rows.clear();
  EXPECT_EQ(DeletedInDelta(*t, dir, &rows),
            std::set<uint64_t>({Key(1), Key(4), Key(5), Key(8), Key(9)}));
  EXPECT_EQ(rows, std::set<uint64_t>({Key(3)}));
  ExpectBytesConsistent(*t);
}

}  // namespace
}  // namespace pepnet
