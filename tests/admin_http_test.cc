// The admin HTTP endpoints (common/admin.h, common/http_server.h): every endpoint from a
// real pepnet_ps, a port in use, and clients that send too much, too little or garbage.
#include <arpa/inet.h>
#include <gflags/gflags.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/admin.h"
#include "common/auth.h"
#include "common/stats.h"
#include "common/subprocess.h"
#include "tests/http_util.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

using testing::Exchange;
using testing::Get;
using testing::ReadAll;
using testing::Reply;

class AdminHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = dir_.File("t.pbtxt");
    testing::WriteFile(config_, "slot { id: 1 dim: 4 }\n");
  }
  // A shard with its admin port; returns the port.
  uint16_t StartShard(std::vector<std::string> extra = {}) {
    const std::string port_file = dir_.File("admin.port");
    extra.push_back("--admin_port=0");
    extra.push_back("--admin_port_file=" + port_file);
    Status st = server_.Start(dir_, config_, 0, 1, extra);
    EXPECT_TRUE(st.ok()) << st.ToString();
    uint16_t port = 0;
    st = WaitForPortFile(port_file, 20000, &server_.process(), &port);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return port;
  }

  testing::TempDir dir_;
  std::string config_;
  testing::ServerProcess server_;
};

TEST_F(AdminHttpTest, EveryEndpointAnswersFromARealShard) {
  const uint16_t port = StartShard();
  ASSERT_NE(port, 0);
  EXPECT_TRUE(testing::LogEventually(server_.log_path(),
                                     "admin HTTP on http://127.0.0.1:" + std::to_string(port)));
  Reply r = Get(port, "/healthz");
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.body, "ok\n");
  r = Get(port, "/readyz");
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_EQ(r.body, "ready\n");
  r = Get(port, "/statusz");
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_NE(r.head.find("Content-Type: text/html"), std::string::npos) << r.head;
  for (const std::string& want :
       {std::string("shard 0/1"), std::string("<td>version</td><td>") + PepnetVersion(),
        std::string("<td>uptime</td>"), std::string("<td>pass</td><td>0</td>"),
        "<td>--table_config</td><td>" + config_, std::string("<td>--hash_salt</td><td>(hidden)"),
        std::string("<td>--admin_port</td><td>0</td>")}) {
    EXPECT_NE(r.body.find(want), std::string::npos) << want << "\n" << r.body;
  }
  r = Get(port, "/nothing-here");
  EXPECT_EQ(r.status, 404);
  // Kept alive: two requests on one connection, the second answered too.
  r = Exchange(port,
               "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /readyz HTTP/1.1\r\nHost: t\r\n"
               "Connection: close\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("ready\n"), std::string::npos) << r.body;
}

TEST_F(AdminHttpTest, AnAdminPortInUseFailsTheStartNamingIt) {
  uint16_t port = 0;
  const int fd = testing::ListenOnLoopback(&port, 1);
  ASSERT_GE(fd, 0);
  const std::string taken = std::to_string(port);
  std::string output;
  EXPECT_EQ(testing::RunCommand({testing::BinDir() + "/pepnet_ps", "--port=0",
                                 "--table_config=" + config_, "--admin_port=" + taken},
                                dir_, &output),
            2);
  EXPECT_NE(output.find("--admin_port=" + taken + ": cannot listen on 127.0.0.1:" + taken),
            std::string::npos)
      << output;
  close(fd);
}

