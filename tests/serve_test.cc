// pepnet_serve (serve/main.cc) as a real process over real HTTP:
//   - its scores equal pepnet_predict's for every version of a cluster run, taken while
//     the run is still publishing;
//   - a stream of requests through version updates: none fails, every reply is scored by
//     one version that existed (its scores are that version's), versions only go forward;
//   - bad requests get a 4xx naming the field; corrupt, truncated, foreign and
//     out-of-sequence versions are refused with a log line and a count while the live
//     version keeps serving; a pinned version stays; a secret asks for its token.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "common/auth.h"
#include "common/http_client.h"
#include "proto/publish.pb.h"
#include "tests/http_util.h"
#include "tests/publish_util.h"
#include "tests/test_util.h"
#include "worker/feature_hash.h"

namespace pepnet {
namespace {

using nlohmann::json;

// A pepnet_serve process on a free port; stopped with SIGTERM on destruction, and it must
// exit 0 with a log free of sanitizer reports.
class ServeProcess {
 public:
  ~ServeProcess() {
    if (process_.running()) {
      process_.Signal(SIGTERM);
      int code = -1;
      EXPECT_TRUE(process_.Wait(20000, &code).ok());
      EXPECT_EQ(code, 0) << testing::ReadFile(log_);
    }
    if (!log_.empty()) testing::ExpectNoSanitizerReports(testing::ReadFile(log_));
  }
  Status Start(const testing::TempDir& dir, const std::string& model_dir,
               std::vector<std::string> flags = {}) {
    static int started = 0;
    const std::string tag = "serve" + std::to_string(started++);
    log_ = dir.File(tag + ".log");
    std::vector<std::string> argv = {testing::BinDir() + "/pepnet_serve",
                                     "--model_dir=" + model_dir, "--port=0",
                                     "--port_file=" + dir.File(tag + ".port"), "--poll_ms=20"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    PEPNET_RETURN_IF_ERROR(process_.Start(argv, log_));
    return WaitForPortFile(dir.File(tag + ".port"), 60000, &process_, &port_);
  }
  uint16_t port() const { return port_; }
  const std::string& log() const { return log_; }

 private:
  Subprocess process_;
  std::string log_;
  uint16_t port_ = 0;
};

HttpReply Call(uint16_t port, const std::string& method, const std::string& path,
               const std::string& body = "", const std::string& headers = "") {
  HttpClient client(port, 30000);
  HttpReply reply;
  const Status st = client.Request(method, path, body, &reply, headers);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return reply;
}

uint64_t LiveVersion(uint16_t port) {
  const HttpReply r = Call(port, "GET", "/v1/model");
  if (r.status != 200) return 0;
  return json::parse(r.body)["version"].get<uint64_t>();
}

// Waits until the live version is `version`.
bool WaitForVersion(uint16_t port, uint64_t version, int timeout_ms = 60000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (LiveVersion(port) == version) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// The data lines of a CSV file with a header, as JSON samples (each value a string, as in
// the file; every other sample's multi-valued "history" as an array).
std::string SamplesOf(const std::string& csv_path, size_t max_samples) {
  std::vector<std::string> lines = testing::ReadLines(csv_path);
  std::vector<std::string> names;
  std::stringstream header(lines[0]);
  for (std::string n; std::getline(header, n, ',');) names.push_back(n);
  json samples = json::array();
  for (size_t i = 1; i < lines.size() && samples.size() < max_samples; ++i) {
    json sample = json::object();
    std::vector<std::string> cells;
    size_t start = 0;
    for (;;) {
      const size_t comma = lines[i].find(',', start);
      cells.push_back(lines[i].substr(start, comma == std::string::npos ? comma : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    for (size_t c = 0; c < names.size(); ++c) {
      if (names[c] == "history" && i % 2 == 0) {
        json values = json::array();
        std::stringstream parts(cells[c]);
        for (std::string v; std::getline(parts, v, '|');) values.push_back(v);
        sample[names[c]] = values;
      } else if (!cells[c].empty() || i % 3 == 0) {
        sample[names[c]] = cells[c];  // an empty cell as "" or, every third, absent
      }
    }
    samples.push_back(sample);
  }
  return json{{"samples", samples}}.dump();
}

// pepnet_predict's scores of `data` with version `version`: [sample][task].
std::vector<std::vector<double>> Predict(const testing::TempDir& dir, const std::string& model_dir,
                                         uint64_t version, const std::string& data) {
  std::string output;
  const std::string out = dir.File("scores-" + std::to_string(version));
  EXPECT_EQ(testing::RunCommand(
                {testing::BinDir() + "/pepnet_predict", "--model_dir=" + model_dir,
                 "--model_version=" + std::to_string(version), "--data=" + data, "--out=" + out},
                dir, &output),
            0)
      << output;
  std::vector<std::vector<double>> scores;
  std::vector<std::string> lines = testing::ReadLines(out);
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<double> row;
    std::stringstream cells(lines[i]);
    for (std::string c; std::getline(cells, c, ',');) row.push_back(std::stod(c));
    scores.push_back(row);
  }
  return scores;
}

std::vector<std::vector<double>> ScoresOf(const json& reply,
                                          const std::vector<std::string>& tasks) {
  std::vector<std::vector<double>> scores;
  for (const json& p : reply["predictions"]) {
    std::vector<double> row;
    for (const std::string& t : tasks) row.push_back(p[t].get<double>());
    scores.push_back(row);
  }
  return scores;
}

TEST(ServeTest, ScoresEqualPredictForEveryVersionOfARunWhileItPublishes) {
  testing::TempDir dir;
  testing::GenerateData(dir, dir.File("data"), 0, 5, 2000);
  const std::string model_dir = dir.File("run/model");
  // Started before the run: no version yet, so not ready.
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(dir, model_dir).ok()) << testing::ReadFile(serve.log());
  EXPECT_EQ(Call(serve.port(), "GET", "/readyz").status, 503);
  EXPECT_EQ(Call(serve.port(), "POST", "/v1/score", "{}").status, 503);

  setenv("PEPNET_BIN", testing::BinDir().c_str(), 1);
  Subprocess run;
  ASSERT_TRUE(run.Start({"/bin/bash", testing::SourceDir() + "/deploy/local/run_cluster.sh",
                         "--config=" + testing::SourceDir() + "/configs/demo.pbtxt",
                         "--pass_root=" + dir.File("data"), "--servers=2", "--workers=2",
                         "--max_passes=5", "--idle_timeout=2", "--run_dir=" + dir.File("run"),
                         "--publish_dir=" + model_dir, "--base_every=3"},
                        dir.File("run.log"))
                  .ok());
  const std::string data = dir.File("data/pass-00004/part-00000.csv");
  const std::string body = SamplesOf(data, 200);
  const std::vector<std::string> tasks = {"like", "forward", "follow"};
  std::map<uint64_t, std::vector<std::vector<double>>> by_version;
  HttpClient client(serve.port(), 30000);
  int exit_code = -1;
  bool run_over = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(600);
  // Scores as the versions come, until the run is over and its last version scored.
  while (!run_over || by_version.count(5) == 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << testing::ReadFile(dir.File("run.log"));
    if (!run_over && run.Wait(0, &exit_code).ok()) {
      run_over = true;
      ASSERT_EQ(exit_code, 0) << testing::ReadFile(dir.File("run.log"));
    }
    HttpReply reply;
    ASSERT_TRUE(client.Post("/v1/score", body, &reply).ok());
    if (reply.status == 503) continue;
    ASSERT_EQ(reply.status, 200) << reply.body;
    const json j = json::parse(reply.body);
    const uint64_t v = j["version"].get<uint64_t>();
    if (!by_version.count(v)) by_version[v] = ScoresOf(j, tasks);
  }
  std::set<uint64_t> seen;
  for (const auto& [v, scores] : by_version) {
    seen.insert(v);
    const auto expected = Predict(dir, model_dir, v, data);
    ASSERT_EQ(scores.size(), 200u);
    ASSERT_GE(expected.size(), scores.size());
    for (size_t i = 0; i < scores.size(); ++i) {
      for (size_t t = 0; t < tasks.size(); ++t) {
        ASSERT_NEAR(scores[i][t], expected[i][t], 1e-6)
            << "version " << v << ", sample " << i << ", task " << tasks[t];
      }
    }
  }
  // Every version was scored while it was the newest: bases (1, 4) and deltas alike.
  EXPECT_EQ(seen, (std::set<uint64_t>{1, 2, 3, 4, 5}));
  const json model = json::parse(Call(serve.port(), "GET", "/v1/model").body);
  EXPECT_EQ(model["version"], 5);
  EXPECT_EQ(model["base_version"], 4);
  EXPECT_GT(model["rows"].get<uint64_t>(), 0u);
  EXPECT_EQ(model["refused_versions"]["corrupt"], 0);
}

// A small model published by the test itself, version by version.
class ServeUpdatesTest : public ::testing::Test {
 protected:
  // Sample i: its user and item rows are the ones each version rewrites.
  static std::string Body(int samples) {
    json s = json::array();
    for (int i = 0; i < samples; ++i) {
      s.push_back({{"domain", i % 2}, {"user", std::to_string(i)}, {"item", 100 + i}});
    }
    return json{{"samples", s}}.dump();
  }
  // Publishes version v into the served folder through a folder of its own, renamed into
  // place whole (as the coordinator's rename does).
  void Publish(uint64_t v, bool base, uint64_t base_version, float value, int rows = 20) {
    ASSERT_TRUE(Train(v, value, rows).ok());
    ASSERT_TRUE(stage_.Publish(v, base, base_version, Dense(value)).ok());
    MoveIntoPlace(v);
  }
  // Version v's rows: `rows` of the publisher's own keys and the rows of Body()'s samples'
  // users and items (as the data's hashing keys them), so that every version scores them
  // differently.
  Status Train(uint64_t v, float value, int rows = 20) {
    PEPNET_RETURN_IF_ERROR(publisher_.Train(static_cast<uint32_t>(v), 0, rows, value));
    const std::vector<float> w(8, value), minus(8, -value);
    for (int i = 0; i < 16; ++i) {
      const std::string user = std::to_string(i), item = std::to_string(100 + i);
      PEPNET_RETURN_IF_ERROR(publisher_.table()->SetWeights(
          FeatureKeyOf(2, user.data(), user.size(), 10), w.data(), 8));
      PEPNET_RETURN_IF_ERROR(publisher_.table()->SetWeights(
          FeatureKeyOf(3, item.data(), item.size(), 10), minus.data(), 8));
    }
    return Status::OK();
  }
  std::vector<float> Dense(float value) const {
    return std::vector<float>(publisher_.dense_floats(), 0.05f * value);
  }
  void MoveIntoPlace(uint64_t v) {
    ASSERT_EQ(rename((dir_.File("stage") + "/" + VersionFolder(v)).c_str(),
                     (dir_.File("pub") + "/" + VersionFolder(v)).c_str()),
              0);
  }

  void SetUp() override { mkdir(dir_.File("pub").c_str(), 0755); }

  testing::TempDir dir_;
  // One table, written to the staging folder; the served folder gets versions by rename.
  testing::TestPublisher stage_{dir_.File("stage")};
  testing::TestPublisher& publisher_ = stage_;
};

TEST_F(ServeUpdatesTest, ARequestStreamThroughFiveUpdatesNeverFailsAndOnlyGoesForward) {
  Publish(1, true, 1, 0.1f);
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(dir_, dir_.File("pub")).ok()) << testing::ReadFile(serve.log());
  ASSERT_EQ(LiveVersion(serve.port()), 1u);
  const std::string body = Body(16);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  struct Seen {
    std::vector<uint64_t> versions;
    std::map<uint64_t, std::string> predictions;  // per version: the first reply's
    std::vector<std::pair<uint64_t, std::string>> all;
  };
  std::vector<Seen> seen(4);
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      HttpClient client(serve.port(), 30000);
      while (!stop) {
        HttpReply reply;
        if (!client.Post("/v1/score", body, &reply).ok() || reply.status != 200) {
          ++failures;
          continue;
        }
        const json j = json::parse(reply.body);
        const uint64_t v = j["version"].get<uint64_t>();
        seen[c].versions.push_back(v);
        seen[c].all.emplace_back(v, j["predictions"].dump());
      }
    });
  }
  // Deltas, a base, deltas: each waited for under the stream.
  const std::vector<std::pair<uint64_t, bool>> updates = {
      {2, false}, {3, false}, {4, true}, {5, false}, {6, false}};
  for (const auto& [v, base] : updates) {
    Publish(v, base, base ? v : (v < 4 ? 1 : 4), 0.1f * static_cast<float>(v));
    ASSERT_TRUE(WaitForVersion(serve.port(), v)) << testing::ReadFile(serve.log());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures, 0);
  // Every reply's scores are exactly the scores of the version it names: no request was
  // scored by a mix of two versions.
  std::map<uint64_t, std::string> by_version;
  size_t replies = 0;
  for (const Seen& s : seen) {
    ASSERT_FALSE(s.versions.empty());
    EXPECT_TRUE(std::is_sorted(s.versions.begin(), s.versions.end()));
    for (const auto& [v, predictions] : s.all) {
      ++replies;
      EXPECT_GE(v, 1u);
      EXPECT_LE(v, 6u);
      auto [it, fresh] = by_version.emplace(v, predictions);
      if (!fresh) {
        EXPECT_EQ(it->second, predictions) << "version " << v;
      }
    }
  }
  EXPECT_EQ(by_version.size(), 6u);  // each version served some requests
  std::set<std::string> distinct;
  for (const auto& [v, predictions] : by_version) distinct.insert(predictions);
  EXPECT_EQ(distinct.size(), 6u) << "versions that score alike cannot tell a mix apart";
  // And those are pepnet_predict's, version by version.
  std::string csv = "domain,user,item,click\n";
  for (int i = 0; i < 16; ++i) {
    csv += std::to_string(i % 2) + "," + std::to_string(i) + "," + std::to_string(100 + i) + ",\n";
  }
  testing::WriteFile(dir_.File("samples.csv"), csv);
  for (const auto& [v, predictions] : by_version) {
    const auto expected = Predict(dir_, dir_.File("pub"), v, dir_.File("samples.csv"));
    const json got = json::parse(predictions);
    ASSERT_EQ(got.size(), 16u);
    for (size_t i = 0; i < 16; ++i) {
      EXPECT_NEAR(got[i]["click"].get<double>(), expected[i][0], 1e-6) << v << " " << i;
    }
  }
  EXPECT_GT(replies, 50u);
}

TEST_F(ServeUpdatesTest, BadRequestsGetA4xxNamingTheField) {
  Publish(1, true, 1, 0.1f);
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(dir_, dir_.File("pub"), {"--max_body_bytes=4096"}).ok());
  const uint16_t port = serve.port();
  auto expect = [&](const std::string& body, int status, const std::string& fragment) {
    const HttpReply r = Call(port, "POST", "/v1/score", body);
    EXPECT_EQ(r.status, status) << body << " -> " << r.body;
    EXPECT_NE(r.body.find(fragment), std::string::npos) << body << " -> " << r.body;
  };
  expect(R"({"samples": [{"domain": 1, "usr": "u"}]})", 400, "samples[0]: unknown column 'usr'");
  expect(R"({"samples": [{"domain": 1, "user": false}]})", 400, "samples[0].user: a boolean");
  expect(R"({"samples": [{"domain": 1, "user": ["a"]}]})", 400, "single-valued");
  expect("", 400, "empty body");
  expect("{\"samples\": [", 400, "malformed JSON at byte");
  expect(R"({"samples": [{"domain": 9}]})", 400, "domain '9' (column 'domain')");
  // A label column is accepted and ignored.
  expect(R"({"samples": [{"domain": 1, "click": "yes"}]})", 200, "\"predictions\"");
  std::string big = "{\"samples\": [";
  for (int i = 0; i < 400; ++i) big += std::string(i ? "," : "") + "{\"domain\": 1}";
  const HttpReply too_big = Call(port, "POST", "/v1/score", big + "]}");
  EXPECT_EQ(too_big.status, 413) << too_big.body;
  EXPECT_EQ(Call(port, "GET", "/v1/score").status, 405);
  EXPECT_EQ(Call(port, "POST", "/v1/model").status, 405);
  EXPECT_EQ(Call(port, "GET", "/v1/nothing").status, 404);
  // Still serving, and the refusals are counted.
  expect(R"({"samples": [{"domain": 0, "user": "u"}]})", 200, "\"version\": 1");
  const std::string metrics = Call(port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("pepnet_serve_requests_total{code=\"400\"} 6"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("pepnet_serve_requests_total{code=\"405\"} 1"), std::string::npos);
  EXPECT_NE(metrics.find("pepnet_serve_model_version 1"), std::string::npos);
  EXPECT_EQ(testing::PromtoolProblems(dir_, metrics, "serve"), "") << metrics;
}

TEST_F(ServeUpdatesTest, BadVersionsAreRefusedAndTheLiveOneKeepsServing) {
  Publish(1, true, 1, 0.1f);
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(dir_, dir_.File("pub")).ok());
  const uint16_t port = serve.port();
  const std::string body = Body(4);
  const std::string before = Call(port, "POST", "/v1/score", body).body;
  auto refused = [&](const std::string& reason) {
    return json::parse(Call(port, "GET", "/v1/model").body)["refused_versions"][reason].get<int>();
  };
  auto wait_refused = [&](const std::string& reason, int count) {
    for (int i = 0; i < 3000 && refused(reason) < count; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return refused(reason) == count;
  };
  const std::string stage = dir_.File("stage");

  // A corrupt row file: one flipped byte.
  ASSERT_TRUE(Train(2, 0.7f).ok());
  ASSERT_TRUE(stage_.Publish(2, false, 1, Dense(0.7f)).ok());
  {
    const std::string path = stage + "/" + VersionFolder(2) + "/rows-0.bin";
    std::string bytes = testing::ReadFile(path);
    bytes[bytes.size() / 2] ^= 0x40;
    testing::WriteFile(path, bytes);
  }
  MoveIntoPlace(2);
  ASSERT_TRUE(wait_refused("corrupt", 1)) << testing::ReadFile(serve.log());
  EXPECT_TRUE(testing::LogEventually(serve.log(), "refused model version 2 (corrupt)"));
  EXPECT_EQ(LiveVersion(port), 1u);
  EXPECT_EQ(Call(port, "POST", "/v1/score", body).body, before);

  // A delta after the refused one: out of sequence (its parent never went live).
  Publish(3, false, 1, 0.8f);
  ASSERT_TRUE(wait_refused("sequence", 1)) << testing::ReadFile(serve.log());
  EXPECT_EQ(LiveVersion(port), 1u);

  // A truncated dense file in a new base.
  ASSERT_TRUE(Train(4, 0.9f).ok());
  ASSERT_TRUE(stage_.Publish(4, true, 4, Dense(0.9f)).ok());
  ASSERT_EQ(truncate((stage + "/" + VersionFolder(4) + "/dense.bin").c_str(), 100), 0);
  MoveIntoPlace(4);
  ASSERT_TRUE(wait_refused("corrupt", 2)) << testing::ReadFile(serve.log());

  // A base of another model config.
  ASSERT_TRUE(Train(5, 0.9f).ok());
  ASSERT_TRUE(stage_.Publish(5, true, 5, Dense(0.9f)).ok());
  ASSERT_TRUE(stage_
                  .EditManifest(5,
                                [](proto::ModelManifest* m) {
                                  m->mutable_model()->mutable_task(0)->set_name("buy");
                                })
                  .ok());
  MoveIntoPlace(5);
  ASSERT_TRUE(wait_refused("model", 1)) << testing::ReadFile(serve.log());
  EXPECT_EQ(LiveVersion(port), 1u);
  EXPECT_EQ(Call(port, "POST", "/v1/score", body).body, before);
  const std::string metrics = Call(port, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("pepnet_serve_versions_refused_total{reason=\"corrupt\"} 2"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("pepnet_serve_versions_refused_total{reason=\"model\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("pepnet_serve_versions_refused_total{reason=\"sequence\"} 1"),
            std::string::npos);

  // A good base ends it all.
  Publish(6, true, 6, 0.3f);
  ASSERT_TRUE(WaitForVersion(port, 6)) << testing::ReadFile(serve.log());
  EXPECT_NE(Call(port, "POST", "/v1/score", body).body, before);
  // A version that appears below the live one is out of sequence: 8 comes after 9.
  ASSERT_TRUE(Train(8, 0.4f).ok());
  ASSERT_TRUE(stage_.Publish(8, false, 6, Dense(0.4f)).ok());
  Publish(9, true, 9, 0.5f);
  ASSERT_TRUE(WaitForVersion(port, 9)) << testing::ReadFile(serve.log());
  MoveIntoPlace(8);
  ASSERT_TRUE(wait_refused("sequence", 2)) << testing::ReadFile(serve.log());
  EXPECT_EQ(LiveVersion(port), 9u);

  // A folder whose manifest is garbage stops nothing after it: the next base is taken,
  // and a process started now loads the newest version, whose chain does not need it.
  mkdir((dir_.File("pub") + "/" + VersionFolder(10)).c_str(), 0755);
  testing::WriteFile(dir_.File("pub") + "/" + VersionFolder(10) + "/manifest.pbtxt", "garbage {");
  ASSERT_TRUE(wait_refused("corrupt", 3)) << testing::ReadFile(serve.log());
  Publish(11, true, 11, 0.6f);
  Publish(12, false, 11, 0.7f);
  ASSERT_TRUE(WaitForVersion(port, 12)) << testing::ReadFile(serve.log());
  ServeProcess restarted;
  ASSERT_TRUE(restarted.Start(dir_, dir_.File("pub")).ok()) << testing::ReadFile(restarted.log());
  EXPECT_EQ(LiveVersion(restarted.port()), 12u);
  EXPECT_EQ(Call(restarted.port(), "POST", "/v1/score", body).body,
            Call(port, "POST", "/v1/score", body).body);
}

TEST_F(ServeUpdatesTest, APinnedVersionStaysAndAnOlderOneIsLoadedWhole) {
  Publish(1, true, 1, 0.1f);
  Publish(2, false, 1, 0.2f);
  Publish(3, false, 1, 0.3f);
  ServeProcess pinned, newest;
  ASSERT_TRUE(pinned.Start(dir_, dir_.File("pub"), {"--model_version=2"}).ok());
  ASSERT_TRUE(newest.Start(dir_, dir_.File("pub")).ok());
  EXPECT_EQ(LiveVersion(pinned.port()), 2u);
  EXPECT_EQ(LiveVersion(newest.port()), 3u);
  Publish(4, false, 1, 0.4f);
  ASSERT_TRUE(WaitForVersion(newest.port(), 4));
  EXPECT_EQ(LiveVersion(pinned.port()), 2u);
  EXPECT_EQ(json::parse(Call(pinned.port(), "GET", "/v1/model").body)["pinned"], true);
  // Version 2 as pepnet_predict scores it.
  testing::WriteFile(dir_.File("one.csv"), "domain,user,item,click\n1,3,103,\n");
  const auto expected = Predict(dir_, dir_.File("pub"), 2, dir_.File("one.csv"));
  const json got = json::parse(Call(pinned.port(), "POST", "/v1/score", Body(4)).body);
  EXPECT_NEAR(got["predictions"][3]["click"].get<double>(), expected[0][0], 1e-6);
  const json newer = json::parse(Call(newest.port(), "POST", "/v1/score", Body(4)).body);
  EXPECT_GT(std::abs(newer["predictions"][3]["click"].get<double>() - expected[0][0]), 1e-4);

  // A pinned version that is not there stops the process with the reason.
  std::string output;
  EXPECT_EQ(testing::RunCommand({testing::BinDir() + "/pepnet_serve",
                                 "--model_dir=" + dir_.File("pub"), "--model_version=9"},
                                dir_, &output),
            1);
  EXPECT_NE(output.find("--model_version=9: no version 9 under"), std::string::npos) << output;
}

TEST_F(ServeUpdatesTest, WithASecretOnlyTokenHoldersScore) {
  Publish(1, true, 1, 0.1f);
  const std::string secret_file = testing::WriteSecretFile(dir_);
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(dir_, dir_.File("pub"), {"--secret_file=" + secret_file}).ok());
  const std::string body = Body(2);
  EXPECT_EQ(Call(serve.port(), "POST", "/v1/score", body).status, 401);
  EXPECT_EQ(Call(serve.port(), "POST", "/v1/score", body, "Authorization: Bearer 00\r\n").status,
            401);
  EXPECT_EQ(Call(serve.port(), "GET", "/v1/model").status, 401);
  std::string token;
  ASSERT_EQ(testing::RunCommand(
                {testing::BinDir() + "/pepnet_ctl", "serve_token", "--secret_file=" + secret_file},
                dir_, &token),
            0)
      << token;
  while (!token.empty() && token.back() == '\n') token.pop_back();
  Secret secret;
  ASSERT_TRUE(Secret::Load(secret_file, &secret).ok());
  EXPECT_EQ(token, ServeToken(secret));
  EXPECT_EQ(token.find(secret.key()), std::string::npos);
  EXPECT_EQ(Call(serve.port(), "POST", "/v1/score", body, "Authorization: Bearer " + token + "\r\n")
                .status,
            200);
  // Liveness and metrics stay open to probes, as on every process.
  EXPECT_EQ(Call(serve.port(), "GET", "/healthz").status, 200);
  // Without a secret only loopback may be served.
  std::string output;
  EXPECT_EQ(testing::RunCommand({testing::BinDir() + "/pepnet_serve",
                                 "--model_dir=" + dir_.File("pub"), "--host=0.0.0.0"},
                                dir_, &output),
            1);
  EXPECT_NE(output.find("--host"), std::string::npos) << output;
}

}  // namespace
}  // namespace pepnet
