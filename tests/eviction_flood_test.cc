// A live pepnet_ps with a memory limit sized for about 100k rows takes a flood of 1M,
// then 10M more distinct keys while a hot set is pushed with clicks. Memory, sampled
// throughout and by the server's own high-water mark, never passes the limit + 1%; the
// hot keys survive; the counters add up.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "common/ps_client.h"
#include "common/stats.h"
#include "proto/ps.pb.h"
#include "publish/row_file.h"
#include "tests/export_util.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

constexpr uint64_t kLimit = 10000000;  // about 100k rows of 16 floats
constexpr int kDim = 16;
constexpr size_t kKeysPerRequest = 16384;
constexpr size_t kHot = 1000;

uint64_t FloodKey(uint64_t i) { return MakeFeatureKey(0, Mix64(i), 10); }
uint64_t HotKey(uint64_t i) { return MakeFeatureKey(0, Mix64(i ^ 0xABCDEF0123456789ull), 10); }

class EvictionFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteFile(dir_.File("table.pbtxt"), "slot { id: 0 dim: 16 }\n");
    Status st = server_.Start(
        dir_, dir_.File("table.pbtxt"), 0, 1,
        {"--memory_limit_bytes=" + std::to_string(kLimit), "--export_dir=" + dir_.File("export")});
    ASSERT_TRUE(st.ok()) << st.ToString() << testing::ReadFile(server_.log_path());
    ClientOptions options;
    options.servers = {server_.address()};
    options.timeout_ms = 120000;
    ASSERT_TRUE(PsClient::Connect(options, &sampler_client_).ok());
    options.role = PeerRole::kCoordinator;  // it exports the rows at the end
    ASSERT_TRUE(PsClient::Connect(options, &client_).ok());
  }

  StatSet Stats(PsClient* client) {
    std::vector<proto::ServerStats> stats;
    Status st = client->Stats(&stats);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return stats.empty() ? StatSet() : StatsFromProto(stats[0]);
  }

  // Pushes `count` fresh keys from `first` on, each request also carrying the hot keys
  // with a click, while another connection samples the memory in use.
  void Flood(uint64_t first, uint64_t count) {
    std::atomic<bool> done{false};
    std::thread sampler([&] {
      while (!done.load()) {
        sampled_max_ = std::max<uint64_t>(
            sampled_max_, Stats(sampler_client_.get()).Value("pepnet_table_used_bytes"));
        ++samples_;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
    std::vector<uint64_t> keys;
    std::vector<float> grads, shows, clicks;
    for (uint64_t next = first; next < first + count;) {
      keys.clear();
      shows.clear();
      clicks.clear();
      for (size_t i = 0; i < kKeysPerRequest && next < first + count; ++i) {
        keys.push_back(FloodKey(next++));
        shows.push_back(1);
        clicks.push_back(0);
      }
      for (size_t h = 0; h < kHot; ++h) {
        keys.push_back(HotKey(h));
        shows.push_back(1);
        clicks.push_back(1);
      }
      grads.assign(keys.size() * kDim, 0.01f);
      Status st = client_->Wait(
          client_->Push(keys.data(), keys.size(), grads.data(), shows.data(), clicks.data()));
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    done = true;
    sampler.join();
  }

  void ExpectWithinLimit(const char* phase) {
    const StatSet s = Stats(client_.get());
    const auto v = [&s](const char* name) { return static_cast<uint64_t>(s.Value(name)); };
    SCOPED_TRACE(phase);
    EXPECT_EQ(v("pepnet_table_memory_limit_bytes"), kLimit);
    EXPECT_LE(v("pepnet_table_max_used_bytes"), kLimit * 1.01);
    EXPECT_LE(sampled_max_, kLimit * 1.01);
    EXPECT_GT(samples_, 3u);
    EXPECT_GT(v("pepnet_table_used_bytes"), kLimit * 0.9);
    // About 100k rows (the sanitizers' allocators round blocks differently, so the
    // bytes per row vary a little with the build).
    EXPECT_GT(v("pepnet_table_rows"), 85000u);
    EXPECT_LT(v("pepnet_table_rows"), 110000u);
    EXPECT_EQ(s.Value("pepnet_table_refused_new_rows", {{"cause", "memory"}}), 0);
    uint64_t memory_deletions = 0;
    for (const Stat& st : s.stats()) {
      if (st.name == "pepnet_table_slot_deleted_rows" && st.LabelValue("reason") == "memory") {
        memory_deletions += st.value;
      }
    }
    const uint64_t rows = v("pepnet_table_rows"), deleted = v("pepnet_table_deleted_rows");
    const double pause_ms = 1e3 * s.Value("pepnet_table_worst_new_row_pause_seconds");
    EXPECT_EQ(memory_deletions, deleted);
    EXPECT_EQ(rows, v("pepnet_table_created_rows") - deleted);
    EXPECT_GT(pause_ms, 0);
    printf(
        "[%s] rows %llu, bytes %llu (max %llu, sampled max %llu over %llu samples), "
        "deleted %llu, worst eviction pause %.3f ms\n",
        phase, (unsigned long long)rows, (unsigned long long)v("pepnet_table_used_bytes"),
        (unsigned long long)v("pepnet_table_max_used_bytes"), (unsigned long long)sampled_max_,
        (unsigned long long)samples_, (unsigned long long)deleted, pause_ms);
  }

  testing::TempDir dir_;
  testing::ServerProcess server_;
  std::unique_ptr<PsClient> client_, sampler_client_;
  uint64_t sampled_max_ = 0;
  uint64_t samples_ = 0;
};

TEST_F(EvictionFloodTest, LimitHoldsAndHotKeysSurvive) {
  Flood(0, 1000000);
  ExpectWithinLimit("1M keys");
  Flood(1000000, 10000000);
  ExpectWithinLimit("10M more keys");

  // The rows on the server: every hot key, and only the newest one-off keys.
  std::vector<proto::ExportReply> replies;
  std::vector<std::string> paths;
  Status st =
      testing::ExportShardRows(client_.get(), dir_.File("export"), 1, 0, true, &paths, &replies);
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::set<uint64_t> present;
  RowFileInfo info;
  st = ReadRowFile(
      paths[0], replies[0].checksum(), [](uint64_t) { return Status::OK(); },
      [&](uint64_t key, const float*, uint32_t) {
        present.insert(key);
        return Status::OK();
      },
      &info);
  ASSERT_TRUE(st.ok()) << st.ToString();
  for (size_t h = 0; h < kHot; ++h) ASSERT_TRUE(present.count(HotKey(h))) << "hot key " << h;
  uint64_t first_million = 0;
  for (uint64_t i = 0; i < 1000000; i += 7) first_million += present.count(FloodKey(i));
  EXPECT_EQ(first_million, 0u) << "one-off keys of the first flood outlived 10M newer ones";
}

}  // namespace
}  // namespace pepnet
