// The Server class in process: start, serve, and the ways it stops.
#include "ps/server.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "common/env.h"
#include "common/ps_client.h"
#include "ps/embedding_table.h"
#include "ps/request_handler.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TableOptions o;
    SlotOptions s;
    s.id = 1;
    s.dim = 4;
    o.slots = {s};
    ASSERT_TRUE(EmbeddingTable::Create(o, &table_).ok());
    handler_ =
        std::make_unique<RequestHandler>(table_.get(), nullptr, Env::Default(), HandlerOptions());
    ServerOptions options;
    options.host = "127.0.0.1";
    options.shutdown_grace_ms = 3000;
    server_ = std::make_unique<Server>(options, handler_.get());
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_NE(server_->port(), 0);
  }

  // Runs the server on a thread; the future is ready when Run returns.
  std::future<void> RunInBackground(bool handle_signals) {
    return std::async(std::launch::async, [this, handle_signals] { server_->Run(handle_signals); });
  }

  std::unique_ptr<EmbeddingTable> table_;
  std::unique_ptr<RequestHandler> handler_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, StopFromCodeReturnsEvenWhenWatchingSignals) {
  auto done = RunInBackground(/*handle_signals=*/true);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server_->Stop();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(2)), std::future_status::ready);
}

TEST_F(ServerTest, IdleClientsDoNotHoldShutdown) {
  auto done = RunInBackground(false);
  ClientOptions options;
  options.servers = {"127.0.0.1:" + std::to_string(server_->port())};
  std::unique_ptr<PsClient> client;
  ASSERT_TRUE(PsClient::Connect(options, &client).ok());
  const uint64_t key = testing::TestKey(1, 1);
  std::vector<float> out;
  ASSERT_TRUE(client->Wait(client->Pull(&key, 1, &out)).ok());
  const auto start = std::chrono::steady_clock::now();
  server_->Stop();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1))
      << "an idle connection should close at once, not after the grace period";
  // The client sees a clear error afterwards, not a hang.
  Status st = client->Wait(client->Pull(&key, 1, &out));
  EXPECT_EQ(st.code(), Status::kUnavailable) << st.ToString();
}

TEST_F(ServerTest, StopIsIdempotent) {
  auto done = RunInBackground(false);
  server_->Stop();
  server_->Stop();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(2)), std::future_status::ready);
}

}  // namespace
}  // namespace pepnet
