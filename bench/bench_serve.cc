// pepnet_bench_serve: what online serving costs and how fresh it keeps the model, measured
// on a real pepnet_serve process over HTTP.
//
// It publishes synthetic versions of the bench model (configs/bench.pbtxt) into a
// temporary publish folder as the coordinator does (an EmbeddingTable written with
// WriteRowFile into a VersionWriter's folder, one shard), starts pepnet_serve on the
// folder, and measures:
//   1. freshness: from a delta's rename into place (VersionWriter::Finish returned) to the
//      first /v1/score reply that names the new version, while a client keeps sending
//      1-sample requests; pepnet_serve runs with its default --poll_ms;
//   2. the delta apply cost: /v1/model's update_read_seconds and update_switch_seconds for
//      deltas of each --delta_rows on a table of each --table_rows (a fresh pepnet_serve
//      per table size): they should grow with the delta's rows, not with the table's;
//   3. scoring latency and throughput of --clients keep-alive clients (one connection
//      each) for each --batch, then at --saturation_batch;
//   4. the serving table's rows and bytes per row (/v1/model).
// Freshness and scoring run on the last --table_rows.
//
// Every request value has a row in the published base, so every lookup hits: each column a
// slot reads takes ids 0..N-1 (Zipf-distributed in requests), and the base holds the row of
// every id of every slot plus the domain slots' rows. A delta holds rows updated by a push
// in its pass, as training changes them (a SetWeights alone leaves a row's pass numbers, so
// a delta would not list it).
//
// Prints one line per figure and last a JSON line with every figure. Exits 1 on an error,
// and after the JSON line when a request failed (a reply other than 200, or none).
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "common/env.h"
#include "common/http_client.h"
#include "common/json_text.h"
#include "common/subprocess.h"
#include "proto/model_config.pb.h"
#include "proto/publish.pb.h"
#include "ps/embedding_table.h"
#include "ps/table_config.h"
#include "publish/manifest.h"
#include "publish/row_file.h"
#include "publish/version_writer.h"
#include "worker/data_reader.h"
#include "worker/model_config.h"
#include "worker/pepnet_model.h"
#include "worker/sample_encoder.h"
#include "worker/trainer.h"

DEFINE_string(config, "", "Model config; default configs/bench.pbtxt of the source tree.");
DEFINE_string(table_rows, "100000,1000000",
              "Table sizes (rows of the base), comma-separated; a fresh pepnet_serve each. "
              "Freshness and scoring are measured on the last.");
DEFINE_string(delta_rows, "1000,10000,100000", "Rows a delta changes, comma-separated.");
DEFINE_int32(apply_reps, 3, "Deltas published per table and delta size; the median is reported.");
DEFINE_int32(versions, 5, "Deltas published one after another to measure freshness.");
DEFINE_int32(freshness_rows, 1000, "Rows each of those deltas changes.");
DEFINE_int32(publish_gap_ms, 300,
             "Before each freshness delta, a pause drawn uniformly in [0, this): spreads the "
             "publishes over the server's poll period.");
DEFINE_int32(clients, 8, "Concurrent scoring clients, each its own keep-alive connection.");
DEFINE_string(batch, "1,64", "Samples per /v1/score request to measure, comma-separated.");
DEFINE_int32(saturation_batch, 256,
             "An extra, larger batch for the saturation figure (the best samples/s over every "
             "batch measured); 0 = none.");
DEFINE_double(seconds, 5, "Timed seconds per batch size.");
DEFINE_double(warmup_seconds, 0.5, "Untimed seconds of scoring before each timed one.");
DEFINE_int32(pool, 64, "Distinct request bodies per batch size, cycled.");
DEFINE_double(zipf, 1.05, "Zipf exponent of the ids requests send.");
DEFINE_int32(multi_values, 3, "Values of a multi-valued column in a request (1..this).");
DEFINE_int32(server_threads, 2, "--threads of pepnet_serve.");
DEFINE_uint64(seed, 1, "Seed of the table, the dense parameters and the requests.");

namespace pepnet {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kHttpTimeoutMs = 10000;
// A base of a million rows is loaded before pepnet_serve opens its port.
constexpr int kStartTimeoutMs = 120000;
constexpr int kLiveTimeoutMs = 30000;

int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_bench_serve: %s\n", message.c_str());
  return 1;
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Positive integers, comma-separated; false for anything else.
bool ParseList(const std::string& s, std::vector<int64_t>* out) {
  out->clear();
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1) return false;
    out->push_back(v);
  }
  return !out->empty();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The value at quantile q of sorted `v`.
double Quantile(const std::vector<double>& v, double q) {
  return v.empty() ? 0 : v[static_cast<size_t>(q * (v.size() - 1) + 0.5)];
}

