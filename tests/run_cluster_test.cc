// deploy/local/run_cluster.sh --data_dir: a cluster stopped whole (every process killed at
// once) resumes when the same command runs again, on the same ports, and its per-pass
// lines start at the first pass it trains.
#include <gtest/gtest.h>
#include <signal.h>

#include <regex>
#include <thread>

#include "common/text_proto.h"
#include "proto/storage.pb.h"
#include "publish/manifest.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

std::vector<int> PassLines(const std::string& text) {
  std::vector<int> passes;
  const std::regex re("(^|\n)pass ([0-9]+) \\(");
  for (std::sregex_iterator it(text.begin(), text.end(), re), end; it != end; ++it) {
    passes.push_back(std::stoi((*it)[2]));
  }
  return passes;
}

TEST(RunClusterTest, TheSameCommandResumesAClusterStoppedWhole) {
  testing::TempDir dir;
  testing::GenerateData(dir, dir.File("data"), 0, 4, 4000);
  // The launcher finds the binaries of this build.
  setenv("PEPNET_BIN", testing::BinDir().c_str(), 1);
  const std::vector<std::string> command = {
      "/bin/bash",
      testing::SourceDir() + "/deploy/local/run_cluster.sh",
      "--config=" + testing::SourceDir() + "/configs/demo.pbtxt",
      "--pass_root=" + dir.File("data"),
      "--servers=2",
      "--workers=1",
      "--max_passes=4",
      "--idle_timeout=2",
      "--run_dir=" + dir.File("run"),
      "--data_dir=" + dir.File("state")};
  // A session of its own, so that one signal reaches the launcher and all it started.
  std::vector<std::string> first = {"/usr/bin/setsid"};
  first.insert(first.end(), command.begin(), command.end());
  Subprocess launcher;
  ASSERT_TRUE(launcher.Start(first, dir.File("launcher1.log")).ok());
  const std::string coord_out = dir.File("run/coord.out");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (PassLines(testing::ReadFile(coord_out)).size() < 2) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline)
        << testing::ReadFile(dir.File("launcher1.log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(-launcher.pid(), SIGKILL);
  int code = 0;
  ASSERT_TRUE(launcher.Wait(20000, &code).ok());
  EXPECT_EQ(code, 128 + SIGKILL);
  const std::string before = testing::ReadFile(coord_out);
  ASSERT_LT(PassLines(before).back(), 4) << "the run was over before the stop";
  proto::CoordinatorRecord record;
  std::string text;
  ASSERT_TRUE(ReadFileToString(dir.File("state/coord/coordinator.pbtxt"), "record", &text).ok());
  ASSERT_TRUE(ParseTextProto(text, "record", &record).ok());
  const std::string ports = testing::ReadFile(dir.File("state/ports"));

  // Every process is gone (the next run takes their ports); the same command again.
  Subprocess again;
  ASSERT_TRUE(again.Start(command, dir.File("launcher2.log")).ok());
  ASSERT_TRUE(again.Wait(300000, &code).ok());
  ASSERT_EQ(code, 0) << testing::ReadFile(dir.File("launcher2.log"))
                     << testing::ReadFile(dir.File("run/coord.log"));
  const std::vector<int> resumed = PassLines(testing::ReadFile(coord_out).substr(before.size()));
  ASSERT_FALSE(resumed.empty());
  EXPECT_EQ(resumed.front(), static_cast<int>(record.committed_pass()) + 1);
  EXPECT_EQ(resumed.back(), 4);
  EXPECT_EQ(testing::ReadFile(dir.File("state/ports")), ports);
  std::vector<std::string> versions;
  ASSERT_TRUE(ListVersions(dir.File("run/model"), &versions).ok());
  EXPECT_EQ(versions,
            std::vector<std::string>({"v-00000001", "v-00000002", "v-00000003", "v-00000004"}));
  // Each pass's metrics exactly once.
  const std::string metrics = testing::ReadFile(dir.File("run/metrics.jsonl"));
  for (int p = 1; p <= 4; ++p) {
    const std::string mark = "{\"pass\":" + std::to_string(p) + ",";
    size_t count = 0;
    for (size_t at = metrics.find(mark); at != std::string::npos; at = metrics.find(mark, at + 1)) {
      ++count;
    }
    EXPECT_EQ(count, 1u) << "pass " << p << "\n" << metrics;
  }
}

}  // namespace
}  // namespace pepnet
