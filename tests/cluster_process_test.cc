// Whole processes: two pepnet_ps shards, pepnet_ctl against them, flag handling and
// shutdown.
#include <gtest/gtest.h>

#include <string>

#include "common/hash.h"
#include "common/ps_client.h"
#include "proto/ps.pb.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

using testing::RunCommand;

constexpr char kConfig[] = "slot { id: 1 dim: 16 }\nslot { id: 2 dim: 8 }\n";

class ClusterProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status st = testing::StartShards(dir_, kConfig, 2, servers_);
    ASSERT_TRUE(st.ok()) << st.ToString();
    server_list_ = testing::ServerList(servers_, 2);
  }

  std::string Ctl() const { return testing::BinDir() + "/pepnet_ctl"; }

  testing::TempDir dir_;
  std::string server_list_;
  testing::ServerProcess servers_[2];
};

uint64_t JsonNumber(const std::string& json, const std::string& object_start,
                    const std::string& field) {
  const size_t at = json.find(object_start);
  EXPECT_NE(at, std::string::npos) << object_start;
  const std::string needle = "\"" + field + "\":";
  const size_t f = json.find(needle, at);
  EXPECT_NE(f, std::string::npos) << field;
  if (at == std::string::npos || f == std::string::npos) return ~0ull;
  return std::stoull(json.substr(f + needle.size()));
}

TEST_F(ClusterProcessTest, CtlStatsTotalsMatchWhatWasPushed) {
  ClientOptions options;
  ASSERT_TRUE(ParseServerList(server_list_, &options.servers).ok());
  std::unique_ptr<PsClient> client;
  ASSERT_TRUE(PsClient::Connect(options, &client).ok());
  std::vector<uint64_t> keys;
  uint64_t on_shard[2] = {0, 0};
  for (int i = 0; i < 3000; ++i) {
    keys.push_back(testing::TestKey(1 + i % 2, i));
    ++on_shard[ShardOfKey(keys.back(), 2)];
  }
  std::vector<float> values;
  ASSERT_TRUE(client->Wait(client->Pull(keys.data(), keys.size(), &values)).ok());
  std::vector<float> grads(values.size(), 0.01f), ones(keys.size(), 1.0f);
  ASSERT_TRUE(
      client->Wait(client->Push(keys.data(), keys.size(), grads.data(), ones.data(), ones.data()))
          .ok());

  std::string json;
  ASSERT_EQ(RunCommand({Ctl(), "stats", "--servers=" + server_list_, "--json"}, dir_, &json), 0)
      << json;
  EXPECT_EQ(JsonNumber(json, "\"total\"", "rows"), 3000u);
  EXPECT_EQ(JsonNumber(json, "\"total\"", "rows_created"), 3000u);
  EXPECT_EQ(JsonNumber(json, "{\"shard_id\":0", "rows"), on_shard[0]);
  EXPECT_EQ(JsonNumber(json, "{\"shard_id\":1", "rows"), on_shard[1]);
  EXPECT_EQ(JsonNumber(json, "\"total\"", "push_rows"), 3000u);
  EXPECT_EQ(JsonNumber(json, "\"total\"", "pull_rows"), 3000u);
  // 1500 rows of dim 16 and 1500 of dim 8: payload = keys + floats, exactly.
  EXPECT_EQ(JsonNumber(json, "\"total\"", "payload_bytes"), 1500u * (8 + 64) + 1500u * (8 + 32));
  const uint64_t used = JsonNumber(json, "\"total\"", "bytes_used");
  const uint64_t parts = JsonNumber(json, "\"total\"", "payload_bytes") +
                         JsonNumber(json, "\"total\"", "optimizer_bytes") +
                         JsonNumber(json, "\"total\"", "metadata_bytes") +
                         JsonNumber(json, "\"total\"", "index_bytes") +
                         JsonNumber(json, "\"total\"", "slack_bytes");
  EXPECT_EQ(used, parts);
  EXPECT_EQ(JsonNumber(json, "\"total\"", "bytes_used"),
            JsonNumber(json, "{\"shard_id\":0", "bytes_used") +
                JsonNumber(json, "{\"shard_id\":1", "bytes_used"));

  std::string table;
  ASSERT_EQ(RunCommand({Ctl(), "stats", "--servers=" + server_list_}, dir_, &table), 0);
  EXPECT_NE(table.find("shard 0 of 2"), std::string::npos) << table;
  EXPECT_NE(table.find("TOTAL (2 shards)"), std::string::npos) << table;
  const size_t total_at = table.find("TOTAL");
  ASSERT_NE(total_at, std::string::npos);
  const size_t rows_at = table.find("rows", total_at);
  ASSERT_NE(rows_at, std::string::npos);
  EXPECT_EQ(std::stoull(table.substr(rows_at + 4)), 3000u) << table;
  EXPECT_NE(table.find("slot 1 (dim 16)"), std::string::npos) << table;
}

TEST_F(ClusterProcessTest, CtlReportsADeadShardByName) {
  servers_[1].process().Signal(SIGKILL);
  int code;
  ASSERT_TRUE(servers_[1].process().Wait(10000, &code).ok());
  std::string out;
  EXPECT_EQ(
      RunCommand({Ctl(), "stats", "--servers=" + server_list_, "--timeout_ms=3000"}, dir_, &out),
      1);
  EXPECT_NE(out.find("shard 1 (" + servers_[1].address() + ")"), std::string::npos) << out;
}