// What requests send and what the table holds. Each column a slot reads, other than the
// domain column, takes the values 0..ids-1; the rows are every slot's key of every id
// (computed by the SampleEncoder serving uses, so bucketed and multi-valued slots key as
// they will be read), and the domain slots' keys of every domain.
struct Universe {
  enum Kind { kString, kMulti, kNumber };
  struct Column {
    std::string name;
    Kind kind = kString;
  };
  std::vector<std::string> domain_json;  // [d]: the domain column's value in a request
  std::vector<Column> columns;
  uint64_t ids = 0;
  std::vector<uint64_t> keys;  // the base's rows: the domain rows first, then by id
  std::vector<uint32_t> dims;
  size_t first_id_row = 0;  // keys[first_id_row..]: the rows deltas change
};

Status BuildUniverse(const proto::ModelConfig& config, uint64_t table_rows, Universe* u) {
  const proto::DataFormat& data = config.data();
  const int num_slots = config.slot_size();
  std::vector<bool> reads_domain(num_slots);
  int id_slots = 0;
  std::map<std::string, Universe::Kind> kinds;
  for (int s = 0; s < num_slots; ++s) {
    const std::string column = SlotColumn(config, s);
    reads_domain[s] = column == data.domain_column();
    if (reads_domain[s]) continue;
    ++id_slots;
    Universe::Kind& k = kinds.emplace(column, Universe::kString).first->second;
    if (config.slot(s).has_bucketing()) {
      k = Universe::kNumber;
    } else if (config.slot(s).multi_valued() && k == Universe::kString) {
      k = Universe::kMulti;
    }
  }
  if (id_slots == 0) {
    return Status::InvalidArgument("the model has no slot besides the domain column's");
  }
  for (const auto& [name, kind] : kinds) u->columns.push_back({name, kind});
  u->ids = (table_rows + id_slots - 1) / id_slots;

  std::vector<std::string> domain_text;
  for (uint32_t d = 0; d < config.num_domains(); ++d) {
    const bool named = data.domain_value_size() > 0;
    domain_text.push_back(named ? data.domain_value(d) : std::to_string(d));
    u->domain_json.push_back(named ? JsonString(domain_text.back()) : domain_text.back());
  }
  SampleEncoder encoder(&config);
  SampleCells cells(config);
  Batch batch;
  std::unordered_set<uint64_t> seen;
  auto add = [&](const std::string& domain, const std::string& value, bool domain_rows) {
    cells.domain = domain;
    for (int s = 0; s < num_slots; ++s) cells.slot[s] = reads_domain[s] ? domain : value;
    batch.Reset(num_slots);
    PEPNET_RETURN_IF_ERROR(encoder.Append(cells, &batch));
    for (int s = 0; s < num_slots; ++s) {
      if (reads_domain[s] != domain_rows) continue;
      for (uint64_t key : batch.slot_keys[s]) {
        if (!seen.insert(key).second) continue;
        u->keys.push_back(key);
        u->dims.push_back(config.slot(s).dim());
      }
    }
    return Status::OK();
  };
  for (const std::string& d : domain_text) PEPNET_RETURN_IF_ERROR(add(d, "", true));
  u->first_id_row = u->keys.size();
  for (uint64_t id = 0; id < u->ids; ++id) {
    PEPNET_RETURN_IF_ERROR(add(domain_text[0], std::to_string(id), false));
  }
  return Status::OK();
}

// `count` bodies of `batch` samples each: a uniform domain, Zipf ids in every other column.
std::vector<std::string> MakeBodies(const proto::ModelConfig& config, const Universe& u, int batch,
                                    int count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const ZipfIds zipf(u.ids, FLAGS_zipf, &rng);
  const std::string domain_key = JsonString(config.data().domain_column()) + ": ";
  std::vector<std::string> keys;
  for (const Universe::Column& c : u.columns) keys.push_back(", " + JsonString(c.name) + ": ");
  std::vector<std::string> bodies(count);
  for (std::string& body : bodies) {
    body = "{\"samples\": [";
    for (int i = 0; i < batch; ++i) {
      body += i ? ", {" : "{";
      body += domain_key;
      body += u.domain_json[rng() % u.domain_json.size()];
      for (size_t c = 0; c < u.columns.size(); ++c) {
        body += keys[c];
        switch (u.columns[c].kind) {
          case Universe::kNumber:
            body += std::to_string(zipf(&rng));
            break;
          case Universe::kString:
            body += "\"" + std::to_string(zipf(&rng)) + "\"";
            break;
          case Universe::kMulti: {
            const int n = 1 + static_cast<int>(rng() % std::max(1, FLAGS_multi_values));
            body += "[";
            for (int v = 0; v < n; ++v) {
              body += (v ? ", \"" : "\"") + std::to_string(zipf(&rng)) + "\"";
            }
            body += "]";
            break;
          }
        }
      }
      body += "}";
    }
    body += "]}";
  }
  return bodies;
}

// Publishes versions of one table into one folder, as the coordinator does: version 1 a
// base of every row of the universe, then deltas of the rows a pass's pushes changed.
class Publisher {
 public:
  Publisher(const proto::ModelConfig& config, const Universe& universe, std::string dir,
            const std::vector<float>& dense)
      : config_(config), universe_(universe), dir_(std::move(dir)), dense_(dense) {}

