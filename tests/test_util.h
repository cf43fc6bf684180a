// Helpers for tests that run real pepnet processes on loopback.
#ifndef PEPNET_TESTS_TEST_UTIL_H_
#define PEPNET_TESTS_TEST_UTIL_H_

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/hash.h"
#include "common/subprocess.h"

namespace pepnet {
namespace testing {

// The real data samples shipped beside the project, with the config that reads each.
struct RealSample {
  const char* config;  // configs/<config>.pbtxt
  const char* file;    // under ../shared/data/
};
inline const std::vector<RealSample>& RealSamples() {
  static const std::vector<RealSample> samples = {
      {"byterec", "byterec_sample/byterec_sample.txt"},
      {"kuairand", "kuairand_sample/kuairand_sample.csv"}};
  return samples;
}

// The source tree (ctest sets PEPNET_SOURCE_DIR); empty outside ctest.
inline std::string SourceDir() {
  const char* src = getenv("PEPNET_SOURCE_DIR");
  return src ? src : "";
}

// Key number `id` of `slot`, with the default slot_bits of 10.
inline uint64_t TestKey(uint32_t slot, uint64_t id) { return MakeFeatureKey(slot, Mix64(id), 10); }

// Where the pepnet binaries are: $PEPNET_BIN_DIR (set by ctest) or next to the test.
inline std::string BinDir() {
  const char* env = getenv("PEPNET_BIN_DIR");
  return env && *env ? env : ExecutableDir();
}

// A blocking TCP connection to 127.0.0.1:port, reads timing out after 10 s; -1 if refused.
inline int ConnectToLoopback(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// A socket listening on 127.0.0.1 at a port the kernel chose (*port); -1 on failure.
inline int ListenOnLoopback(uint16_t* port, int backlog = 16) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, backlog) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// A temporary directory removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/pepnet_test.XXXXXX";
    path_ = mkdtemp(tmpl) ? tmpl : "";
  }
  ~TempDir() {
    if (!path_.empty()) std::system(("rm -rf '" + path_ + "'").c_str());
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// The lines of a file (none if it is absent).
inline std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The logs of processes of a sanitizer build must hold no report.
inline void ExpectNoSanitizerReports(const std::string& logs) {
  for (const char* report : {"ERROR: AddressSanitizer", "WARNING: ThreadSanitizer",
                             "runtime error:", "ERROR: LeakSanitizer"}) {
    EXPECT_EQ(logs.find(report), std::string::npos) << logs;
  }
}

inline int RunCommand(const std::vector<std::string>& argv, const TempDir& dir,
                      std::string* output);

// Runs pepnet_datagen: passes [first, first + count) of `rows` samples per file into `out`.
inline void GenerateData(const TempDir& dir, const std::string& out, int first, int count,
                         int rows) {
  std::string output;
  ASSERT_EQ(
      RunCommand({BinDir() + "/pepnet_datagen", "--out_dir=" + out,
                  "--first_pass=" + std::to_string(first), "--passes=" + std::to_string(count),
                  "--rows_per_file=" + std::to_string(rows)},
                 dir, &output),
      0)
      << output;
}

// Polls a log until it holds `fragment` (processes write their lines asynchronously to
// what the test sees); false after `timeout_ms`.
inline bool LogEventually(const std::string& path, const std::string& fragment,
                          int timeout_ms = 10000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ReadFile(path).find(fragment) != std::string::npos) return true;
    usleep(20000);
  }
  return false;
}

// A cluster secret in dir/`name`, readable by its owner only (as Secret::Load demands).
inline std::string WriteSecretFile(const TempDir& dir, const std::string& name = "secret",
                                   const std::string& bytes = "0123456789abcdef0123456789abcdef") {
  const std::string path = dir.File(name);
  WriteFile(path, bytes + "\n");
  chmod(path.c_str(), 0600);
  return path;
}

// A pepnet_ps process on a free loopback port (the server picks it: --port=0).
// On destruction it is stopped with SIGTERM and must exit 0 with a log free of
// sanitizer reports, so the sanitizer builds check the server processes too.
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() {
    if (process_.running()) {
      process_.Signal(SIGCONT);  // in case a test stopped it
      process_.Signal(SIGTERM);
      int code = -1;
      Status st = process_.Wait(20000, &code);
      EXPECT_TRUE(st.ok()) << "server did not stop on SIGTERM: " << st.ToString();
      EXPECT_EQ(code, 0) << "server exit code\n" << ReadFile(log_);
    }
    if (!log_.empty()) ExpectNoSanitizerReports(ReadFile(log_));
  }

  Status Start(const TempDir& dir, const std::string& config_path, int shard_id, int num_shards,
               std::vector<std::string> extra_flags = {}) {
    static int started = 0;  // unique file names, also for a restarted shard
    const std::string tag = "shard" + std::to_string(shard_id) + "." + std::to_string(started++);
    port_file_ = dir.File(tag + ".port");
    log_ = dir.File(tag + ".log");
    std::vector<std::string> argv = {BinDir() + "/pepnet_ps",
                                     "--host=127.0.0.1",
                                     "--port=0",
                                     "--port_file=" + port_file_,
                                     "--table_config=" + config_path,
                                     "--shard_id=" + std::to_string(shard_id),
                                     "--num_shards=" + std::to_string(num_shards)};
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    PEPNET_RETURN_IF_ERROR(process_.Start(argv, log_));
    return WaitForPortFile(port_file_, 20000, &process_, &port_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  uint16_t port() const { return port_; }
  const std::string& log_path() const { return log_; }
  Subprocess& process() { return process_; }

 private:
  Subprocess process_;
  std::string port_file_;
  std::string log_;
  uint16_t port_ = 0;
};

// Writes `config_text` to dir/table.pbtxt and starts shards 0..count-1 of a
// `count`-shard cluster with it. On failure the status carries the server's log.
inline Status StartShards(const TempDir& dir, const std::string& config_text, int count,
                          ServerProcess* servers,
                          const std::vector<std::string>& extra_flags = {}) {
  const std::string config = dir.File("table.pbtxt");
  WriteFile(config, config_text);
  for (int s = 0; s < count; ++s) {
    Status st = servers[s].Start(dir, config, s, count, extra_flags);
    if (!st.ok()) return st.WithContext(ReadFile(servers[s].log_path()));
  }
  return Status::OK();
}

// "host:port,host:port" of the first `count` servers.
inline std::string ServerList(const ServerProcess* servers, int count) {
  std::string list;
  for (int s = 0; s < count; ++s) list += (s ? "," : "") + servers[s].address();
  return list;
}

// SIGSTOP is delivered asynchronously; returns once `pid` is really stopped.
inline bool StopProcess(Subprocess* p) {
  p->Signal(SIGSTOP);
  for (int i = 0; i < 500; ++i) {
    std::string stat = ReadFile("/proc/" + std::to_string(p->pid()) + "/stat");
    const size_t paren = stat.rfind(')');
    if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'T') {
      return true;
    }
    usleep(2000);
  }
  return false;
}

// Runs a command to completion; returns its exit code and captures stdout+stderr.
inline int RunCommand(const std::vector<std::string>& argv, const TempDir& dir,
                      std::string* output) {
  Subprocess p;
  const std::string log = dir.File("cmd.out");
  Status st = p.Start(argv, log);
  if (!st.ok()) {
    *output = st.ToString();
    return -1;
  }
  int code = -1;
  st = p.Wait(60000, &code);
  *output = ReadFile(log);
  return st.ok() ? code : -1;
}

}  // namespace testing
}  // namespace pepnet

#endif  // PEPNET_TESTS_TEST_UTIL_H_
