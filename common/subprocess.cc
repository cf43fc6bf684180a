#include "common/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstring>
#include <fstream>
#include <thread>

namespace pepnet {

Subprocess::~Subprocess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
  }
}

Status Subprocess::Start(const std::vector<std::string>& argv, const std::string& log_path) {
  if (argv.empty()) return Status::InvalidArgument("empty command");
  if (access(argv[0].c_str(), X_OK) != 0) {
    return Status::NotFound("cannot execute " + argv[0] + ": " + strerror(errno));
  }
  int log_fd = -1;
  if (!log_path.empty()) {
    log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) return Status::NotFound("cannot open log " + log_path);
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    if (log_fd >= 0) close(log_fd);
    return Status::Internal(std::string("fork failed: ") + strerror(errno));
  }
  if (pid == 0) {
    if (log_fd >= 0) {
      dup2(log_fd, STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  if (log_fd >= 0) close(log_fd);
  pid_ = pid;
  return Status::OK();
}

void Subprocess::Signal(int signal) {
  if (pid_ > 0) kill(pid_, signal);
}

Status Subprocess::Wait(int timeout_ms, int* exit_code) {
  if (pid_ <= 0) return Status::NotFound("no running process");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int status;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return Status::OK();
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::DeadlineExceeded("process still running after " + std::to_string(timeout_ms) +
                                      " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::string ExecutableDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, n);
  return path.substr(0, path.rfind('/'));
}

Status WaitForPortFile(const std::string& path, int timeout_ms, Subprocess* child, uint16_t* port) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(path);
    unsigned value = 0;
    if (in >> value && value > 0 && value <= 65535) {
      *port = static_cast<uint16_t>(value);
      return Status::OK();
    }
    if (child != nullptr) {
      int code;
      if (child->Wait(0, &code).ok()) {
        return Status::Unavailable("server exited with code " + std::to_string(code) +
                                   " before listening");
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return Status::DeadlineExceeded("no port in " + path + " after " + std::to_string(timeout_ms) +
                                  " ms");
}

}  // namespace pepnet