  Status PublishBase(std::mt19937_64* rng) {
    PEPNET_RETURN_IF_ERROR(
        EmbeddingTable::Create(TableOptionsFor(config_, FLAGS_seed), &table_, FLAGS_seed));
    PEPNET_RETURN_IF_ERROR(table_->BeginPass(1));
    std::uniform_real_distribution<float> weight(-0.05f, 0.05f);
    std::vector<float> w;
    for (size_t i = 0; i < universe_.keys.size(); ++i) {
      w.resize(universe_.dims[i]);
      for (float& x : w) x = weight(*rng);
      PEPNET_RETURN_IF_ERROR(table_->SetWeights(universe_.keys[i], w.data(), w.size()));
    }
    uint64_t rows;
    PEPNET_RETURN_IF_ERROR(Publish(1, true, &rows));
    if (rows != universe_.keys.size()) {
      return Status::Internal("the base holds " + std::to_string(rows) + " rows, not " +
                              std::to_string(universe_.keys.size()));
    }
    return Status::OK();
  }

  // Pushes a small gradient to the next `rows` rows in turn (wrapping) in a new pass, and
  // publishes that pass's delta.
  Status PublishDelta(size_t rows, std::mt19937_64* rng) {
    const uint64_t version = version_ + 1;
    const uint32_t pass = static_cast<uint32_t>(version);
    PEPNET_RETURN_IF_ERROR(table_->BeginPass(pass));
    const size_t span = universe_.keys.size() - universe_.first_id_row;
    std::vector<uint64_t> keys;
    std::vector<float> grads;
    std::normal_distribution<float> grad(0, 0.01f);
    for (size_t i = 0; i < rows; ++i) {
      const size_t r = universe_.first_id_row + (cursor_ + i) % span;
      keys.push_back(universe_.keys[r]);
      for (uint32_t d = 0; d < universe_.dims[r]; ++d) grads.push_back(grad(*rng));
    }
    cursor_ = (cursor_ + rows) % span;
    const std::vector<float> shows(rows, 1.0f), clicks(rows, 0.0f);
    PEPNET_RETURN_IF_ERROR(
        table_->Push(keys.data(), keys.size(), grads.data(), shows.data(), clicks.data()));
    uint64_t written;
    PEPNET_RETURN_IF_ERROR(Publish(version, false, &written));
    if (written != rows) {
      return Status::Internal("the delta of version " + std::to_string(version) + " holds " +
                              std::to_string(written) + " rows, not " + std::to_string(rows));
    }
    return Status::OK();
  }

  uint64_t version() const { return version_; }
  // Rows a delta can change without repeating one.
  size_t id_rows() const { return universe_.keys.size() - universe_.first_id_row; }

 private:
  Status Publish(uint64_t version, bool is_base, uint64_t* rows) {
    VersionWriter writer(Env::Default(), dir_, version);
    PEPNET_RETURN_IF_ERROR(writer.Begin());
    const uint32_t pass = static_cast<uint32_t>(version);
    RowFileInfo info;
    PEPNET_RETURN_IF_ERROR(
        WriteRowFile(Env::Default(), *table_, is_base, pass, writer.RowFilePath(0), &info));
    proto::ModelManifest m;
    m.set_version(version);
    m.set_pass(pass);
    m.set_pass_name("pass-" + std::to_string(pass));
    m.set_parent_version(version - 1);
    m.set_is_base(is_base);
    m.set_base_version(1);
    m.set_table_seed(FLAGS_seed);
    *m.mutable_model() = config_;
    AddRowFile(0, info, &m);
    PEPNET_RETURN_IF_ERROR(writer.Finish(dense_.data(), dense_.size(), &m));
    version_ = version;
    *rows = info.rows;
    return Status::OK();
  }

  const proto::ModelConfig& config_;
  const Universe& universe_;
  const std::string dir_;
  const std::vector<float>& dense_;
  std::unique_ptr<EmbeddingTable> table_;
  uint64_t version_ = 0;
  size_t cursor_ = 0;
};

// A pepnet_serve process of our own; stopped (SIGTERM, then SIGKILL) when destroyed.
class ServeProcess {
 public:
  ~ServeProcess() { Stop(); }

  Status Start(const std::string& model_dir, const std::string& work_dir, size_t max_samples,
               size_t max_body_bytes) {
    log_ = work_dir + "/serve.log";
    const std::string port_file = work_dir + "/serve.port";
    PEPNET_RETURN_IF_ERROR(process_.Start(
        {ExecutableDir() + "/pepnet_serve", "--model_dir=" + model_dir, "--port=0",
         "--port_file=" + port_file, "--threads=" + std::to_string(FLAGS_server_threads),
         "--max_samples_per_request=" + std::to_string(max_samples),
         "--max_body_bytes=" + std::to_string(max_body_bytes)},
        log_));
    return WaitForPortFile(port_file, kStartTimeoutMs, &process_, &port_);
  }

