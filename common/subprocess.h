// Starting and stopping helper processes (servers in tests and benchmarks).
//
// A Subprocess object owns one child; destroying it kills (SIGKILL) and reaps the child
// if it is still running. Not thread-safe.
#ifndef PEPNET_COMMON_SUBPROCESS_H_
#define PEPNET_COMMON_SUBPROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace pepnet {

class Subprocess {
 public:
  Subprocess() = default;
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // Runs argv[0] (a path) with the arguments; stdout and stderr go to `log_path` (or are
  // inherited if empty).
  Status Start(const std::vector<std::string>& argv, const std::string& log_path);

  // Sends `signal`; no-op if not running.
  void Signal(int signal);
  // Waits up to timeout_ms for exit. DeadlineExceeded if still running. On exit,
  // *exit_code is the exit status, or 128 + signal number if killed by a signal.
  Status Wait(int timeout_ms, int* exit_code);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// Directory holding the running executable (where the other pepnet binaries are).
std::string ExecutableDir();

// Waits for a server started with --port_file to write its port. Fails early if the
// process `child` exits first.
Status WaitForPortFile(const std::string& path, int timeout_ms, Subprocess* child, uint16_t* port);

}  // namespace pepnet

#endif  // PEPNET_COMMON_SUBPROCESS_H_
