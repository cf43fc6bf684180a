// Fuzz target: every request of a shard server (ps/request_handler.h) against a real
// in-memory table with memory control on: a count cap, admission, TTL and a memory
// limit small enough that eviction runs.
//
// Input: one byte for the session (mod 3: a tool's, the coordinator's, a worker's), then
// request frames as on the wire (common/frame.h: prefix, RequestHeader, payload), handled
// one after another on one table, as one connection's requests would be. A fresh table
// per input keeps every finding reproducible from its input alone.
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "common/env.h"
#include "common/frame.h"
#include "proto/ps.pb.h"
#include "ps/embedding_table.h"
#include "ps/request_handler.h"
#include "publish/manifest.h"
#include "tests/fuzz/fuzz_util.h"

namespace pepnet {
namespace {

void Expect(bool ok, const std::string& what) {
  if (ok) return;
  fprintf(stderr, "request handler: %s\n", what.c_str());
  abort();
}

// Three slots of the key's top 2 bits (so that most keys the fuzzer makes up are valid):
// per-row and per-dimension AdaGrad, admission, a cap, a TTL.
TableOptions FuzzTableOptions() {
  TableOptions o;
  o.slot_bits = 2;
  o.partition_bits = 1;
  SlotOptions a;
  a.id = 0;
  a.dim = 4;
  SlotOptions b;
  b.id = 1;
  b.dim = 8;
  b.adagrad.per_dim = true;
  b.eviction.admission_threshold = 2;
  SlotOptions c;
  c.id = 2;
  c.dim = 2;
  c.eviction.max_rows = 64;
  c.eviction.ttl_passes = 1;
  c.eviction.min_updates = 2;
  c.eviction.min_updates_passes = 1;
  o.slots = {a, b, c};
  o.admission_filter_bytes = 4096;
  o.memory_limit_bytes = 256 << 10;
  return o;
}

// Where EXPORT_ROWS writes: version 1's temporary folder exists, as the coordinator
// makes it before it asks the shards.
struct ExportDir {
  fuzz::TempDirectory dir{"export"};
  ExportDir() {
    fuzz::Require(CreateDirs(Env::Default(), dir.path() + "/" + VersionFolder(1) + ".tmp"),
                  "export folder");
  }
};

}  // namespace
}  // namespace pepnet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pepnet;
  static const TableOptions options = FuzzTableOptions();
  static const ExportDir export_dir;  // removed when the fuzzer exits
  if (size < 1) return 0;
  PeerSession session;
  session.peer = "fuzz";
  session.role = data[0] % 3 == 1   ? PeerRole::kCoordinator
                 : data[0] % 3 == 2 ? PeerRole::kWorker
                                    : PeerRole::kTool;
  // Dense sums answer later (when the step's other workers come, or at the end): each
  // answer is checked when it comes.
  auto dense_answers = std::make_shared<int>(0);
  std::unique_ptr<EmbeddingTable> table;
  fuzz::Require(EmbeddingTable::Create(options, &table, /*hash_salt=*/1), "table");
  HandlerOptions handler_options;
  handler_options.export_dir = export_dir.dir.path();
  RequestHandler handler(table.get(), nullptr, Env::Default(), handler_options);
  if (session.role == PeerRole::kWorker) {
    // Workers send only once the coordinator began a pass.
    PeerSession coordinator{"fuzz coordinator", PeerRole::kCoordinator};
    proto::RequestHeader begin;
    begin.set_type(proto::BEGIN_PASS);
    begin.set_pass(1);
    proto::ResponseHeader ignored;
    PayloadBuffer none;
    fuzz::Require(handler.Handle(coordinator, begin, nullptr, 0, &ignored, &none).ok(), "begin");
  }
  fuzz::InputReader in(data + 1, size - 1);
  proto::RequestHeader request;
  proto::ResponseHeader reply;
  PayloadBuffer payload, reply_payload;
  for (int frames = 0; frames < 32 && in.left() >= kFramePrefixBytes; ++frames) {
    FramePrefix fp;
    if (!DecodeFramePrefix(in.Bytes(kFramePrefixBytes).data(), kDefaultMaxFrameBytes, &fp).ok()) {
      break;
    }
    if (in.left() < uint64_t{fp.header_len} + fp.payload_len) break;  // the peer went away
    const std::string header = in.Bytes(fp.header_len);
    payload.Resize(fp.payload_len);
    if (fp.payload_len > 0) std::memcpy(payload.data(), in.data(), fp.payload_len);
    in.Bytes(fp.payload_len);
    if (!request.ParseFromString(header)) continue;  // an error reply; the connection goes on
    if (request.type() == proto::DENSE_SUM) {
      const uint64_t dense_size = request.dense().dense_size();
      const uint32_t workers = request.dense().num_workers();
      // The slice is lent until its answer, as a connection lends its buffer.
      auto slice = std::make_shared<PayloadBuffer>(std::move(payload));
      payload = PayloadBuffer();
      handler.HandleDenseSum(session, request, slice.get(), [=, slice = slice](DenseSumResult r) {
        ++*dense_answers;
        if (!r.status.ok()) return;
        Expect(r.workers_with_data <= workers, "more workers with data than workers");
        if (r.sum == nullptr) return;
        Expect(r.sum->size() == 4 * DenseSliceOf(dense_size, 0, 1).size(), "dense sum size");
        const float* v = reinterpret_cast<const float*>(r.sum->data());
        for (size_t i = 0; i < r.sum->size() / 4; ++i) {
          Expect(std::isfinite(v[i]), "a dense sum handed out a non-finite value");
        }
      });
      continue;
    }
    Status st =
        handler.Handle(session, request, payload.data(), payload.size(), &reply, &reply_payload);
    Expect(reply.request_id() == request.request_id(), "reply for another request id");
    Expect(st.ok() == (reply.code() == proto::OK), "reply code differs from the status");
    if (st.ok() && request.type() == proto::PULL) {
      Expect(reply_payload.size() == 4 * reply.num_values(), "pull reply size");
      const float* values = reinterpret_cast<const float*>(reply_payload.data());
      for (uint64_t i = 0; i < reply.num_values(); ++i) {
        Expect(std::isfinite(values[i]), "a pull read a non-finite weight");
      }
    }
    reply.SerializeAsString();
  }
  // Whatever was pushed, the table stays within its limit and its weights finite.
  Expect(table->bytes_used() <= options.memory_limit_bytes + (64 << 10),
         "table over its memory limit: " + std::to_string(table->bytes_used()));
  table->ForEachRow([](uint64_t key, const float* w, uint32_t dim, const RowMeta&) {
    for (uint32_t i = 0; i < dim; ++i) Expect(std::isfinite(w[i]), "a non-finite weight");
  });
  return 0;
}