  void Stop() {
    if (!process_.running()) return;
    process_.Signal(SIGTERM);
    int code;
    if (!process_.Wait(10000, &code).ok()) {
      process_.Signal(SIGKILL);
      process_.Wait(10000, &code);
    }
  }

  uint16_t port() const { return port_; }

  // The last lines of its log, for an error message.
  std::string LogTail() const {
    std::ifstream in(log_);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    std::string tail;
    for (size_t i = lines.size() > 10 ? lines.size() - 10 : 0; i < lines.size(); ++i) {
      tail += "\n  " + lines[i];
    }
    return tail.empty() ? "" : "\npepnet_serve's last log lines:" + tail;
  }

 private:
  Subprocess process_;
  std::string log_;
  uint16_t port_ = 0;
};

// What /v1/model says.
struct ModelInfo {
  uint64_t version = 0, rows = 0, bytes = 0, update_rows = 0;
  double bytes_per_row = 0, read_seconds = 0, switch_seconds = 0;
};

Status GetModel(HttpClient* client, ModelInfo* info, int* code) {
  HttpReply reply;
  PEPNET_RETURN_IF_ERROR(client->Get("/v1/model", &reply));
  *code = reply.status;
  if (reply.status != 200) return Status::OK();
  const nlohmann::json j = nlohmann::json::parse(reply.body, nullptr, false);
  auto number = [&](const char* key, auto* out) {
    if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return false;
    *out = j[key].get<std::remove_pointer_t<decltype(out)>>();
    return true;
  };
  if (!number("version", &info->version) || !number("rows", &info->rows) ||
      !number("bytes", &info->bytes) || !number("update_rows", &info->update_rows) ||
      !number("bytes_per_row", &info->bytes_per_row) ||
      !number("update_read_seconds", &info->read_seconds) ||
      !number("update_switch_seconds", &info->switch_seconds)) {
    return Status::Internal("/v1/model: a reply without the expected numbers: " + reply.body);
  }
  return Status::OK();
}

// Waits until /v1/model names `version` (or a later one).
Status WaitForVersion(HttpClient* client, uint64_t version, ModelInfo* info) {
  const auto start = Clock::now();
  while (SecondsSince(start) * 1000 < kLiveTimeoutMs) {
    int code = 0;
    PEPNET_RETURN_IF_ERROR(GetModel(client, info, &code));
    if (code == 200 && info->version >= version) return Status::OK();
    if (code != 200 && code != 503) {
      return Status::Internal("/v1/model answered HTTP " + std::to_string(code));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return Status::DeadlineExceeded("version " + std::to_string(version) + " not live after " +
                                  std::to_string(kLiveTimeoutMs / 1000) + " s");
}

// The version a /v1/score reply names ({"version": N, ...}); 0 if it names none.
uint64_t ReplyVersion(const std::string& body) {
  static const std::string kPrefix = "{\"version\": ";
  if (body.compare(0, kPrefix.size(), kPrefix) != 0) return 0;
  return std::strtoull(body.c_str() + kPrefix.size(), nullptr, 10);
}

// Whether a /v1/score reply scores `samples` samples: one object per prediction.
bool RepliesTo(const std::string& body, int samples) {
  return ReplyVersion(body) != 0 &&
         std::count(body.begin(), body.end(), '{') == static_cast<std::ptrdiff_t>(samples) + 1;
}

// The whole check of one reply: every task of every sample a probability.
Status CheckScores(const proto::ModelConfig& config, const std::string& body, int samples) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("predictions") || !j["predictions"].is_array() ||
      j["predictions"].size() != static_cast<size_t>(samples)) {
    return Status::Internal("/v1/score: not " + std::to_string(samples) +
                            " predictions: " + body.substr(0, 300));
  }
  for (const nlohmann::json& p : j["predictions"]) {
    for (const auto& task : config.task()) {
      if (!p.is_object() || !p.contains(task.name()) || !p[task.name()].is_number() ||
          !(p[task.name()].get<double>() >= 0 && p[task.name()].get<double>() <= 1)) {
        return Status::Internal("/v1/score: no probability for task '" + task.name() +
                                "': " + body.substr(0, 300));
      }
    }
  }
  return Status::OK();
}

// Joins its threads on every way out.
struct ThreadGroup {
  std::vector<std::thread> threads;
  ~ThreadGroup() { Join(); }
  void Join() {
    for (std::thread& t : threads) {
      if (t.joinable()) t.join();
    }
  }
};

struct Failures {
  std::atomic<uint64_t> count{0};
  std::mutex mu;
  std::string first;
  void Note(const std::string& why) {
    if (count.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> lock(mu);
      first = why;
    }
  }
};

