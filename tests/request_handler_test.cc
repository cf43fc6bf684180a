// The request handler of a durable shard: the pass rules its commits rely on (one pass at
// a time on top of the committed one, no pull or push between a pass's end and the next
// begin) and the epochs that keep a client from before a rollback out.
#include "ps/request_handler.h"

#include <gtest/gtest.h>

#include "common/env.h"
#include "proto/ps.pb.h"
#include "ps/embedding_table.h"
#include "ps/shard_store.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

PeerSession Coordinator() {
  PeerSession session;
  session.peer = "test";
  session.role = PeerRole::kCoordinator;
  return session;
}

class DurableHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TableOptions o;
    SlotOptions slot;
    slot.id = 1;
    slot.dim = 4;
    o.slots = {slot};
    o.partition_bits = 1;
    o.durable = true;
    ShardStoreOptions so;
    so.dir = dir_.File("shard");
    Status st = ShardStore::Open(so, o, &store_, &table_);
    ASSERT_TRUE(st.ok()) << st.ToString();
    handler_.reset(
        new RequestHandler(table_.get(), store_.get(), Env::Default(), HandlerOptions()));
  }

  Status Call(proto::RequestType type, uint32_t pass = 0, uint64_t epoch = 0,
              const std::string& payload = "", uint32_t keys = 0, uint64_t values = 0) {
    proto::RequestHeader request;
    request.set_request_id(++id_);
    request.set_type(type);
    request.set_pass(pass);
    request.set_epoch(epoch);
    request.set_num_keys(keys);
    request.set_num_values(values);
    proto::ResponseHeader reply;
    PayloadBuffer reply_payload;
    Status st = handler_->Handle(Coordinator(), request, payload.data(), payload.size(), &reply,
                                 &reply_payload);
    last_reply_ = reply;
    return st;
  }

  Status Pull(uint64_t epoch = 0) {
    const uint64_t key = testing::TestKey(1, 7);
    return Call(proto::PULL, 0, epoch, std::string(reinterpret_cast<const char*>(&key), 8), 1);
  }

  uint64_t Epoch() {
    EXPECT_TRUE(Call(proto::PING).ok());
    return last_reply_.ping().epoch();
  }

  testing::TempDir dir_;
  std::unique_ptr<ShardStore> store_;
  std::unique_ptr<EmbeddingTable> table_;
  std::unique_ptr<RequestHandler> handler_;
  proto::ResponseHeader last_reply_;
  uint64_t id_ = 0;
};

TEST_F(DurableHandlerTest, PassesGoOneAtATimeOnTopOfTheCommittedOne) {
  EXPECT_TRUE(Call(proto::PING).ok());
  EXPECT_TRUE(last_reply_.ping().durable());
  EXPECT_EQ(last_reply_.ping().committed_pass(), 0u);
  Status st = Call(proto::BEGIN_PASS, 2);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("the next pass is 1"), std::string::npos) << st.message();
  ASSERT_TRUE(Call(proto::BEGIN_PASS, 1).ok());
  st = Call(proto::BEGIN_PASS, 1);
  EXPECT_EQ(st.code(), Status::kInvalidArgument) << "a pass begun twice before a rollback";
  ASSERT_TRUE(Pull().ok());
  ASSERT_TRUE(Call(proto::END_PASS, 1).ok());
  // The pass has ended: its table is what the commit stores.
  st = Pull();
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("pass 1 has ended; pulls and pushes wait for the next BEGIN_PASS"),
            std::string::npos)
      << st.message();
  ASSERT_TRUE(Call(proto::PREPARE_PASS, 1).ok());
  EXPECT_GT(last_reply_.prepare().rows_written(), 0u);
  ASSERT_TRUE(Call(proto::COMMIT_PASS, 1).ok());
  EXPECT_TRUE(Call(proto::COMMIT_PASS, 1).ok()) << "a repeated decision is a no-op";
  EXPECT_EQ(store_->committed_pass(), 1u);
  ASSERT_TRUE(Call(proto::BEGIN_PASS, 2).ok());
  EXPECT_TRUE(Pull().ok());
}

TEST_F(DurableHandlerTest, ARollbackShutsOutTheClientsOfBefore) {
  ASSERT_TRUE(Call(proto::BEGIN_PASS, 1).ok());
  const uint64_t before = Epoch();
  ASSERT_TRUE(Pull(before).ok());
  ASSERT_TRUE(Call(proto::ROLLBACK_PASS, 0).ok());
  const uint64_t after = Epoch();
  EXPECT_NE(after, before);
  Status st = Pull(before);
  EXPECT_EQ(st.code(), Status::kUnavailable);
  EXPECT_NE(st.message().find("restarted or rolled back since this client connected"),
            std::string::npos)
      << st.message();
  EXPECT_EQ(Call(proto::BEGIN_PASS, 1, before).code(), Status::kUnavailable);
  // The rolled-back table is at pass 0 again: pass 1 begins anew, for the new epoch.
  EXPECT_EQ(table_->pass(), 0u);
  EXPECT_TRUE(Call(proto::BEGIN_PASS, 1, after).ok());
  EXPECT_TRUE(Pull(after).ok());
  st = Call(proto::ROLLBACK_PASS, 3);
  EXPECT_EQ(st.code(), Status::kInvalidArgument);
  EXPECT_NE(st.message().find("cannot roll back to pass 3: its committed pass is 0"),
            std::string::npos)
      << st.message();
}

TEST(MemoryHandlerTest, AShardWithoutStorageRefusesCommits) {
  TableOptions o;
  SlotOptions slot;
  slot.id = 1;
  slot.dim = 4;
  o.slots = {slot};
  std::unique_ptr<EmbeddingTable> table;
  ASSERT_TRUE(EmbeddingTable::Create(o, &table).ok());
  RequestHandler handler(table.get(), nullptr, Env::Default(), HandlerOptions());
  for (proto::RequestType type : {proto::PREPARE_PASS, proto::COMMIT_PASS, proto::ROLLBACK_PASS}) {
    proto::RequestHeader request;
    request.set_type(type);
    proto::ResponseHeader reply;
    PayloadBuffer payload;
    Status st = handler.Handle(Coordinator(), request, nullptr, 0, &reply, &payload);
    EXPECT_EQ(st.code(), Status::kInvalidArgument);
    EXPECT_NE(st.message().find("keeps no storage (no --data_dir)"), std::string::npos)
        << st.message();
  }
}

}  // namespace
}  // namespace pepnet
