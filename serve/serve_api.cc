#include "serve/serve_api.h"

#include <chrono>
#include <cstdio>

#include "common/json_text.h"
#include "common/stats.h"
#include "proto/model_config.pb.h"
#include "serve/live_model.h"
#include "serve/model_updater.h"
#include "serve/score_request.h"
#include "serve/scorer.h"
#include "worker/data_reader.h"

namespace pepnet {
namespace {

constexpr char kJson[] = "application/json";

double NowUnix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string ErrorBody(const std::string& message) {
  return "{\"error\": " + JsonString(message) + "}\n";
}

std::string Number9(double v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

}  // namespace

struct ServeApi::Frontend {
  Frontend(const proto::ModelConfig& c, size_t max_samples)
      : config(c), scorer(&config), max_samples(max_samples) {
    for (const auto& t : config.task()) task_keys.push_back(JsonString(t.name()) + ": ");
  }
  std::unique_ptr<ScoreRequestParser> TakeParser() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!parsers.empty()) {
        auto p = std::move(parsers.back());
        parsers.pop_back();
        return p;
      }
    }
    return std::make_unique<ScoreRequestParser>(&config, max_samples);
  }
  void GiveParser(std::unique_ptr<ScoreRequestParser> p) {
    std::lock_guard<std::mutex> lock(mu);
    parsers.push_back(std::move(p));
  }

  const proto::ModelConfig config;
  Scorer scorer;
  const size_t max_samples;
  std::vector<std::string> task_keys;  // "\"like\": "
  std::mutex mu;
  std::vector<std::unique_ptr<ScoreRequestParser>> parsers;
};

ServeApi::ServeApi(ServeApiOptions options, const LiveModel* live, const ModelUpdater* updater)
    : options_(options), live_(live), updater_(updater) {}

ServeApi::~ServeApi() = default;

std::shared_ptr<ServeApi::Frontend> ServeApi::FrontendFor(const proto::ModelConfig& config) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!frontend_) frontend_ = std::make_shared<Frontend>(config, options_.max_samples_per_request);
  return frontend_;
}

HttpResponse ServeApi::Reply(int code, std::string body) {
  size_t i = 0;
  while (kCodes[i] != code && kCodes[i] != 0) ++i;
  replies_[i].fetch_add(1, std::memory_order_relaxed);
  return HttpResponse{code, kJson, std::move(body)};
}

HttpResponse ServeApi::Score(const HttpRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  struct Timer {
    LatencyHistogram* h;
    std::chrono::steady_clock::time_point start;
    ~Timer() { h->ObserveSince(start); }
  } timer{&latency_, start};
  if (request.method != "POST") {
    return Reply(405, ErrorBody(request.method + " /v1/score: POST a JSON body"));
  }
  std::shared_ptr<const ServedVersion> live = live_->version();
  if (!live)
    return Reply(503, ErrorBody("no model version is loaded yet: " + updater_->not_ready_reason()));
  std::shared_ptr<Frontend> f = FrontendFor(*live->model);
  std::unique_ptr<ScoreRequestParser> parser = f->TakeParser();
  Batch batch;
  Status st = parser->Parse(request.body, &batch);
  f->GiveParser(std::move(parser));
  if (!st.ok()) return Reply(400, ErrorBody(st.message()));
  std::vector<float> scores;
  std::shared_ptr<const ServedVersion> version;
  st = f->scorer.Score(*live_, batch, &scores, &version);
  if (!st.ok())
    return Reply(st.code() == Status::kUnavailable ? 503 : 500, ErrorBody(st.message()));
  const size_t num_tasks = f->task_keys.size();
  std::string body = "{\"version\": " + std::to_string(version->version) + ", \"predictions\": [";
  body.reserve(body.size() + batch.size * num_tasks * 24);
  for (size_t i = 0; i < batch.size; ++i) {
    body += i ? ", {" : "{";
    for (size_t t = 0; t < num_tasks; ++t) {
      const float p = scores[i * num_tasks + t];
      if (!std::isfinite(p)) {
        return Reply(500,
                     ErrorBody("sample " + std::to_string(i) + ": a score that is not finite"));
      }
      if (t) body += ", ";
      body += f->task_keys[t];
      body += Number9(p);
    }
    body += "}";
  }
  body += "]}\n";
  samples_.fetch_add(batch.size, std::memory_order_relaxed);
  return Reply(200, std::move(body));
}

