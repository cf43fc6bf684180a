// ShardStore over real RocksDB: a committed table loads back as the same table (rows with
// all their state, row order, bytes, counters, eviction cursors, admission counts), so
// that it then behaves exactly as the table that never stopped; prepared passes stay
// undoable; refusals of foreign or damaged data dirs; a full disk at commit.
#include "ps/shard_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <random>

#include "common/hash.h"
#include "proto/ps.pb.h"
#include "ps/embedding_table.h"
#include "tests/fault_env.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

constexpr uint32_t kItem = 3, kUser = 4, kHistory = 5;

// Every policy at work: a memory limit that keeps evicting, a capped slot, an admitting
// slot, TTL, per-dim and per-row accumulators.
TableOptions Options() {
  TableOptions o;
  o.partition_bits = 2;
  o.seed = 9;
  SlotOptions item;
  item.id = kItem;
  item.dim = 8;
  item.adagrad.per_dim = true;
  item.eviction.max_rows = 1500;
  SlotOptions user;
  user.id = kUser;
  user.dim = 16;
  user.eviction.admission_threshold = 2;
  SlotOptions history;
  history.id = kHistory;
  history.dim = 4;
  history.eviction.ttl_passes = 1;
  o.slots = {item, user, history};
  o.admission_filter_bytes = 1 << 14;
  o.memory_limit_bytes = 600 << 10;
  o.durable = true;
  return o;
}

// One pass of traffic: pulls then pushes of keys drawn from a skewed stream.
void Traffic(EmbeddingTable* t, uint32_t pass, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int request = 0; request < 40; ++request) {
    std::vector<uint64_t> keys;
    for (int i = 0; i < 300; ++i) {
      const uint32_t slot = std::vector<uint32_t>{kItem, kUser, kHistory}[rng() % 3];
      const uint64_t id = (rng() % 4000) * (rng() % 3) + pass * 7919 * (rng() % 2);
      keys.push_back(testing::TestKey(slot, id));
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    uint64_t values = 0;
    ASSERT_TRUE(t->CountValues(keys.data(), keys.size(), &values).ok());
    std::vector<float> rows(values), grads(values), shows(keys.size()), clicks(keys.size());
    ASSERT_TRUE(t->Pull(keys.data(), keys.size(), rows.data()).ok());
    for (float& g : grads) g = static_cast<float>(static_cast<int>(rng() % 200) - 100) / 500.0f;
    for (size_t i = 0; i < keys.size(); ++i) {
      shows[i] = 1 + rng() % 3;
      clicks[i] = rng() % 4 == 0 ? 1 : 0;
    }
    ASSERT_TRUE(t->Push(keys.data(), keys.size(), grads.data(), shows.data(), clicks.data()).ok());
  }
}

// Everything observable about a table: every row in iteration order with all its state,
// and the stats that do not measure time.
struct Dump {
  std::vector<uint64_t> keys;
  std::vector<RowMeta> metas;
  std::vector<std::vector<float>> weights, accumulators;
  TableStatsSnapshot stats;
};

Dump DumpOf(const EmbeddingTable& t) {
  Dump d;
  t.ForEachRow(
      [&](uint64_t key, const float*, uint32_t, const RowMeta&) { d.keys.push_back(key); });
  for (uint64_t key : d.keys) {
    RowSnapshot row;
    EXPECT_TRUE(t.Lookup(key, &row).ok());
    d.metas.push_back(row.meta);
    d.weights.push_back(row.weights);
    d.accumulators.push_back(row.accumulator);
  }
  d.stats = t.Stats();
  return d;
}

bool SameMeta(const RowMeta& a, const RowMeta& b) { return std::memcmp(&a, &b, sizeof(a)) == 0; }

void ExpectSame(const Dump& a, const Dump& b) {
  ASSERT_EQ(a.keys, b.keys) << "rows or their order differ";
  for (size_t i = 0; i < a.keys.size(); ++i) {
    ASSERT_TRUE(SameMeta(a.metas[i], b.metas[i])) << "meta of row " << i;
    ASSERT_EQ(a.weights[i], b.weights[i]) << "weights of row " << i;
    ASSERT_EQ(a.accumulators[i], b.accumulators[i]) << "accumulator of row " << i;
  }
  const TableStatsSnapshot &x = a.stats, &y = b.stats;
  EXPECT_EQ(x.rows, y.rows);
  EXPECT_EQ(x.rows_created, y.rows_created);
  EXPECT_EQ(x.rows_deleted, y.rows_deleted);
  EXPECT_EQ(x.cap_refused, y.cap_refused);
  EXPECT_EQ(x.memory_refused, y.memory_refused);
  EXPECT_EQ(x.bytes_used, y.bytes_used) << "the memory limit would see other bytes";
  EXPECT_EQ(x.bytes.index, y.bytes.index);
  EXPECT_EQ(x.bytes.slack, y.bytes.slack);
  EXPECT_EQ(x.admission.admitted, y.admission.admitted);
  EXPECT_EQ(x.admission.pushes_dropped, y.admission.pushes_dropped);
  EXPECT_EQ(x.pass, y.pass);
  for (size_t s = 0; s < x.slots.size(); ++s) {
    for (int r = 0; r < kNumDeleteReasons; ++r) {
      EXPECT_EQ(x.slots[s].deleted_total[r], y.slots[s].deleted_total[r]);
      EXPECT_EQ(x.slots[s].deleted_pass[r], y.slots[s].deleted_pass[r]);
    }
  }
}

