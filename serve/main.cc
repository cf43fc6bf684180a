// pepnet_serve: scores requests with the newest published model version and takes every
// new version as it is published (docs/operations.md, "Serving").
//
//   pepnet_serve --model_dir=DIR --port=P [--model_version=N]
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <signal.h>

#include <cstdio>
#include <memory>

#include "common/admin.h"
#include "common/auth.h"
#include "common/env.h"
#include "common/stats.h"
#include "serve/live_model.h"
#include "serve/model_updater.h"
#include "serve/serve_api.h"
#include "worker/trainer.h"

DEFINE_string(model_dir, "", "The publish folder of a cluster (pepnet_coord --publish_dir).");
DEFINE_int32(port, 0, "HTTP port; 0 picks a free one (logged, see --port_file).");
DEFINE_string(port_file, "", "If set, the port is written here once serving.");
DEFINE_string(host, "127.0.0.1",
              "Address to listen on. Anything but loopback needs --secret_file: requests "
              "then carry its token (pepnet_ctl serve_token).");
DEFINE_string(secret_file, "",
              "The cluster's shared secret (docs/security.md). With it /v1/score and /v1/model "
              "answer only requests with 'Authorization: Bearer <pepnet_ctl serve_token>'.");
DEFINE_uint64(model_version, 0,
              "Pin this version (roll back to it): load it and take no newer one; 0 = follow "
              "the newest.");
DEFINE_int32(poll_ms, 200, "How often --model_dir is looked at for a new version.");
DEFINE_int32(threads, 2, "HTTP threads; requests are parsed and scored on them.");
DEFINE_uint64(max_body_bytes, 4 << 20, "Largest request body (413 beyond).");
DEFINE_uint64(max_samples_per_request, 4096, "Most samples in one /v1/score request (400 beyond).");
DEFINE_int32(request_timeout_ms, 10000,
             "A request must arrive whole, and its reply be written, within this long.");
DEFINE_int32(max_connections, 256, "Open connections at most (503 beyond).");

namespace {
int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_serve: %s\n", message.c_str());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("pepnet_serve --model_dir=DIR --port=P");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  using namespace pepnet;
  if (FLAGS_model_dir.empty()) return Fail("--model_dir is required");
  if (FLAGS_port < 0 || FLAGS_port > 65535) return Fail("--port must be in [0, 65535]");
  if (FLAGS_poll_ms < 1) return Fail("--poll_ms must be >= 1");
  if (FLAGS_threads < 1 || FLAGS_threads > 256) return Fail("--threads must be in [1, 256]");
  if (FLAGS_max_samples_per_request < 1) return Fail("--max_samples_per_request must be >= 1");
  if (FLAGS_max_body_bytes < 64) return Fail("--max_body_bytes must be >= 64");
  if (FLAGS_request_timeout_ms < 1) return Fail("--request_timeout_ms must be >= 1");
  if (FLAGS_max_connections < 1) return Fail("--max_connections must be >= 1");
  Secret secret;
  Status st = Secret::Load(FLAGS_secret_file, &secret);
  if (st.ok()) st = CheckListenSecurity(FLAGS_host, secret, "--host");
  if (!st.ok()) return Fail(st.message());
  const std::string token = secret.empty() ? "" : ServeToken(secret);
  KeepLargeAllocationsInHeap();

  // Signals are taken by sigwait below, not by whichever thread they would interrupt.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  LiveModel live;
  ModelUpdaterOptions updater_options;
  updater_options.model_dir = FLAGS_model_dir;
  updater_options.pin_version = FLAGS_model_version;
  updater_options.poll_ms = FLAGS_poll_ms;
  ModelUpdater updater(updater_options, &live);
  // The first version is loaded before the port opens, so that a process that is up
  // serves at once; a folder with no version yet is waited on, ready or not.
  st = updater.PollOnce();
  if (!st.ok()) return Fail(st.message());

  ServeApiOptions api_options;
  api_options.max_samples_per_request = FLAGS_max_samples_per_request;
  api_options.pinned = FLAGS_model_version != 0;
  ServeApi api(api_options, &live, &updater);

  HttpServerOptions http;
  http.host = FLAGS_host;
  http.port = FLAGS_port;
  http.threads = FLAGS_threads;
  http.max_body_bytes = FLAGS_max_body_bytes;
  http.allow_post = true;
  http.request_timeout_ms = FLAGS_request_timeout_ms;
  http.max_connections = FLAGS_max_connections;
  http.what = "--port";
  HttpServer server(http);
  AdminHooks hooks;
  hooks.role = "serving " + FLAGS_model_dir;
  hooks.ready = [&] {
    if (live.version()) return Status::OK();
    return Status::Unavailable(updater.not_ready_reason());
  };
  hooks.status = [&] {
    std::vector<std::pair<std::string, std::string>> rows;
    auto v = live.version();
    rows.emplace_back("model version", v ? std::to_string(v->version) : "none");
    rows.emplace_back("last refusal", updater.last_refusal());
    return rows;
  };
  hooks.metrics = [&](StatSet* out) { api.AddStats(out); };
  auto guarded = [&token](HttpHandler handler) -> HttpHandler {
    return [&token, handler](const HttpRequest& request) {
      if (!token.empty() && !BearerMatches(request.authorization, token)) {
        return HttpResponse{401, "application/json",
                            "{\"error\": \"this server has a secret: send 'Authorization: Bearer "
                            "<token>' (pepnet_ctl serve_token)\"}\n"};
      }
      return handler(request);
    };
  };
  hooks.more["/v1/score"] = guarded([&](const HttpRequest& r) { return api.Score(r); });
  hooks.more["/v1/model"] = guarded([&](const HttpRequest& r) { return api.Model(r); });
  AddAdminHandlers("pepnet_serve", std::move(hooks), &server);
  st = server.Start();
  if (!st.ok()) return Fail(st.message());
  if (!FLAGS_port_file.empty()) {
    st = WriteFileDurably(Env::Default(), FLAGS_port_file, std::to_string(server.port()) + "\n");
    if (!st.ok()) return Fail("--port_file: " + st.message());
  }
  LOG(INFO) << "pepnet_serve: serving " << FLAGS_model_dir << " on http://" << FLAGS_host << ":"
            << server.port() << "/ (POST /v1/score, GET /v1/model, /healthz, /readyz, /metrics)"
            << (FLAGS_model_version ? " pinned to version " + std::to_string(FLAGS_model_version)
                                    : std::string());
  updater.Start();

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  LOG(INFO) << "pepnet_serve: stopping on signal " << signal_number;
  updater.Stop();
  server.Stop();
  return 0;
}
