// pepnet_bench_dense_sync: the time of one dense step's sum of every worker's gradient,
// by design (docs/architecture.md, "The dense sum").
//
//   shards: what the cluster runs. --shards pepnet_ps processes of its own (with a
//           throwaway secret, as a cluster has one); each worker (a thread with its own
//           PsClient, as a worker process has) sends its slices with PsClient::DenseSum.
//   gloo:   an allreduce among the workers on Gloo's TCP transport (ring, chunked ring
//           and halving-doubling), each worker a thread with its own context; only when
//           the program was built with Gloo (libgloo-dev). A baseline: Gloo's pairs are
//           not authenticated, so the cluster cannot use them.
//
// Every design sums --floats floats (default: the bench model's dense parameters) for
// --steps steps after one warm-up step, with each of --workers workers; a step's time is
// from the moment every worker starts it to the moment the last one has the sum. Prints
// one line per design and worker count, and a JSON line last.
#include <gflags/gflags.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "common/ps_client.h"
#include "common/subprocess.h"
#include "proto/model_config.pb.h"
#include "proto/ps.pb.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

#ifdef PEPNET_BENCH_GLOO
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/allreduce_ring.h>
#include <gloo/allreduce_ring_chunked.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/hash_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>
#endif

DEFINE_string(config, "",
              "Model config whose dense parameters are summed (default: the bench model).");
DEFINE_uint64(floats, 0, "Floats per gradient; 0: the config's dense parameter count.");
DEFINE_string(workers, "1,2,4", "Worker counts to measure.");
DEFINE_int32(shards, 2, "Shard servers for the shards design.");
DEFINE_int32(server_threads, 1, "--threads of each shard server.");
DEFINE_int32(steps, 20, "Timed steps per design and worker count.");
DEFINE_string(designs, "shards,gloo", "Designs to measure.");

namespace {

using Clock = std::chrono::steady_clock;

int Fail(const std::string& why) {
  fprintf(stderr, "pepnet_bench_dense_sync: %s\n", why.c_str());
  return 1;
}

std::vector<int> ParseCounts(const std::string& list) {
  std::vector<int> out;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::atoi(item.c_str()));
  return out;
}

struct Figure {
  std::string design;
  int workers = 0;
  double median_ms = 0, min_ms = 0;
};

// Every worker thread waits here for the others (C++17 has no std::barrier).
class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void ArriveAndWait() {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != generation; });
  }

 private:
  const int count_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs `step(worker, s)` on every worker thread for warm-up + timed steps; a step's time