ShardStoreOptions StoreOptions(const std::string& dir, Env* env = Env::Default()) {
  ShardStoreOptions o;
  o.dir = dir;
  o.shard_id = 1;
  o.num_shards = 3;
  o.new_hash_salt = 0x1234567;
  o.env = env;
  return o;
}

struct Opened {
  std::unique_ptr<ShardStore> store;
  std::unique_ptr<EmbeddingTable> table;
};

Opened OpenStore(const ShardStoreOptions& o, const TableOptions& t = Options()) {
  Opened out;
  Status st = ShardStore::Open(o, t, &out.store, &out.table);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

// Runs pass `pass` on the table and commits it.
void RunAndCommit(Opened* s, uint32_t pass) {
  ASSERT_TRUE(s->table->BeginPass(pass).ok());
  Traffic(s->table.get(), pass, pass * 101);
  ASSERT_TRUE(s->table->EndPass().ok());
  proto::PrepareReply info;
  Status st = s->store->Prepare(s->table.get(), pass, &info);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_GT(info.rows_written(), 0u);
  st = s->store->Commit(s->table.get(), pass);
  ASSERT_TRUE(st.ok()) << st.ToString();
}

TEST(ShardStoreTest, ACommittedTableLoadsBackAsTheSameTableAndBehavesTheSame) {
  testing::TempDir dir;
  Opened live = OpenStore(StoreOptions(dir.File("shard")));
  EXPECT_EQ(live.table->hash_salt(), 0x1234567u);
  for (uint32_t pass = 1; pass <= 3; ++pass) RunAndCommit(&live, pass);
  const TableStatsSnapshot st = live.table->Stats();
  // The policies were at work: without them this would test little.
  uint64_t evicted = 0, capped = 0, ttl = 0;
  for (const auto& s : st.slots) {
    evicted += s.deleted_total[static_cast<int>(DeleteReason::kMemory)];
    capped += s.deleted_total[static_cast<int>(DeleteReason::kCap)];
    ttl += s.deleted_total[static_cast<int>(DeleteReason::kTtl)];
  }
  EXPECT_GT(evicted, 0u);
  EXPECT_GT(capped, 0u);
  EXPECT_GT(ttl, 0u);
  EXPECT_GT(st.admission.pushes_dropped, 0u);
  EXPECT_EQ(live.store->committed_pass(), 3u);

  // The live table goes on without its store; a second process opens the store.
  live.store.reset();
  Opened loaded = OpenStore(StoreOptions(dir.File("shard")));
  EXPECT_EQ(loaded.store->committed_pass(), 3u);
  proto::StorageStats storage;
  loaded.store->Stats(&storage);
  EXPECT_EQ(storage.rows_loaded(), st.rows);
  ExpectSame(DumpOf(*live.table), DumpOf(*loaded.table));

  // Both take the same next pass: the same rows are evicted, capped, admitted, expired.
  for (EmbeddingTable* t : {live.table.get(), loaded.table.get()}) {
    ASSERT_TRUE(t->BeginPass(4).ok());
    Traffic(t, 4, 404);
    ASSERT_TRUE(t->EndPass().ok());
  }
  ExpectSame(DumpOf(*live.table), DumpOf(*loaded.table));
}

TEST(ShardStoreTest, RollbackRestoresTheCommittedPassExactly) {
  testing::TempDir dir;
  Opened s = OpenStore(StoreOptions(dir.File("shard")));
  RunAndCommit(&s, 1);
  RunAndCommit(&s, 2);
  const Dump committed = DumpOf(*s.table);
  // Pass 3 trains, ends and is even prepared, then the cluster decides against it.
  ASSERT_TRUE(s.table->BeginPass(3).ok());
  Traffic(s.table.get(), 3, 303);
  ASSERT_TRUE(s.table->EndPass().ok());
  proto::PrepareReply info;
  ASSERT_TRUE(s.store->Prepare(s.table.get(), 3, &info).ok());
  EXPECT_EQ(s.store->prepared_pass(), 3u);
  Status st = s.store->Rollback(s.table.get(), 2);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(s.store->prepared_pass(), 0u);
  ExpectSame(committed, DumpOf(*s.table));
  // And the rolled-back table can run pass 3 again and commit it.
  RunAndCommit(&s, 3);
  EXPECT_EQ(s.store->committed_pass(), 3u);
  // A prepare of a pass that was prepared before and changed since is refused: the first
  // one forgot the rows moved since the commit.
  ASSERT_TRUE(s.table->BeginPass(4).ok());
  Traffic(s.table.get(), 4, 404);
  ASSERT_TRUE(s.table->EndPass().ok());
  ASSERT_TRUE(s.store->Prepare(s.table.get(), 4, &info).ok());
  ASSERT_TRUE(s.store->Prepare(s.table.get(), 4, &info).ok()) << "a repeat, nothing changed";
  const uint64_t key = testing::TestKey(kItem, 99999);
  std::vector<float> row(8);
  ASSERT_TRUE(s.table->Pull(&key, 1, row.data()).ok());
  st = s.store->Prepare(s.table.get(), 4, &info);
  EXPECT_EQ(st.code(), Status::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("roll back first"), std::string::npos) << st.message();
  ASSERT_TRUE(s.store->Rollback(s.table.get(), 3).ok());
  // Rolling back to a pass that is not the committed one is refused.
  st = s.store->Rollback(s.table.get(), 2);
  EXPECT_EQ(st.code(), Status::kInvalidArgument) << st.ToString();
}

TEST(ShardStoreTest, APreparedPassSurvivesARestartAndCommitsThere) {
  testing::TempDir dir;
  Opened live = OpenStore(StoreOptions(dir.File("shard")));
  RunAndCommit(&live, 1);
  ASSERT_TRUE(live.table->BeginPass(2).ok());
  Traffic(live.table.get(), 2, 202);
  ASSERT_TRUE(live.table->EndPass().ok());
  proto::PrepareReply info;
  ASSERT_TRUE(live.store->Prepare(live.table.get(), 2, &info).ok());
  live.store.reset();  // the process dies before the coordinator's decision arrives

  Opened restarted = OpenStore(StoreOptions(dir.File("shard")));
  EXPECT_EQ(restarted.store->committed_pass(), 1u);
  EXPECT_EQ(restarted.store->prepared_pass(), 2u);
  EXPECT_EQ(restarted.table->pass(), 1u);
  Status st = restarted.store->Commit(restarted.table.get(), 2);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(restarted.store->committed_pass(), 2u);
  ExpectSame(DumpOf(*live.table), DumpOf(*restarted.table));
  // A repeated decision is a no-op.
  EXPECT_TRUE(restarted.store->Commit(restarted.table.get(), 2).ok());
}

TEST(ShardStoreTest, ForeignDataDirsAreRefusedNamingWhatDiffers) {
  testing::TempDir dir;
  {
    Opened s = OpenStore(StoreOptions(dir.File("shard")));
    RunAndCommit(&s, 1);
  }
  auto refusal = [&](ShardStoreOptions o, TableOptions t) {
    Opened out;
    Status st = ShardStore::Open(o, t, &out.store, &out.table);
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.message().find('\n'), std::string::npos) << "one line: " << st.message();
    return st;
  };
  ShardStoreOptions other_shard = StoreOptions(dir.File("shard"));
  other_shard.shard_id = 0;
  Status st = refusal(other_shard, Options());
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("belongs to shard 1 of 3; this server is shard 0 of 3"),
            std::string::npos)
      << st.ToString();
  ShardStoreOptions other_count = StoreOptions(dir.File("shard"));
  other_count.num_shards = 4;
  st = refusal(other_count, Options());
  EXPECT_NE(st.message().find("this server is shard 1 of 4"), std::string::npos) << st.ToString();
  TableOptions other_config = Options();
  other_config.slots[0].dim = 12;
  st = refusal(StoreOptions(dir.File("shard")), other_config);
  EXPECT_NE(st.message().find("another table config: line"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("dim: 8"), std::string::npos) << st.ToString();
  // Nothing was overwritten: the right shard still loads it.
  Opened again = OpenStore(StoreOptions(dir.File("shard")));
  EXPECT_EQ(again.store->committed_pass(), 1u);
}

