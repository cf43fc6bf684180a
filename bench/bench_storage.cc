// pepnet_bench_storage: what durability costs a shard, on real RocksDB in a folder.
//
//   pepnet_bench_storage --rows=10000000 [--dim=16] [--changed=0.1] [--dir=DIR]
//
// Builds a table of --rows rows (one slot of --dim, per-row AdaGrad: a pass that creates
// them all), commits it (prepare + commit, timed: the worst case, every row new), runs a
// second pass that updates a --changed fraction of the rows and commits that (the steady
// state), then opens the store again as a restarted shard does and times the load. The
// last line is JSON.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "common/env.h"
#include "common/hash.h"
#include "proto/ps.pb.h"
#include "ps/embedding_table.h"
#include "ps/shard_store.h"

DEFINE_uint64(rows, 10000000, "Rows in the table.");
DEFINE_int32(dim, 16, "Dim of the one slot.");
DEFINE_double(changed, 0.1, "Fraction of the rows the second pass updates.");
DEFINE_string(dir, "", "Data dir (default: a new folder under /tmp, removed after).");
DEFINE_int32(partition_bits, 5, "Partitions of the table.");
DEFINE_int32(load_threads, 2, "Threads of the load.");

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

[[noreturn]] void Die(const pepnet::Status& st) {
  fprintf(stderr, "pepnet_bench_storage: %s\n", st.ToString().c_str());
  exit(1);
}

void Check(const pepnet::Status& st) {
  if (!st.ok()) Die(st);
}

constexpr uint32_t kSlot = 1;

uint64_t Key(uint64_t i) { return pepnet::MakeFeatureKey(kSlot, pepnet::Mix64(i), 10); }

// Pushes a gradient to keys [first, first + count) in batches, with both threads.
void Touch(pepnet::EmbeddingTable* t, uint64_t first, uint64_t count, uint64_t stride) {
  auto work = [&](int part) {
    constexpr size_t kBatch = 4096;
    std::vector<uint64_t> keys;
    std::vector<float> grads, ones(kBatch, 1.0f), zeros(kBatch, 0.0f);
    for (uint64_t b = part; b * kBatch < count; b += 2) {
      keys.clear();
      for (uint64_t i = b * kBatch; i < std::min<uint64_t>(count, (b + 1) * kBatch); ++i) {
        keys.push_back(Key((first + i) * stride));
      }
      grads.assign(keys.size() * FLAGS_dim, 0.01f);
      Check(t->Push(keys.data(), keys.size(), grads.data(), ones.data(), zeros.data()));
    }
  };
  std::thread helper(work, 1);
  work(0);
  helper.join();
}

struct Phase {
  double prepare_s = 0, commit_s = 0;
  uint64_t rows_written = 0, file_bytes = 0;
};

Phase Commit(pepnet::ShardStore* store, pepnet::EmbeddingTable* table, uint32_t pass) {
  Check(table->EndPass());
  Phase p;
  pepnet::proto::PrepareReply info;
  auto start = Clock::now();
  Check(store->Prepare(table, pass, &info));
  p.prepare_s = Since(start);
  start = Clock::now();
  Check(store->Commit(table, pass));
  p.commit_s = Since(start);
  p.rows_written = info.rows_written();
  p.file_bytes = info.file_bytes();
  return p;
}

void Print(const char* what, const Phase& p) {
  const double s = p.prepare_s + p.commit_s;
  printf("%-28s %10llu rows  prepare %6.2f s  commit %5.2f s  %5.2f Mrows/s  %6.0f MB/s\n", what,
         static_cast<unsigned long long>(p.rows_written), p.prepare_s, p.commit_s,
         p.rows_written / s / 1e6, p.file_bytes / s / 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("pepnet_bench_storage [--rows=N --dim=D --changed=F --dir=DIR]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 1;
  google::InitGoogleLogging(argv[0]);
  pepnet::Env* env = pepnet::Env::Default();
  std::string dir = FLAGS_dir;
  if (dir.empty()) {
    char tmpl[] = "/tmp/pepnet_bench_storage.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) Die(pepnet::Status::IoError("cannot create a folder in /tmp"));
    dir = tmpl;
  }
  pepnet::TableOptions o;
  o.partition_bits = static_cast<uint32_t>(FLAGS_partition_bits);
  pepnet::SlotOptions slot;
  slot.id = kSlot;
  slot.dim = static_cast<uint32_t>(FLAGS_dim);
  o.slots = {slot};
  o.durable = true;
  pepnet::ShardStoreOptions so;
  so.dir = dir;
  so.load_threads = FLAGS_load_threads;
  Phase full, delta;
  uint64_t table_bytes = 0;
  {
    std::unique_ptr<pepnet::ShardStore> store;
    std::unique_ptr<pepnet::EmbeddingTable> table;
    Check(pepnet::ShardStore::Open(so, o, &store, &table));
    Check(table->BeginPass(1));
    auto start = Clock::now();
    Touch(table.get(), 0, FLAGS_rows, 1);
    fprintf(stderr, "built %llu rows in %.1f s\n", static_cast<unsigned long long>(FLAGS_rows),
            Since(start));
    full = Commit(store.get(), table.get(), 1);
    Print("pass 1 (every row new)", full);
    Check(table->BeginPass(2));
    const uint64_t changed = static_cast<uint64_t>(FLAGS_rows * FLAGS_changed);
    // Every (1/changed)-th row: spread over the whole table, as a real pass's are.
    const uint64_t stride = changed ? FLAGS_rows / changed : 1;
    Touch(table.get(), 0, changed, stride);
    delta = Commit(store.get(), table.get(), 2);
    Print("pass 2 (a fraction updated)", delta);
    table_bytes = table->bytes_used();
  }
  uint64_t disk = 0;
  std::unique_ptr<pepnet::ShardStore> store;
  std::unique_ptr<pepnet::EmbeddingTable> table;
  auto start = Clock::now();
  Check(pepnet::ShardStore::Open(so, o, &store, &table));
  const double open_s = Since(start);
  pepnet::proto::StorageStats st;
  store->Stats(&st);
  disk = st.bytes_on_disk();
  printf(
      "restart: opened and loaded %llu rows in %.2f s (load %.2f s, %.2f Mrows/s); %.0f MB on "
      "disk, table %.0f MB in memory\n",
      static_cast<unsigned long long>(st.rows_loaded()), open_s, st.load_seconds(),
      st.rows_loaded() / st.load_seconds() / 1e6, disk / 1e6, table_bytes / 1e6);
  printf(
      "{\"rows\":%llu,\"dim\":%d,\"full_rows_written\":%llu,\"full_prepare_s\":%.3f,"
      "\"full_commit_s\":%.3f,\"delta_rows_written\":%llu,\"delta_prepare_s\":%.3f,"
      "\"delta_commit_s\":%.3f,\"restart_open_s\":%.3f,\"load_s\":%.3f,\"bytes_on_disk\":%llu}\n",
      static_cast<unsigned long long>(FLAGS_rows), FLAGS_dim,
      static_cast<unsigned long long>(full.rows_written), full.prepare_s, full.commit_s,
      static_cast<unsigned long long>(delta.rows_written), delta.prepare_s, delta.commit_s, open_s,
      st.load_seconds(), static_cast<unsigned long long>(disk));
  store.reset();
  table.reset();
  if (FLAGS_dir.empty()) pepnet::RemoveTree(env, dir);
  return 0;
}
