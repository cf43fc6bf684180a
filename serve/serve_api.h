// ServeApi: the HTTP endpoints of pepnet_serve that score and describe the model
// (docs/operations.md, "Serving"):
//
//   POST /v1/score  {"samples": [...]} -> {"version": N, "predictions": [{task: p}, ...]}
//   GET  /v1/model  the live version, its table's size, its freshness, the refusals
//
// and its figures for /metrics. Replies are JSON; an error is {"error": "..."} with 400
// (the request: the reason names the field), 405 (the method), 503 (no version loaded
// yet) or 500.
//
// Threading: the handlers run on the HTTP server's threads, any number at once; each
// request parses, reads its rows under the live model's read lock and computes on its own
// thread, so requests use every server thread.
#ifndef PEPNET_SERVE_SERVE_API_H_
#define PEPNET_SERVE_SERVE_API_H_

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/http_server.h"
#include "common/latency_histogram.h"

namespace pepnet {
namespace proto {
class ModelConfig;
}
class LiveModel;
class ModelUpdater;
class Scorer;
class ScoreRequestParser;
class StatSet;

struct ServeApiOptions {
  size_t max_samples_per_request = 4096;
  bool pinned = false;
};

class ServeApi {
 public:
  // `live` and `updater` are borrowed and outlive the API.
  ServeApi(ServeApiOptions options, const LiveModel* live, const ModelUpdater* updater);
  ~ServeApi();

  HttpResponse Score(const HttpRequest& request);
  HttpResponse Model(const HttpRequest& request);
  void AddStats(StatSet* out) const;

 private:
  struct Frontend;
  // The scorer and parsers of the served model, made when the first version is live (the
  // model config is fixed from then on: other configs are refused).
  std::shared_ptr<Frontend> FrontendFor(const proto::ModelConfig& config);
  HttpResponse Reply(int code, std::string body);

  const ServeApiOptions options_;
  const LiveModel* const live_;
  const ModelUpdater* const updater_;
  std::mutex mu_;
  std::shared_ptr<Frontend> frontend_;

  LatencyHistogram latency_;
  std::atomic<uint64_t> samples_{0};
  // Replies of /v1/score by status code.
  static constexpr std::array<int, 6> kCodes = {200, 400, 405, 500, 503, 0};
  std::array<std::atomic<uint64_t>, kCodes.size()> replies_{};
};

}  // namespace pepnet

#endif  // PEPNET_SERVE_SERVE_API_H_