// One /v1/score request; a failure is noted (with its reason) and returns false.
bool Score(HttpClient* client, const std::string& body, int samples, Failures* failures,
           HttpReply* reply) {
  const Status st = client->Post("/v1/score", body, reply);
  if (!st.ok()) {
    failures->Note(st.ToString());
  } else if (reply->status != 200) {
    failures->Note("HTTP " + std::to_string(reply->status) + ": " + reply->body.substr(0, 300));
  } else if (!RepliesTo(reply->body, samples)) {
    failures->Note("a reply not for " + std::to_string(samples) +
                   " samples: " + reply->body.substr(0, 300));
  } else {
    return true;
  }
  return false;
}

struct ApplyCost {
  uint64_t table_rows, delta_rows;
  double read_seconds, switch_seconds;
};

struct TableInfo {
  uint64_t table_rows, rows, bytes;
  double bytes_per_row, load_seconds;
};

// Publishes --apply_reps deltas of each --delta_rows and reads their costs once live.
Status MeasureApply(uint64_t table_rows, const std::vector<int64_t>& delta_sizes,
                    Publisher* publisher, HttpClient* admin, std::mt19937_64* rng,
                    std::vector<ApplyCost>* out) {
  for (int64_t rows : delta_sizes) {
    if (static_cast<size_t>(rows) > publisher->id_rows()) {
      printf("  %10llu  %10lld  (skipped: more rows than the table's %zu)\n",
             (unsigned long long)table_rows, (long long)rows, publisher->id_rows());
      continue;
    }
    std::vector<double> read, held;
    for (int rep = 0; rep < FLAGS_apply_reps; ++rep) {
      PEPNET_RETURN_IF_ERROR(publisher->PublishDelta(rows, rng));
      ModelInfo info;
      PEPNET_RETURN_IF_ERROR(WaitForVersion(admin, publisher->version(), &info));
      if (info.version != publisher->version() || info.update_rows != uint64_t(rows)) {
        return Status::Internal("/v1/model: version " + std::to_string(info.version) + " of " +
                                std::to_string(info.update_rows) + " rows live, expected " +
                                std::to_string(publisher->version()) + " of " +
                                std::to_string(rows));
      }
      read.push_back(info.read_seconds);
      held.push_back(info.switch_seconds);
    }
    out->push_back({table_rows, uint64_t(rows), Median(read), Median(held)});
    printf("  %10llu  %10lld  %9.2f  %10.3f\n", (unsigned long long)table_rows, (long long)rows,
           1e3 * out->back().read_seconds, 1e3 * out->back().switch_seconds);
    fflush(stdout);
  }
  return Status::OK();
}

// From each delta's rename into place to the first reply naming it, while one client
// keeps scoring 1-sample requests.
Status MeasureFreshness(Publisher* publisher, uint16_t port, const std::vector<std::string>& bodies,
                        std::mt19937_64* rng, Failures* failures, std::vector<double>* out) {
  std::mutex mu;
  std::condition_variable seen_cv;
  uint64_t seen = 0;
  std::map<uint64_t, Clock::time_point> first_reply;
  std::atomic<bool> running{true};
  ThreadGroup client;
  client.threads.emplace_back([&] {
    HttpClient http(port, kHttpTimeoutMs);
    HttpReply reply;
    for (size_t i = 0; running.load(); ++i) {
      if (!Score(&http, bodies[i % bodies.size()], 1, failures, &reply)) continue;
      const uint64_t v = ReplyVersion(reply.body);
      std::lock_guard<std::mutex> lock(mu);
      if (v > seen) {
        seen = v;
        first_reply[v] = Clock::now();
        seen_cv.notify_all();
      }
    }
  });
  Status st;
  for (int k = 0; k < FLAGS_versions && st.ok(); ++k) {
    const int gap = FLAGS_publish_gap_ms > 0 ? (*rng)() % FLAGS_publish_gap_ms : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(gap));
    st = publisher->PublishDelta(FLAGS_freshness_rows, rng);
    if (!st.ok()) break;
    const Clock::time_point renamed = Clock::now();
    const uint64_t v = publisher->version();
    std::unique_lock<std::mutex> lock(mu);
    if (!seen_cv.wait_for(lock, std::chrono::milliseconds(kLiveTimeoutMs),
                          [&] { return seen >= v; })) {
      st = Status::DeadlineExceeded("no reply named version " + std::to_string(v) + " within " +
                                    std::to_string(kLiveTimeoutMs / 1000) + " s of its publish");
      break;
    }
    if (first_reply.count(v) == 0) {
      st = Status::Internal("the replies went past version " + std::to_string(v));
      break;
    }
    out->push_back(std::chrono::duration<double>(first_reply[v] - renamed).count());
  }
  running = false;
  client.Join();
  return st;
}

struct Load {
  int batch = 0;
  uint64_t requests = 0;
  double p50_ms = 0, p99_ms = 0, requests_per_s = 0, samples_per_s = 0;
};

