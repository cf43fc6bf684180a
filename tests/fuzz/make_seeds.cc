// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/): small,
// real inputs of every kind each target reads, made with the project's own encoders so
// that they stay valid when a format changes. Run from the fuzz build when one does:
//
//   build-fuzz/bin/fuzz_make_seeds tests/fuzz/corpus configs
//
// The model and table config seeds are the shipped configs, copied.
#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "common/checksum.h"
#include "common/frame.h"
#include "proto/cluster.pb.h"
#include "proto/ps.pb.h"
#include "ps/embedding_table.h"
#include "ps/table_config.h"
#include "publish/row_file.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/publish_util.h"
#include "worker/dense_state.h"
#include "worker/metrics.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

std::string root;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::string dir = root + "/" + target;
  mkdir(root.c_str(), 0755);
  mkdir(dir.c_str(), 0755);
  std::ofstream out(dir + "/" + name, std::ios::binary);
  out << bytes;
  fuzz::Require(static_cast<bool>(out), "cannot write " + dir + "/" + name);
}

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  fuzz::Require(static_cast<bool>(in), "cannot read " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

template <typename T>
std::string Bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string Frame(const google::protobuf::Message& header, const std::string& payload = "") {
  const std::string h = header.SerializeAsString();
  char prefix[kFramePrefixBytes];
  EncodeFramePrefix(static_cast<uint32_t>(h.size()), static_cast<uint32_t>(payload.size()), prefix);
  return std::string(prefix, kFramePrefixBytes) + h + payload;
}

// The fuzzed request handler's table: slots 0 (dim 4), 1 (dim 8), 2 (dim 2), slot_bits 2.
uint64_t HandlerKey(uint32_t slot, uint64_t id) { return MakeFeatureKey(slot, Mix64(id), 2); }

proto::RequestHeader Request(proto::RequestType type, uint64_t id) {
  proto::RequestHeader r;
  r.set_type(type);
  r.set_request_id(id);
  return r;
}

std::string Pull(const std::vector<uint64_t>& keys, uint64_t id) {
  proto::RequestHeader r = Request(proto::PULL, id);
  r.set_num_keys(keys.size());
  return Frame(r, Bytes(keys));
}

std::string Push(const std::vector<uint64_t>& keys, float grad, uint64_t id) {
  static const uint32_t dims[] = {4, 8, 2};
  std::vector<float> grads;
  for (uint64_t k : keys) grads.insert(grads.end(), dims[SlotOfKey(k, 2)], grad);
  const std::vector<float> counts(keys.size(), 1.0f);
  proto::RequestHeader r = Request(proto::PUSH, id);
  r.set_num_keys(keys.size());
  r.set_num_values(grads.size());
  return Frame(r, Bytes(keys) + Bytes(grads) + Bytes(counts) + Bytes(counts));
}

std::string Pass(proto::RequestType type, uint32_t pass, uint64_t id) {
  proto::RequestHeader r = Request(type, id);
  r.set_pass(pass);
  return Frame(r);
}

void FrameAndHandlerSeeds() {
  const std::vector<uint64_t> keys = {HandlerKey(0, 1), HandlerKey(1, 2), HandlerKey(2, 3)};
  const std::string ping = Frame(Request(proto::PING, 1));
  const std::string stats = Frame(Request(proto::STATS, 2));
  proto::RequestHeader export_rows = Request(proto::EXPORT_ROWS, 9);
  export_rows.set_pass(1);
  export_rows.set_export_version(1);
  // A pass as the coordinator drives it, twice, with pulls and pushes between.
  std::string pass = Pass(proto::BEGIN_PASS, 1, 3) + Pull(keys, 4) + Push(keys, 0.5f, 5) +
                     Push(keys, -0.25f, 6) + Pull(keys, 7) + Pass(proto::END_PASS, 1, 8) +
                     Frame(export_rows) + Pass(proto::BEGIN_PASS, 2, 10) + Pull(keys, 11) +
                     Pass(proto::END_PASS, 2, 12) + stats;
  Write("request_handler", "coordinator_pass", "\x01" + pass);
  Write("request_handler", "tool_pull_push",
        std::string(1, '\0') + ping + Pull(keys, 3) + Push(keys, 1, 4) + stats);
  Write("request_handler", "tool_pass_refused", std::string(1, '\0') + pass);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Write("request_handler", "nan_push",
        "\x01" + Pass(proto::BEGIN_PASS, 1, 1) + Push(keys, nan, 2) + Push(keys, 1e30f, 3));
  // A worker session (2 mod 3) in pass 1: a dense step of two workers summed, then one
  // with a NaN, then a step out of order.
  auto dense = [](uint32_t worker, uint64_t step, const std::vector<float>& g, uint64_t id) {
    proto::RequestHeader r = Request(proto::DENSE_SUM, id);
    r.set_pass(1);
    r.mutable_dense()->set_worker_index(worker);
    r.mutable_dense()->set_num_workers(2);
    r.mutable_dense()->set_step(step);
    r.mutable_dense()->set_has_data(!g.empty());
    r.mutable_dense()->set_dense_size(6);
    return Frame(r, Bytes(g));
  };
  const std::vector<float> g = {1, 2, 3, 4, 5, 6}, bad = {1, nan, 3, 4, 5, 6};
  Write("request_handler", "worker_dense_steps",
        "\x02" + dense(0, 0, g, 1) + dense(1, 0, g, 2) + dense(1, 1, bad, 3) + dense(0, 1, {}, 4) +
            dense(0, 3, g, 5) + dense(1, 2, g, 6) + stats);
  std::vector<uint64_t> many;
  for (uint64_t i = 0; i < 200; ++i) many.push_back(HandlerKey(i % 3, i));
  Write("request_handler", "many_keys",
        "\x01" + Pass(proto::BEGIN_PASS, 1, 1) + Push(many, 0.1f, 2) + Pull(many, 3) +
            Pass(proto::END_PASS, 1, 4));

  Write("frame", "ping", ping);
  Write("frame", "pull", Pull(keys, 4));
  Write("frame", "push", Push(keys, 0.5f, 5));
  Write("frame", "stream", ping + stats + Pull(keys, 4) + Push(keys, 0.5f, 5));
  proto::ResponseHeader reply;
  reply.set_request_id(4);
  reply.set_num_values(14);
  reply.mutable_ping()->set_shard_id(0);
  reply.mutable_ping()->set_num_shards(1);
  Write("frame", "reply", Frame(reply, std::string(56, '\0')));
}

void CoordSeeds() {
  proto::CoordMessage hello;
  hello.set_type(proto::COORD_HELLO);
  hello.set_worker_index(0);
  hello.set_num_workers(2);
  hello.set_model_fingerprint(0x1234);
  proto::CoordMessage begin;
  begin.set_type(proto::COORD_BEGIN_PASS);
  begin.set_pass_name("pass-00001");
  const std::vector<float> grad = {0.5f, -0.25f, 1e-3f, 0};
  proto::CoordMessage step;
  step.set_type(proto::COORD_STEP);
  step.set_has_data(true);
  step.set_num_dense(grad.size());
  DenseState dense;
  dense.params = {0.1f, 0.2f, 0.3f, 0.4f};
  dense.m = {0, 0, 0, 0};
  dense.v = {1e-4f, 1e-4f, 1e-4f, 1e-4f};
  dense.step = 7;
  PassMetrics metrics({"like", "forward", "follow"}, 3);
  for (int i = 0; i < 12; ++i) {
    metrics.Add(i % 3, i % 3, Prediction{0.1f * (i % 9), float(i % 2), uint64_t(i % 4)});
  }
  const std::string predictions = metrics.Serialize();
  proto::CoordMessage end;
  end.set_type(proto::COORD_END_PASS);
  end.set_pass(1);
  end.set_checksum(99);
  end.set_prediction_bytes(predictions.size());
  end.set_num_dense(dense.params.size());
  Write("coord_message", "worker_pass",
        Frame(hello) + Frame(begin) + Frame(step, Bytes(grad)) + Frame(step, Bytes(grad)) +
            Frame(end, predictions + EncodeDenseState(dense)));
  proto::CoordMessage welcome;
  welcome.set_type(proto::COORD_HELLO);
  welcome.set_durable(true);
  welcome.set_pass(3);
  welcome.set_num_dense(dense.params.size());
  welcome.add_done_passes("pass-00001");
  proto::CoordMessage fail;
  fail.set_type(proto::COORD_FAIL);
  fail.set_retry(true);
  fail.set_error("shard 1 died");
  Write("coord_message", "coordinator_welcome",
        Frame(welcome, EncodeDenseState(dense)) + Frame(begin) + Frame(step, Bytes(grad)) +
            Frame(fail));
  proto::CoordMessage abort_pass;
  abort_pass.set_type(proto::COORD_ABORT);
  abort_pass.set_fatal(true);
  abort_pass.set_error("bad data");
  Write("coord_message", "abort", Frame(hello) + Frame(abort_pass));
}

std::string Gzip(const std::string& text) {
  z_stream z{};
  fuzz::Require(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflate");
  std::string out(deflateBound(&z, text.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(&out[0]);
  z.avail_out = static_cast<uInt>(out.size());
  fuzz::Require(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void DataSeeds() {
  // The first byte picks the config: 0 demo, 1 byterec, 2 kuairand (fuzz_data_reader.cc).
  const std::string demo =
      "domain,user,item,author,history,topic,hour,age,like,forward,follow\n"
      "0,u1,i2,a3,i4|i5|i6|i7,t1,8,23,1,0,0\n"
      "2,u9,i8,a7,i1,t0,19,41,0,0,1\n"
      "1,u1,i3,a3,,t2,-1,17,,1,0\n"
      "bad line\n"
      "\n"
      "1,u2,i2,a3,i4|i5,t1,23.5,66,0,0,0\r\n";
  Write("data_reader", "demo.csv", std::string(1, '\0') + demo);
  Write("data_reader", "demo.csv.gz", std::string(1, '\0') + Gzip(demo));
  Write("data_reader", "byterec.tsv",
        "\x01"
        "37448\t115\t567569\t44888\t42\t0\t0\t0\t1699\t43981\t53085738314\t9\n"
        "8623\t82\t1209192\t10098\t106\t1\t1\t0\t-1\t11996\t53086444998\t8\n"
        "9629\t31\t1209193\t184752\t109\t3\t1\t1\t-1\t32093\t53085591140\t5\n");
  Write("data_reader", "kuairand.csv",
        "\x02"
        "user_id,video_id,is_click,tab,user_active_degree,is_lowactive_period,is_live_streamer,"
        "is_video_author,duration_ms,follow_user_num,fans_user_num,friend_user_num,"
        "register_days,onehot_feat0,onehot_feat1,onehot_feat2,onehot_feat3,video_type\n"
        "0,3,1,1,high_active,0,0,0,12000,5,40,2,400,0,1,17,3,NORMAL\n"
        "7,11,0,15,full_active,1,0,1,4300.5,0,0,0,7,1,0,2,0,AD\n");
}

void ConfigSeeds(const std::string& configs) {
  for (const char* name : {"demo", "bench", "byterec", "kuairand"}) {
    Write("model_config", std::string(name) + ".pbtxt", ReadWhole(configs + "/" + name + ".pbtxt"));
  }
  Write("table_config", "ps_default.pbtxt", ReadWhole(configs + "/ps_default.pbtxt"));
  proto::ModelConfig demo;
  fuzz::Require(LoadModelConfigFile(configs + "/demo.pbtxt", &demo), "demo config");
  TableOptions o = TableOptionsFor(demo, 3);
  Write("table_config", "demo_table.pbtxt", FormatTableConfig(o));
  o.slots[1].eviction.admission_threshold = 3;
  o.slots[2].eviction.max_rows = 1000;
  o.slots[3].eviction.min_updates = 2;
  o.slots[3].eviction.min_updates_passes = 2;
  o.slots[4].eviction.delete_score_threshold = 0.5f;
  o.partition_bits = 2;
  Write("table_config", "memory_control.pbtxt", FormatTableConfig(o));
}

void PublishSeeds() {
  fuzz::TempDirectory dir("seeds");
  testing::TestPublisher publisher(dir.path());
  fuzz::Require(publisher.Train(1, 0, 5, 0.5f), "train");
  fuzz::Require(publisher.Publish(1, true, 1), "publish the base");
  fuzz::Require(publisher.Train(2, 100, 3, 0.25f), "train");
  fuzz::Require(publisher.Publish(2, false, 1), "publish the delta");
  // The manifest target's version 2 is this delta (fuzz_manifest.cc).
  const std::string manifest = ReadWhole(publisher.VersionDir(2) + "/manifest.pbtxt");
  Write("manifest", "delta.pbtxt", manifest);
  Write("manifest", "base.pbtxt", ReadWhole(publisher.VersionDir(1) + "/manifest.pbtxt"));
  Write("row_file", "base.bin", ReadWhole(publisher.VersionDir(1) + "/rows-0.bin"));
  Write("row_file", "delta.bin", ReadWhole(publisher.VersionDir(2) + "/rows-0.bin"));
  // A first-format file: no deleted-key count.
  std::string v1 = "PEPROWS1";
  const uint64_t key = testing::ModelKey(1, 9);
  const uint32_t dim = 4;
  const std::vector<float> w = {0.5f, -0.5f, 1, 2};
  const uint64_t rows = 1;
  v1 += std::string(reinterpret_cast<const char*>(&key), 8) +
        std::string(reinterpret_cast<const char*>(&dim), 4) + Bytes(w) +
        std::string(reinterpret_cast<const char*>(&rows), 8);
  Write("row_file", "v1.bin", v1);
  // A delta's deleted keys, then one row.
  std::string deleted = "PEPROWS2";
  const std::vector<uint64_t> keys = {2, testing::ModelKey(2, 1), testing::ModelKey(3, 4)};
  deleted += Bytes(keys) + std::string(reinterpret_cast<const char*>(&key), 8) +
             std::string(reinterpret_cast<const char*>(&dim), 4) + Bytes(w) +
             std::string(reinterpret_cast<const char*>(&rows), 8);
  Write("row_file", "deleted.bin", deleted);

  const std::string dense = ReadWhole(publisher.VersionDir(2) + "/dense.bin");
  const uint64_t floats = dense.size() / 4;
  Write("dense_file", "model.bin", std::string(reinterpret_cast<const char*>(&floats), 8) + dense);
  const std::vector<float> small = {1, -2, 0.5f};
  const uint64_t three = 3;
  Write("dense_file", "three.bin",
        std::string(reinterpret_cast<const char*>(&three), 8) + Bytes(small));
}

}  // namespace
}  // namespace pepnet

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: fuzz_make_seeds CORPUS_DIR CONFIGS_DIR\n");
    return 2;
  }
  pepnet::root = argv[1];
  pepnet::FrameAndHandlerSeeds();
  pepnet::CoordSeeds();
  pepnet::DataSeeds();
  pepnet::ConfigSeeds(argv[2]);
  pepnet::PublishSeeds();
  return 0;
}
