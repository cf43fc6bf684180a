// pepnet_bench_table: the shard table alone, in process (no network), with Google
// Benchmark. Shows what a server thread spends per row on lookup, creation and AdaGrad.
#include <benchmark/benchmark.h>

#include <random>
#include <unordered_set>

#include "common/hash.h"
#include "ps/embedding_table.h"

namespace pepnet {
namespace {

constexpr uint64_t kUniverse = 1000000;
constexpr size_t kKeysPerRequest = 16384;
constexpr int kRequests = 64;

struct Fixture {
  std::unique_ptr<EmbeddingTable> table;
  std::vector<std::vector<uint64_t>> requests;
  std::vector<float> grads, shows, clicks, out;

  explicit Fixture(bool per_dim) {
    TableOptions o;
    SlotOptions s;
    s.id = 0;
    s.dim = 16;
    s.adagrad.per_dim = per_dim;
    o.slots = {s};
    EmbeddingTable::Create(o, &table);
    // Uniform distinct keys: the cache-unfriendly case for a 1M-row table.
    std::mt19937_64 rng(1);
    for (int r = 0; r < kRequests; ++r) {
      std::unordered_set<uint64_t> seen;
      std::vector<uint64_t> keys;
      while (keys.size() < kKeysPerRequest) {
        const uint64_t rank = rng() % kUniverse;
        if (seen.insert(rank).second) keys.push_back(MakeFeatureKey(0, Mix64(rank), 10));
      }
      requests.push_back(std::move(keys));
    }
    grads.assign(kKeysPerRequest * 16, 0.01f);
    shows.assign(kKeysPerRequest, 1.0f);
    clicks.assign(kKeysPerRequest, 0.0f);
    out.resize(kKeysPerRequest * 16);
    // Every key of the universe exists, as in a warmed-up server.
    std::vector<uint64_t> all;
    for (uint64_t rank = 0; rank < kUniverse; ++rank)
      all.push_back(MakeFeatureKey(0, Mix64(rank), 10));
    std::vector<float> tmp(all.size() * 16);
    table->Pull(all.data(), all.size(), tmp.data());
  }
};

Fixture& GetFixture(bool per_dim) {
  static Fixture per_row(false), per_dim_fixture(true);
  return per_dim ? per_dim_fixture : per_row;
}

void BM_Pull(benchmark::State& state) {
  Fixture& f = GetFixture(false);
  size_t r = 0;
  for (auto _ : state) {
    f.table->Pull(f.requests[r++ % kRequests].data(), kKeysPerRequest, f.out.data());
  }
  state.SetItemsProcessed(state.iterations() * kKeysPerRequest);
}
BENCHMARK(BM_Pull)->Unit(benchmark::kMicrosecond);

void BM_Push(benchmark::State& state) {
  Fixture& f = GetFixture(state.range(0) != 0);
  size_t r = 0;
  for (auto _ : state) {
    f.table->Push(f.requests[r++ % kRequests].data(), kKeysPerRequest, f.grads.data(),
                  f.shows.data(), f.clicks.data());
  }
  state.SetItemsProcessed(state.iterations() * kKeysPerRequest);
  state.SetLabel(state.range(0) ? "per-dim accumulator" : "per-row accumulator");
}
BENCHMARK(BM_Push)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace pepnet

BENCHMARK_MAIN();