HttpResponse ServeApi::Model(const HttpRequest& request) {
  if (request.method != "GET" && request.method != "HEAD") {
    return HttpResponse{405, kJson, ErrorBody(request.method + " /v1/model: GET it")};
  }
  uint64_t rows = 0, bytes = 0;
  std::shared_ptr<const ServedVersion> v = live_->Snapshot(&rows, &bytes);
  if (!v) {
    return HttpResponse{
        503, kJson, ErrorBody("no model version is loaded yet: " + updater_->not_ready_reason())};
  }
  const double now = NowUnix();
  std::string body = "{";
  auto field = [&](const char* key, const std::string& value) {
    if (body.size() > 1) body += ", ";
    body += "\"" + std::string(key) + "\": " + value;
  };
  field("version", std::to_string(v->version));
  field("pass", std::to_string(v->pass));
  field("pass_name", JsonString(v->pass_name));
  field("base_version", std::to_string(v->base_version));
  field("is_base", v->is_base ? "true" : "false");
  field("pinned", options_.pinned ? "true" : "false");
  field("rows", std::to_string(rows));
  field("bytes", std::to_string(bytes));
  field("bytes_per_row", rows ? JsonNumber(double(bytes) / double(rows)) : "null");
  field("update_rows", std::to_string(v->rows_changed));
  field("update_deleted_keys", std::to_string(v->keys_deleted));
  field("published_unix_ms", std::to_string(static_cast<int64_t>(v->published_unix_s * 1000)));
  field("live_unix_ms", std::to_string(static_cast<int64_t>(v->live_unix_s * 1000)));
  field("update_read_seconds", JsonNumber(v->read_seconds));
  field("update_switch_seconds", JsonNumber(v->switch_seconds));
  field("seconds_since_publish", JsonNumber(now - v->published_unix_s));
  field("refused_versions", "{\"corrupt\": " + std::to_string(updater_->refused("corrupt")) +
                                ", \"model\": " + std::to_string(updater_->refused("model")) +
                                ", \"sequence\": " + std::to_string(updater_->refused("sequence")) +
                                "}");
  const std::string refusal = updater_->last_refusal();
  field("last_refusal", refusal.empty() ? "null" : JsonString(refusal));
  body += "}\n";
  return HttpResponse{200, kJson, body};
}

void ServeApi::AddStats(StatSet* out) const {
  for (size_t i = 0; i < kCodes.size(); ++i) {
    out->Counter("pepnet_serve_requests_total", "Replies to /v1/score, by status code.",
                 replies_[i].load(std::memory_order_relaxed))
        .Label("code", kCodes[i] ? std::to_string(kCodes[i]) : "other");
  }
  uint64_t errors = 0;
  for (size_t i = 1; i < kCodes.size(); ++i) errors += replies_[i].load(std::memory_order_relaxed);
  out->Counter("pepnet_serve_errors_total", "Requests to /v1/score that were not scored.", errors);
  out->Counter("pepnet_serve_samples_total", "Samples scored.",
               samples_.load(std::memory_order_relaxed));
  out->Histogram("pepnet_serve_request_duration_seconds",
                 "Time to answer /v1/score, from its whole request to its reply.", latency_);
  uint64_t rows = 0, bytes = 0;
  std::shared_ptr<const ServedVersion> v = live_->Snapshot(&rows, &bytes);
  out->Gauge("pepnet_serve_ready", "1 once a model version is live.", v ? 1 : 0);
  if (v) {
    out->Gauge("pepnet_serve_model_version", "The live model version.", v->version);
    out->Gauge("pepnet_serve_model_pass", "The training pass of the live version.", v->pass);
    out->Gauge("pepnet_serve_model_rows", "Embedding rows of the live model.", rows);
    out->Gauge("pepnet_serve_model_bytes", "Bytes of the live model's serving table.", bytes);
    out->Gauge("pepnet_serve_model_bytes_per_row", "Bytes of the serving table per row.",
               rows ? double(bytes) / double(rows) : 0);
    out->Gauge("pepnet_serve_model_age_seconds",
               "Seconds since the live version was published (renamed into place).",
               NowUnix() - v->published_unix_s);
    out->Gauge("pepnet_serve_update_delay_seconds",
               "From the live version's publish to its going live here.",
               v->live_unix_s - v->published_unix_s);
    out->Gauge("pepnet_serve_update_read_seconds",
               "Reading and checking the live version's files (a delta or a whole chain).",
               v->read_seconds);
    out->Gauge("pepnet_serve_update_switch_seconds",
               "Requests held off while the live version was switched in (the write lock).",
               v->switch_seconds);
  }
  updater_->AddStats(out);
}

}  // namespace pepnet