// runs from the barrier every worker passed to the last worker's end.
template <typename Step>
Figure Time(const std::string& design, int workers, Step step) {
  const int total = FLAGS_steps + 1;
  std::vector<std::vector<Clock::time_point>> ends(workers, std::vector<Clock::time_point>(total));
  std::vector<Clock::time_point> starts(total);
  Barrier sync(workers);
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      for (int s = 0; s < total; ++s) {
        sync.ArriveAndWait();
        if (w == 0) starts[s] = Clock::now();
        step(w, s);
        ends[w][s] = Clock::now();
        sync.ArriveAndWait();
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<double> ms;
  for (int s = 1; s < total; ++s) {
    Clock::time_point last = starts[s];
    for (int w = 0; w < workers; ++w) last = std::max(last, ends[w][s]);
    ms.push_back(std::chrono::duration<double, std::milli>(last - starts[s]).count());
  }
  Figure f;
  f.design = design;
  f.workers = workers;
  f.median_ms = Median(ms);
  f.min_ms = *std::min_element(ms.begin(), ms.end());
  return f;
}

struct Shards {
  std::string dir;
  std::vector<std::unique_ptr<pepnet::Subprocess>> servers;
  std::vector<std::string> addresses;
  pepnet::Secret secret;

  pepnet::Status Start(int count) {
    char tmpl[] = "/tmp/pepnet_bench_dense_sync.XXXXXX";
    if (mkdtemp(tmpl) == nullptr)
      return pepnet::Status::Internal("cannot create a temporary directory");
    dir = tmpl;
    std::ofstream(dir + "/table.pbtxt") << "slot { id: 0 dim: 8 }\n";
    const std::string secret_file = dir + "/secret";
    std::ofstream(secret_file) << "throwaway secret of pepnet_bench_dense_sync " << getpid()
                               << "\n";
    chmod(secret_file.c_str(), 0600);
    PEPNET_RETURN_IF_ERROR(pepnet::Secret::Load(secret_file, &secret));
    for (int s = 0; s < count; ++s) {
      servers.push_back(std::make_unique<pepnet::Subprocess>());
      const std::string port_file = dir + "/port-" + std::to_string(s);
      PEPNET_RETURN_IF_ERROR(servers[s]->Start(
          {pepnet::ExecutableDir() + "/pepnet_ps", "--port=0", "--host=127.0.0.1",
           "--port_file=" + port_file, "--table_config=" + dir + "/table.pbtxt",
           "--shard_id=" + std::to_string(s), "--num_shards=" + std::to_string(count),
           "--threads=" + std::to_string(FLAGS_server_threads), "--memory_limit_bytes=0",
           "--secret_file=" + secret_file},
          dir + "/ps-" + std::to_string(s) + ".log"));
      uint16_t port = 0;
      PEPNET_RETURN_IF_ERROR(pepnet::WaitForPortFile(port_file, 10000, servers[s].get(), &port));
      addresses.push_back("127.0.0.1:" + std::to_string(port));
    }
    return pepnet::Status::OK();
  }

  ~Shards() {
    for (auto& s : servers) {
      if (!s->running()) continue;
      s->Signal(SIGTERM);
      int code = 0;
      s->Wait(10000, &code);
    }
  }
};

pepnet::Status MeasureShards(const Shards& shards, int workers, uint64_t floats, uint32_t pass,
                             Figure* out) {
  pepnet::ClientOptions options;
  options.servers = shards.addresses;
  options.secret = shards.secret;
  options.role = pepnet::PeerRole::kCoordinator;
  std::unique_ptr<pepnet::PsClient> coordinator;
  PEPNET_RETURN_IF_ERROR(pepnet::PsClient::Connect(options, &coordinator));
  if (pass > 1) {
    std::vector<pepnet::proto::PassEndReply> ends;
    PEPNET_RETURN_IF_ERROR(coordinator->EndPass(pass - 1, &ends));
  }
  PEPNET_RETURN_IF_ERROR(coordinator->BeginPass(pass));
  options.role = pepnet::PeerRole::kWorker;
  std::vector<std::unique_ptr<pepnet::PsClient>> clients(workers);
  for (auto& c : clients) PEPNET_RETURN_IF_ERROR(pepnet::PsClient::Connect(options, &c));
  std::vector<std::vector<float>> grads(workers, std::vector<float>(floats, 1e-3f));
  std::vector<pepnet::Status> failures(workers);
  *out = Time("shards", workers, [&](int w, int s) {
    if (workers == 1) return;  // alone, a worker keeps its own gradient
    pepnet::DenseStepInfo step;
    step.pass = pass;
    step.step = s;
    step.worker_index = w;
    step.num_workers = workers;
    step.has_data = true;
    uint32_t with = 0;
    pepnet::Status st = clients[w]->DenseSum(step, &grads[w], &with, nullptr);
    if (!st.ok() && failures[w].ok()) failures[w] = st;
  });
  for (const pepnet::Status& st : failures) PEPNET_RETURN_IF_ERROR(st);
  return pepnet::Status::OK();
}

#ifdef PEPNET_BENCH_GLOO
std::vector<Figure> MeasureGloo(int workers, uint64_t floats, int round) {
  auto store = std::make_shared<gloo::rendezvous::HashStore>();
  gloo::transport::tcp::attr attr;
  attr.hostname = "127.0.0.1";
  std::vector<std::shared_ptr<gloo::rendezvous::Context>> contexts(workers);
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      auto device = gloo::transport::tcp::CreateDevice(attr);
      gloo::rendezvous::PrefixStore prefixed("round-" + std::to_string(round), *store);
      auto context = std::make_shared<gloo::rendezvous::Context>(w, workers);
      context->connectFullMesh(prefixed, device);
      contexts[w] = context;
    });
  }
  for (auto& t : threads) t.join();
  std::vector<std::vector<float>> grads(workers, std::vector<float>(floats, 1e-3f));
  std::vector<Figure> out;
  const auto run = [&](const std::string& name, auto make) {
    std::vector<std::unique_ptr<gloo::Algorithm>> algorithms(workers);
    for (int w = 0; w < workers; ++w) algorithms[w] = make(contexts[w], grads[w].data());
    out.push_back(Time(name, workers, [&](int w, int) {
      if (workers > 1) algorithms[w]->run();
    }));
  };
  const int count = static_cast<int>(floats);
  run("gloo ring", [&](const std::shared_ptr<gloo::Context>& c, float* p) {
    return std::make_unique<gloo::AllreduceRing<float>>(c, std::vector<float*>{p}, count);
  });
  run("gloo chunked ring", [&](const std::shared_ptr<gloo::Context>& c, float* p) {
    return std::make_unique<gloo::AllreduceRingChunked<float>>(c, std::vector<float*>{p}, count);
  });
  run("gloo halving-doubling", [&](const std::shared_ptr<gloo::Context>& c, float* p) {
    return std::make_unique<gloo::AllreduceHalvingDoubling<float>>(c, std::vector<float*>{p},
                                                                   count);
  });
  return out;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("pepnet_bench_dense_sync [--workers=1,2,4] [--shards=2]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  uint64_t floats = FLAGS_floats;
  if (floats == 0) {
    pepnet::proto::ModelConfig config;
    const std::string path = FLAGS_config.empty() ? pepnet::DefaultConfigPath() : FLAGS_config;
    pepnet::Status st = pepnet::LoadModelConfigFile(path, &config);
    if (!st.ok()) return Fail(st.ToString());
    floats = pepnet::DenseParamCount(config);
  }
  const std::vector<int> counts = ParseCounts(FLAGS_workers);
  for (int w : counts) {
    if (w < 1 || w > 64) return Fail("--workers counts must be in [1, 64]");
  }
  if (FLAGS_steps < 1 || FLAGS_shards < 1) return Fail("--steps and --shards must be >= 1");
  const bool shards_design = FLAGS_designs.find("shards") != std::string::npos;
  const bool gloo_design = FLAGS_designs.find("gloo") != std::string::npos;
  std::vector<Figure> figures;
  if (shards_design) {
    Shards shards;
    pepnet::Status st = shards.Start(FLAGS_shards);
    if (!st.ok()) return Fail(st.ToString() + " (see " + shards.dir + ")");
    uint32_t pass = 0;
    for (int w : counts) {
      Figure f;
      st = MeasureShards(shards, w, floats, ++pass, &f);
      if (!st.ok()) return Fail(st.ToString());
      f.design = "shards (" + std::to_string(FLAGS_shards) + ")";
      figures.push_back(f);
    }
  }
  if (gloo_design) {
#ifdef PEPNET_BENCH_GLOO
    int round = 0;
    for (int w : counts) {
      for (const Figure& f : MeasureGloo(w, floats, round++)) figures.push_back(f);
    }
#else
    fprintf(stderr, "pepnet_bench_dense_sync: built without Gloo (libgloo-dev); skipping it\n");
#endif
  }
  const double mb = 4.0 * floats / 1e6;
  std::string json = "{\"floats\":" + std::to_string(floats) + ",\"figures\":[";
  for (int w : counts) {
    if (w == 1) printf("workers  1: no sum (a lone worker keeps its own gradient)\n");
  }
  size_t printed = 0;
  for (size_t i = 0; i < figures.size(); ++i) {
    const Figure& f = figures[i];
    if (f.workers == 1) continue;
    printf("%-24s workers %2d: %8.2f ms a step (min %.2f), %7.0f MB/s of gradient per worker\n",
           f.design.c_str(), f.workers, f.median_ms, f.min_ms,
           f.median_ms > 0 ? mb / (f.median_ms / 1e3) : 0.0);
    char item[200];
    snprintf(item, sizeof(item), "%s{\"design\":\"%s\",\"workers\":%d,\"median_ms\":%.3f}",
             printed++ ? "," : "", f.design.c_str(), f.workers, f.median_ms);
    json += item;
  }
  json += "]}";
  printf("%s\n", json.c_str());
  return 0;
}