// --clients clients, each its own connection, scoring `bodies` in turn: --warmup_seconds
// untimed, then --seconds timed (requests started in the window count).
Status MeasureLoad(const proto::ModelConfig& config, uint16_t port,
                   const std::vector<std::string>& bodies, int batch, Failures* failures,
                   Load* out) {
  {
    HttpClient check(port, kHttpTimeoutMs);
    HttpReply reply;
    PEPNET_RETURN_IF_ERROR(check.Post("/v1/score", bodies[0], &reply));
    if (reply.status != 200) {
      return Status::Internal("/v1/score of " + std::to_string(batch) + " samples: HTTP " +
                              std::to_string(reply.status) + ": " + reply.body.substr(0, 300));
    }
    PEPNET_RETURN_IF_ERROR(CheckScores(config, reply.body, batch));
  }
  const int n = FLAGS_clients;
  std::vector<std::vector<double>> latency_ms(n);
  std::vector<Clock::time_point> last_end(n);
  // Threads start before the window opens; each records requests started inside it.
  const Clock::time_point open =
      Clock::now() + std::chrono::milliseconds(static_cast<int>(1000 * FLAGS_warmup_seconds) + 50);
  const Clock::time_point close =
      open + std::chrono::microseconds(static_cast<int64_t>(1e6 * FLAGS_seconds));
  ThreadGroup team;
  for (int c = 0; c < n; ++c) {
    team.threads.emplace_back([&, c] {
      HttpClient http(port, kHttpTimeoutMs);
      HttpReply reply;
      latency_ms[c].reserve(1 << 16);
      for (size_t i = c;; ++i) {
        const Clock::time_point start = Clock::now();
        if (start >= close) break;
        const bool ok = Score(&http, bodies[i % bodies.size()], batch, failures, &reply);
        const Clock::time_point end = Clock::now();
        if (ok && start >= open) {
          latency_ms[c].push_back(std::chrono::duration<double, std::milli>(end - start).count());
          last_end[c] = end;
        }
      }
    });
  }
  team.Join();
  std::vector<double> all;
  Clock::time_point last = open;
  for (int c = 0; c < n; ++c) {
    all.insert(all.end(), latency_ms[c].begin(), latency_ms[c].end());
    if (!latency_ms[c].empty()) last = std::max(last, last_end[c]);
  }
  std::sort(all.begin(), all.end());
  const double seconds = std::max(1e-9, std::chrono::duration<double>(last - open).count());
  out->batch = batch;
  out->requests = all.size();
  out->p50_ms = Quantile(all, 0.50);
  out->p99_ms = Quantile(all, 0.99);
  out->requests_per_s = all.size() / seconds;
  out->samples_per_s = out->requests_per_s * batch;
  return Status::OK();
}