TEST_F(ClusterProcessTest, CtlRejectsBadArguments) {
  std::string out;
  EXPECT_EQ(RunCommand({Ctl(), "stats", "--servers=localhost"}, dir_, &out), 1);
  EXPECT_NE(out.find("bad server address 'localhost'"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({Ctl(), "frobnicate", "--servers=" + server_list_}, dir_, &out), 1);
  EXPECT_NE(out.find("usage"), std::string::npos) << out;
}

TEST_F(ClusterProcessTest, SigtermStopsTheServerCleanly) {
  servers_[0].process().Signal(SIGTERM);
  int code = -1;
  ASSERT_TRUE(servers_[0].process().Wait(10000, &code).ok());
  EXPECT_EQ(code, 0);
  EXPECT_NE(testing::ReadFile(servers_[0].log_path()).find("stopped"), std::string::npos);
}

TEST(ClusterSchemaTest, ShardsWithDifferentConfigsAreRefused) {
  testing::TempDir dir;
  testing::ServerProcess servers[2];
  const std::string a = dir.File("a.pbtxt"), b = dir.File("b.pbtxt");
  testing::WriteFile(a, "slot { id: 1 dim: 16 }\n");
  testing::WriteFile(b, "slot { id: 1 dim: 8 }\n");
  ASSERT_TRUE(servers[0].Start(dir, a, 0, 2).ok());
  ASSERT_TRUE(servers[1].Start(dir, b, 1, 2).ok());
  ClientOptions options;
  options.servers = {servers[0].address(), servers[1].address()};
  std::unique_ptr<PsClient> client;
  Status st = PsClient::Connect(options, &client);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("shard 1 (" + servers[1].address() + ") has different slots"),
            std::string::npos)
      << st.message();
}

TEST(ServerListTest, ParsesAndRejects) {
  std::vector<std::string> out;
  EXPECT_TRUE(ParseServerList("a:1,127.0.0.1:65535", &out).ok());
  EXPECT_EQ(out, (std::vector<std::string>{"a:1", "127.0.0.1:65535"}));
  for (const char* bad :
       {"", "a", ":1", "a:", "a:65536", "a:99999999999999999999", "a:1,", "a:x"}) {
    Status st = ParseServerList(bad, &out);
    EXPECT_EQ(st.code(), Status::kInvalidArgument) << bad;
  }
}

TEST(ServerFlagsTest, FlagfileConfiguresTheServer) {
  testing::TempDir dir;
  const std::string config = dir.File("t.pbtxt");
  testing::WriteFile(config, kConfig);
  const std::string flagfile = dir.File("ps.flags");
  testing::WriteFile(flagfile, "--table_config=" + config +
                                   "\n--host=127.0.0.1\n--port=0\n--port_file=" +
                                   dir.File("ps.port") + "\n--shard_id=1\n--num_shards=3\n");
  Subprocess ps;
  ASSERT_TRUE(
      ps.Start({testing::BinDir() + "/pepnet_ps", "--flagfile=" + flagfile}, dir.File("ps.log"))
          .ok());
  uint16_t port;
  Status st = WaitForPortFile(dir.File("ps.port"), 20000, &ps, &port);
  ASSERT_TRUE(st.ok()) << st.ToString() << testing::ReadFile(dir.File("ps.log"));
  std::string out;
  // Listed as shard 0 of 1, the server says what it really is.
  EXPECT_EQ(RunCommand({testing::BinDir() + "/pepnet_ctl", "stats",
                        "--servers=127.0.0.1:" + std::to_string(port)},
                       dir, &out),
            1);
  EXPECT_NE(out.find("is shard 1 of 3"), std::string::npos) << out;
  ps.Signal(SIGTERM);
  int code = -1;
  ASSERT_TRUE(ps.Wait(20000, &code).ok());
  EXPECT_EQ(code, 0);
}

TEST(ServerFlagsTest, BadFlagsExitWithOneLine) {
  testing::TempDir dir;
  const std::string config = dir.File("t.pbtxt");
  testing::WriteFile(config, kConfig);
  const std::string ps = testing::BinDir() + "/pepnet_ps";
  struct Case {
    std::vector<std::string> args;
    std::string fragment;
  } cases[] = {
      {{"--table_config=" + config, "--shard_id=2", "--num_shards=2"}, "--shard_id=2"},
      {{"--table_config=" + config, "--port=70000"}, "--port"},
      {{"--table_config=" + config, "--threads=0"}, "--threads"},
      {{}, "--table_config is required"},
      {{"--table_config=" + dir.File("missing.pbtxt")}, "missing.pbtxt"},
      {{"--table_config=" + config, "--no_such_flag=1"}, "no_such_flag"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {ps};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    std::string out;
    const int code = RunCommand(argv, dir, &out);
    EXPECT_NE(code, 0) << out;
    EXPECT_NE(out.find(c.fragment), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  }
  testing::WriteFile(config, "slot { id: 1 dim: 0 }\n");
  std::string out;
  EXPECT_NE(RunCommand({ps, "--table_config=" + config}, dir, &out), 0);
  EXPECT_NE(out.find("slot 1: dim"), std::string::npos) << out;
}

}  // namespace
}  // namespace pepnet
