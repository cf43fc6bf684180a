// A plain HTTP/1.1 client for tests of the admin endpoints (one request on a fresh
// loopback connection, read until the server closes), and promtool's check of a
// /metrics exposition.
#ifndef PEPNET_TESTS_HTTP_UTIL_H_
#define PEPNET_TESTS_HTTP_UTIL_H_

#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "tests/test_util.h"

namespace pepnet {
namespace testing {

// Everything the peer sends until it closes (or 10 s pass).
inline std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

struct Reply {
  int status = 0;
  std::string head, body;
};

inline Reply Exchange(uint16_t port, const std::string& request) {
  Reply r;
  const int fd = testing::ConnectToLoopback(port);
  if (fd < 0) return r;
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  const std::string all = ReadAll(fd);
  close(fd);
  const size_t split = all.find("\r\n\r\n");
  r.head = all.substr(0, split);
  if (split != std::string::npos) r.body = all.substr(split + 4);
  if (all.rfind("HTTP/1.1 ", 0) == 0) r.status = std::stoi(all.substr(9, 3));
  return r;
}

inline Reply Get(uint16_t port, const std::string& path) {
  return Exchange(port, "GET " + path + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
}

// promtool's verdict on an exposition: "" when it passes.
inline std::string PromtoolProblems(const TempDir& dir, const std::string& exposition,
                                    const std::string& name) {
  const std::string file = dir.File(name + ".prom");
  WriteFile(file, exposition);
  std::string out;
  const int code = RunCommand(
      {"/bin/sh", "-c",
       "command -v promtool >/dev/null || { echo 'promtool is not installed (Debian package "
       "prometheus; deploy/install_deps.sh --test installs it)'; exit 2; }; promtool check "
       "metrics < '" +
           file + "'"},
      dir, &out);
  return code == 0 ? "" : "exit " + std::to_string(code) + ": " + out;
}

}  // namespace testing
}  // namespace pepnet

#endif  // PEPNET_TESTS_HTTP_UTIL_H_