std::string Num(double v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

class Bench {
 public:
  int Run();

 private:
  Status Prepare();
  Status Table(size_t index);
  Status ScoreFigures();
  std::string Json() const;

  proto::ModelConfig config_;
  std::string config_path_;
  std::vector<int64_t> table_sizes_, delta_sizes_, batches_;
  std::vector<float> dense_;
  std::mt19937_64 rng_;
  std::string tmp_;
  // The table of the current size, its folder and its server.
  std::unique_ptr<Universe> universe_;
  std::unique_ptr<Publisher> publisher_;
  std::unique_ptr<ServeProcess> server_;
  std::unique_ptr<HttpClient> admin_;

  Failures failures_;
  std::vector<TableInfo> tables_;
  std::vector<ApplyCost> apply_;
  std::vector<double> freshness_;
  std::vector<Load> loads_;
  Load saturation_;
};

Status Bench::Prepare() {
  if (!ParseList(FLAGS_table_rows, &table_sizes_)) {
    return Status::InvalidArgument("--table_rows: positive integers, comma-separated");
  }
  if (!ParseList(FLAGS_delta_rows, &delta_sizes_)) {
    return Status::InvalidArgument("--delta_rows: positive integers, comma-separated");
  }
  if (!ParseList(FLAGS_batch, &batches_)) {
    return Status::InvalidArgument("--batch: positive integers, comma-separated");
  }
  if (FLAGS_apply_reps < 1 || FLAGS_versions < 1 || FLAGS_freshness_rows < 1 || FLAGS_clients < 1 ||
      FLAGS_pool < 1 || FLAGS_server_threads < 1 || FLAGS_saturation_batch < 0 ||
      FLAGS_publish_gap_ms < 0) {
    return Status::InvalidArgument(
        "--apply_reps, --versions, --freshness_rows, --clients, --pool and --server_threads "
        "must be >= 1, --saturation_batch and --publish_gap_ms >= 0");
  }
  if (!(FLAGS_seconds > 0) || !(FLAGS_warmup_seconds >= 0) || FLAGS_zipf < 0) {
    return Status::InvalidArgument("--seconds must be > 0, --warmup_seconds and --zipf >= 0");
  }
  config_path_ = FLAGS_config.empty() ? DefaultConfigPath() : FLAGS_config;
  PEPNET_RETURN_IF_ERROR(LoadModelConfigFile(config_path_, &config_));
  rng_.seed(FLAGS_seed);
  PepNetParams<float> params = PepNet<float>(ShapeOf(config_)).InitParams(&rng_);
  params.ForEach(
      [&](const std::string&, Matrix<float>* x) {
        dense_.insert(dense_.end(), x->data(), x->data() + x->size());
      },
      [&](const std::string&, RowVector<float>* x) {
        dense_.insert(dense_.end(), x->data(), x->data() + x->size());
      });
  if (dense_.size() != DenseParamCount(config_)) {
    return Status::Internal("dense parameters: " + std::to_string(dense_.size()) + " floats, not " +
                            std::to_string(DenseParamCount(config_)));
  }
  char tmpl[] = "/tmp/pepnet_bench_serve.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Status::IoError("cannot create a temporary folder");
  tmp_ = tmpl;
  return Status::OK();
}

// Publishes a base of table_sizes_[index] rows into a folder of its own, starts a
// pepnet_serve on it and measures the deltas' apply cost. The server of the last size is
// kept for the scoring figures; the others are stopped and their folders removed.
Status Bench::Table(size_t index) {
  admin_.reset();
  server_.reset();
  publisher_.reset();
  universe_.reset();
  if (index > 0) {
    PEPNET_RETURN_IF_ERROR(
        RemoveTree(Env::Default(), tmp_ + "/t-" + std::to_string(table_sizes_[index - 1])));
  }
  const uint64_t table_rows = table_sizes_[index];
  const std::string dir = tmp_ + "/t-" + std::to_string(table_rows);
  universe_ = std::make_unique<Universe>();
  PEPNET_RETURN_IF_ERROR(BuildUniverse(config_, table_rows, universe_.get()));
  publisher_ = std::make_unique<Publisher>(config_, *universe_, dir + "/publish", dense_);
  PEPNET_RETURN_IF_ERROR(CreateDirs(Env::Default(), dir));
  PEPNET_RETURN_IF_ERROR(publisher_->PublishBase(&rng_));

  size_t max_samples = 4096, max_body = 4 << 20;
  for (int64_t b : batches_) max_samples = std::max<size_t>(max_samples, b);
  max_samples = std::max<size_t>(max_samples, FLAGS_saturation_batch);
  // A request body is at most ~40 bytes per column and sample.
  max_body = std::max(
      max_body, max_samples * (universe_->columns.size() + 1) * (40 + 12 * FLAGS_multi_values));
  server_ = std::make_unique<ServeProcess>();
  PEPNET_RETURN_IF_ERROR(server_->Start(dir + "/publish", dir, max_samples, max_body));
  admin_ = std::make_unique<HttpClient>(server_->port(), kHttpTimeoutMs);
  ModelInfo info;
  PEPNET_RETURN_IF_ERROR(WaitForVersion(admin_.get(), 1, &info));
  tables_.push_back({table_rows, info.rows, info.bytes, info.bytes_per_row, info.read_seconds});
  printf(
      "table of %llu rows: served as %llu rows, %llu bytes (%.1f bytes/row); base loaded in "
      "%.2f s\n",
      (unsigned long long)table_rows, (unsigned long long)info.rows, (unsigned long long)info.bytes,
      info.bytes_per_row, info.read_seconds);
  printf("  table_rows  delta_rows    read_ms  switch_ms   (median of %d deltas)\n",
         FLAGS_apply_reps);
  fflush(stdout);
  return MeasureApply(table_rows, delta_sizes_, publisher_.get(), admin_.get(), &rng_, &apply_);
}

Status Bench::ScoreFigures() {
  const uint16_t port = server_->port();
  const std::vector<std::string> singles =
      MakeBodies(config_, *universe_, 1, FLAGS_pool, FLAGS_seed + 1);
  PEPNET_RETURN_IF_ERROR(
      MeasureFreshness(publisher_.get(), port, singles, &rng_, &failures_, &freshness_));
  std::vector<double> sorted = freshness_;
  std::sort(sorted.begin(), sorted.end());
  printf(
      "freshness: median %.3f s, max %.3f s from the rename to the first reply naming the "
      "version (target <= 1 s; %d deltas of %d rows:",
      Median(sorted), sorted.back(), FLAGS_versions, FLAGS_freshness_rows);
  for (double f : freshness_) printf(" %.3f", f);
  printf(")\n");
  fflush(stdout);

  std::vector<int64_t> sizes = batches_;
  if (FLAGS_saturation_batch > 0) sizes.push_back(FLAGS_saturation_batch);
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int batch = static_cast<int>(sizes[i]);
    const std::vector<std::string> bodies =
        MakeBodies(config_, *universe_, batch, FLAGS_pool, FLAGS_seed + 2 + i);
    Load load;
    PEPNET_RETURN_IF_ERROR(MeasureLoad(config_, port, bodies, batch, &failures_, &load));
    const bool extra = i >= batches_.size();
    printf(
        "score batch=%-4d clients=%d: p50 %.2f ms, p99 %.2f ms, %.0f requests/s, %.0f "
        "samples/s%s\n",
        batch, FLAGS_clients, load.p50_ms, load.p99_ms, load.requests_per_s, load.samples_per_s,
        extra ? " (saturation batch)" : "");
    fflush(stdout);
    loads_.push_back(load);
    if (load.samples_per_s > saturation_.samples_per_s) saturation_ = load;
  }
  printf("saturation: %.0f samples/s (batch %d, %d clients, %d server threads)\n",
         saturation_.samples_per_s, saturation_.batch, FLAGS_clients, FLAGS_server_threads);
  const TableInfo& t = tables_.back();
  printf("serving table: %llu rows, %.1f bytes/row (table of %llu rows)\n",
         (unsigned long long)t.rows, t.bytes_per_row, (unsigned long long)t.table_rows);
  printf("failed requests: %llu\n", (unsigned long long)failures_.count.load());
  return Status::OK();
}