TEST_F(AdminHttpTest, HostileClientsCannotStallOrGrowIt) {
  const uint16_t port = StartShard({"--admin_timeout_ms=500"});
  ASSERT_NE(port, 0);
  // Headers over the 8 KiB bound: 431, and the connection closes.
  Reply r =
      Exchange(port, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(16 << 10, 'a') +
                         "\r\n\r\n");
  EXPECT_EQ(r.status, 431) << r.head;
  // A chunk-size line that never ends (Beast does not bound it): refused at the read
  // buffer's limit instead of growing it.
  r = Exchange(port, "POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1;" +
                         std::string(200 << 10, 'a'));
  EXPECT_TRUE(r.status == 431 || r.status == 400) << r.head;
  // A body over 64 KiB, announced: refused without reading it.
  r = Exchange(port, "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n");
  EXPECT_EQ(r.status, 413) << r.head;
  // Only GET and HEAD; HEAD without the body.
  r = Exchange(port,
               "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: "
               "close\r\n\r\n");
  EXPECT_EQ(r.status, 405) << r.head;
  r = Exchange(port, "HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r.head;
  EXPECT_NE(r.head.find("Content-Length: 3"), std::string::npos) << r.head;
  EXPECT_EQ(r.body, "");
  // Not HTTP at all (a TLS hello): 400.
  r = Exchange(port, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + "\r\n\r\n");
  EXPECT_EQ(r.status, 400) << r.head;
  // A client that sends half a request and stalls (slow-loris), and one that sends
  // nothing: both closed at the deadline.
  for (const std::string& partial : {std::string("GET /healthz HTTP/1.1\r\nHo"), std::string()}) {
    const int fd = testing::ConnectToLoopback(port);
    ASSERT_GE(fd, 0);
    send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
    const auto start = std::chrono::steady_clock::now();
    ReadAll(fd);  // returns when the server closes
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(waited, 5.0);
    close(fd);
  }
  // 80 idle connections against the cap of 64: the ones over it are told 503 at once
  // (long before the 500 ms deadline), and once the idle ones are dropped at their
  // deadline a request is served again.
  std::vector<int> idle;
  for (int i = 0; i < 80; ++i) idle.push_back(testing::ConnectToLoopback(port));
  const auto start = std::chrono::steady_clock::now();
  const std::string over = ReadAll(idle.back());
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 0.4);
  EXPECT_EQ(over.rfind("HTTP/1.1 503", 0), 0u) << over;
  for (int fd : idle) {
    if (fd >= 0) ReadAll(fd);
  }
  for (int fd : idle) close(fd);
  int status = 0;
  for (int attempt = 0; attempt < 20 && status != 200; ++attempt) {
    status = Get(port, "/healthz").status;
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(status, 200);
}

TEST(AdminEndpointsTest, ReadyzNamesWhatIsMissing) {
  gflags::FlagSaver saver;
  gflags::SetCommandLineOption("admin_port", "0");
  AdminHooks hooks;
  hooks.role = "worker 0/1";
  hooks.ready = [] { return Status::Unavailable("not connected to shard 1"); };
  hooks.metrics = [](StatSet* out) { out->Gauge("pepnet_test_figure", "A test's figure.", 7); };
  std::unique_ptr<AdminEndpoints> admin;
  Status st = AdminEndpoints::StartFromFlags("test", "127.0.0.1", Secret(), hooks, &admin);
  ASSERT_TRUE(st.ok()) << st.ToString();
  Reply r = Get(admin->port(), "/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, "not ready: not connected to shard 1\n");
  EXPECT_NE(Get(admin->port(), "/statusz").body.find("no: not connected to shard 1"),
            std::string::npos);
  r = Get(admin->port(), "/metrics");
  EXPECT_NE(r.head.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << r.head;
  EXPECT_NE(r.body.find("# TYPE pepnet_test_figure gauge\npepnet_test_figure 7\n"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("pepnet_build_info{program=\"test\",role=\"worker 0/1\",version=\""),
            std::string::npos)
      << r.body;

  gflags::SetCommandLineOption("admin_port", "-1");
  std::unique_ptr<AdminEndpoints> none;
  ASSERT_TRUE(AdminEndpoints::StartFromFlags("test", "127.0.0.1", Secret(), hooks, &none).ok());
  EXPECT_EQ(none, nullptr);
}

}  // namespace
}  // namespace pepnet