std::vector<std::string> SstFiles(const std::string& db) {
  std::vector<std::string> names, out;
  EXPECT_TRUE(Env::Default()->GetChildren(db, &names).ok());
  for (const std::string& n : names) {
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".sst") == 0) out.push_back(db + "/" + n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ShardStoreTest, DamagedAndTruncatedDatabasesAreRefused) {
  for (const bool truncate : {false, true}) {
    testing::TempDir dir;
    {
      Opened s = OpenStore(StoreOptions(dir.File("shard")));
      RunAndCommit(&s, 1);
    }
    const std::vector<std::string> files = SstFiles(dir.File("shard/db"));
    ASSERT_FALSE(files.empty());
    const std::string victim = files.back();
    uint64_t size = 0;
    ASSERT_TRUE(Env::Default()->GetFileSize(victim, &size).ok());
    if (truncate) {
      ASSERT_EQ(::truncate(victim.c_str(), static_cast<off_t>(size / 2)), 0);
    } else {
      std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(size / 3));
      char c = 0;
      f.read(&c, 1);
      f.seekp(static_cast<std::streamoff>(size / 3));
      c = static_cast<char>(c ^ 0x5A);
      f.write(&c, 1);
    }
    Opened out;
    Status st =
        ShardStore::Open(StoreOptions(dir.File("shard")), Options(), &out.store, &out.table);
    EXPECT_EQ(st.code(), Status::kCorruption)
        << (truncate ? "truncated: " : "flipped: ") << st.ToString();
    EXPECT_EQ(st.message().find('\n'), std::string::npos) << st.message();
  }
}