std::string Bench::Json() const {
  std::ostringstream j;
  std::vector<double> sorted = freshness_;
  std::sort(sorted.begin(), sorted.end());
  j << "{\"freshness_median_s\": " << Num(Median(sorted))
    << ", \"freshness_max_s\": " << Num(sorted.back()) << ", \"freshness_s\": [";
  for (size_t i = 0; i < freshness_.size(); ++i) j << (i ? ", " : "") << Num(freshness_[i]);
  j << "], \"freshness_delta_rows\": " << FLAGS_freshness_rows << ", \"apply\": [";
  for (size_t i = 0; i < apply_.size(); ++i) {
    const ApplyCost& a = apply_[i];
    j << (i ? ", " : "") << "{\"table_rows\": " << a.table_rows
      << ", \"delta_rows\": " << a.delta_rows
      << ", \"update_read_seconds\": " << Num(a.read_seconds)
      << ", \"update_switch_seconds\": " << Num(a.switch_seconds) << "}";
  }
  j << "], \"tables\": [";
  for (size_t i = 0; i < tables_.size(); ++i) {
    const TableInfo& t = tables_[i];
    j << (i ? ", " : "") << "{\"table_rows\": " << t.table_rows << ", \"rows\": " << t.rows
      << ", \"bytes\": " << t.bytes << ", \"bytes_per_row\": " << Num(t.bytes_per_row)
      << ", \"base_load_seconds\": " << Num(t.load_seconds) << "}";
  }
  j << "], \"latency\": [";
  for (size_t i = 0; i < loads_.size(); ++i) {
    const Load& l = loads_[i];
    j << (i ? ", " : "") << "{\"batch\": " << l.batch << ", \"clients\": " << FLAGS_clients
      << ", \"requests\": " << l.requests << ", \"p50_ms\": " << Num(l.p50_ms)
      << ", \"p99_ms\": " << Num(l.p99_ms) << ", \"requests_per_s\": " << Num(l.requests_per_s)
      << ", \"samples_per_s\": " << Num(l.samples_per_s) << "}";
  }
  const TableInfo& t = tables_.back();
  j << "], \"saturation_samples_per_s\": " << Num(saturation_.samples_per_s)
    << ", \"saturation_batch\": " << saturation_.batch
    << ", \"server_threads\": " << FLAGS_server_threads
    << ", \"failed_requests\": " << failures_.count.load() << ", \"rows\": " << t.rows
    << ", \"bytes_per_row\": " << Num(t.bytes_per_row) << "}";
  return j.str();
}

int Bench::Run() {
  Status st = Prepare();
  if (!st.ok()) return Fail(st.ToString());
  printf("pepnet_bench_serve: config %s (%zu dense floats), %d clients, %d server threads\n",
         config_path_.c_str(), dense_.size(), FLAGS_clients, FLAGS_server_threads);
  fflush(stdout);
  for (size_t i = 0; i < table_sizes_.size() && st.ok(); ++i) st = Table(i);
  if (st.ok()) st = ScoreFigures();
  const std::string log_tail = server_ ? server_->LogTail() : "";
  admin_.reset();
  server_.reset();
  const Status removed = RemoveTree(Env::Default(), tmp_);
  if (!st.ok()) return Fail(st.ToString() + log_tail);
  if (!removed.ok()) return Fail(removed.ToString());
  printf("%s\n", Json().c_str());
  if (failures_.count.load() > 0) {
    std::lock_guard<std::mutex> lock(failures_.mu);
    return Fail(std::to_string(failures_.count.load()) +
                " requests failed; the first: " + failures_.first);
  }
  return 0;
}

}  // namespace
}  // namespace pepnet

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "pepnet_bench_serve [--table_rows=100000,1000000 --delta_rows=1000,10000,100000 "
      "--clients=8 --batch=1,64 ...]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  pepnet::Bench bench;
  return bench.Run();
}
