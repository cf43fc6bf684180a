// pepnet_train's progress on stderr: plain lines at the set rate on a pipe, one line
// redrawn in place on a pseudo-terminal; never a line that starts like a pass summary.
#include "common/progress_line.h"

#include <gtest/gtest.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/test_util.h"

namespace pepnet {
namespace {

TEST(ProgressLineTest, FormatSaysSamplesRateLossAndEta) {
  EXPECT_EQ(ProgressLine::Format(3, "pass-00003", 50000, 200000, false, 10, 0.51234),
            "progress: pass 3 (pass-00003): 50000 samples of ~200000, 5000 samples/s, "
            "loss 0.5123, 10 s, ETA 30 s");
  EXPECT_EQ(ProgressLine::Format(1, "p", 100, 0, true, 2, 0.5),
            "progress: pass 1 (p): 100 samples, 50 samples/s, loss 0.5000, 2 s");
}

class ProgressOfTrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Small enough for the sanitizer builds (about 20 times slower), with lines every 50 ms.
    testing::GenerateData(dir_, dir_.File("data"), 0, 1, 5000);
    argv_ = {testing::BinDir() + "/pepnet_train",
             "--config=" + testing::SourceDir() + "/configs/demo.pbtxt",
             "--data=" + dir_.File("data/pass-00000/part-00000.csv") + "," +
                 dir_.File("data/pass-00000/part-00001.csv"),
             "--local",
             "--passes=2",
             "--threads=1",
             "--progress_interval_s=0.05"};
  }
  testing::TempDir dir_;
  std::vector<std::string> argv_;
};

TEST_F(ProgressOfTrainTest, PlainLinesOnAPipe) {
  std::string out;
  ASSERT_EQ(testing::RunCommand(argv_, dir_, &out), 0) << out;
  size_t lines = 0;
  for (size_t at = out.find("progress: pass "); at != std::string::npos;
       at = out.find("progress: pass ", at + 1)) {
    ++lines;
    EXPECT_TRUE(at == 0 || out[at - 1] == '\n') << out;
  }
  EXPECT_GE(lines, 2u) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << "a redraw on a pipe";
  EXPECT_EQ(out.find("\033["), std::string::npos) << "terminal codes on a pipe";
  // The second pass knows its size from the first.
  EXPECT_NE(out.find("samples of 10000"), std::string::npos) << out;
}

TEST_F(ProgressOfTrainTest, OneRedrawnLineOnATerminal) {
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::vector<char*> args;
    for (std::string& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(master, buf, sizeof(buf));
    if (n <= 0) break;  // EIO once the child has exited and closed the terminal
    out.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(master);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << out;
  const std::string redraw = "\r\033[Kprogress: pass ";
  size_t redraws = 0;
  for (size_t at = out.find(redraw); at != std::string::npos; at = out.find(redraw, at + 1)) {
    ++redraws;
  }
  EXPECT_GE(redraws, 2u) << out;
  // Redrawn lines never end in a newline of their own: the summary erases the last one.
  EXPECT_EQ(out.find("\nprogress:"), std::string::npos) << out;
}

}  // namespace
}  // namespace pepnet