TEST(ShardStoreTest, AFullDiskFailsTheCommitAndKeepsTheCommittedState) {
  testing::TempDir dir;
  testing::FaultEnv env;
  Opened s = OpenStore(StoreOptions(dir.File("shard"), &env));
  RunAndCommit(&s, 1);
  const Dump committed = DumpOf(*s.table);
  ASSERT_TRUE(s.table->BeginPass(2).ok());
  Traffic(s.table.get(), 2, 202);
  ASSERT_TRUE(s.table->EndPass().ok());
  env.FailWrites("");
  proto::PrepareReply info;
  Status st = s.store->Prepare(s.table.get(), 2, &info);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("shard 1: cannot prepare pass 2 in " + dir.File("shard") +
                              "/staging/prepared-00000002.sst"),
            std::string::npos)
      << st.ToString();
  EXPECT_NE(st.message().find("No space left on device"), std::string::npos) << st.ToString();
  EXPECT_EQ(s.store->committed_pass(), 1u);
  // A failed prepare cannot be retried on the same table: it must be rolled back.
  env.Heal();
  EXPECT_EQ(s.store->Prepare(s.table.get(), 2, &info).code(), Status::kInvalidArgument);
  ASSERT_TRUE(s.store->Rollback(s.table.get(), 1).ok());
  ExpectSame(committed, DumpOf(*s.table));
  s.store.reset();
  Opened reopened = OpenStore(StoreOptions(dir.File("shard")));
  EXPECT_EQ(reopened.store->committed_pass(), 1u);
  ExpectSame(committed, DumpOf(*reopened.table));
}

TEST(ShardStoreTest, WeightsAndAccumulatorsAreStoredTogether) {
  // A row's accumulator must match its weights' history after a restart in the middle of
  // a pass: replaying the lost part of the pass on the restored row gives exactly what
  // the row became before the crash.
  testing::TempDir dir;
  TableOptions o = Options();
  o.memory_limit_bytes = 0;
  Opened s = OpenStore(StoreOptions(dir.File("shard")), o);
  const uint64_t key = testing::TestKey(kItem, 42);
  const std::vector<float> g1(8, 0.3f), g2(8, -0.7f);
  const float one = 1, zero = 0;
  ASSERT_TRUE(s.table->BeginPass(1).ok());
  ASSERT_TRUE(s.table->Push(&key, 1, g1.data(), &one, &zero).ok());
  ASSERT_TRUE(s.table->EndPass().ok());
  proto::PrepareReply info;
  ASSERT_TRUE(s.store->Prepare(s.table.get(), 1, &info).ok());
  ASSERT_TRUE(s.store->Commit(s.table.get(), 1).ok());
  ASSERT_TRUE(s.table->BeginPass(2).ok());
  ASSERT_TRUE(s.table->Push(&key, 1, g2.data(), &one, &zero).ok());
  RowSnapshot before_crash;
  ASSERT_TRUE(s.table->Lookup(key, &before_crash).ok());
  s.store.reset();  // crash in the middle of pass 2
  Opened r = OpenStore(StoreOptions(dir.File("shard")), o);
  RowSnapshot restored;
  ASSERT_TRUE(r.table->Lookup(key, &restored).ok());
  EXPECT_EQ(restored.meta.update_count, 1u);
  EXPECT_NE(restored.weights, before_crash.weights);
  ASSERT_TRUE(r.table->BeginPass(2).ok());
  ASSERT_TRUE(r.table->Push(&key, 1, g2.data(), &one, &zero).ok());
  RowSnapshot replayed;
  ASSERT_TRUE(r.table->Lookup(key, &replayed).ok());
  EXPECT_EQ(replayed.weights, before_crash.weights);
  EXPECT_EQ(replayed.accumulator, before_crash.accumulator);
}

}  // namespace
}  // namespace pepnet
