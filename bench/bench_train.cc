// pepnet_bench_train: PEPNet training and inference throughput in one process (local
// embedding table), on synthetic batches generated before timing with the distributions of
// the PyTorch reference's bench (Zipf user/item/author IDs, uniform other slots, like /
// follow / forward positive rates 0.3 / 0.05 / 0.1).
//
// Prints one line per measurement, the machine's GEMM roofline, and last a JSON line:
//   {"measurements": [{"mode": ..., "threads": ..., "batch": ..., "train_samples_per_s": ...,
//                      "infer_samples_per_s": ...}, ...], "roofline_gflops": ..., ...}
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "common/subprocess.h"
#include "proto/model_config.pb.h"
#include "worker/data_reader.h"
#include "worker/feature_hash.h"
#include "worker/gemm.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

DEFINE_string(config, "", "Model config; default configs/bench.pbtxt of the source tree.");
DEFINE_string(threads, "1,2", "Thread counts to measure, comma-separated.");
DEFINE_string(batch, "1024,256", "Batch sizes to measure, comma-separated.");
DEFINE_string(modes, "train,infer", "What to measure: train, infer or both.");
DEFINE_int32(batches, 40, "Timed batches per repetition.");
DEFINE_int32(warmup, 10, "Untimed batches before each repetition.");
DEFINE_int32(reps, 3, "Repetitions; the median is reported.");
DEFINE_int32(pool, 64, "Distinct synthetic batches, cycled.");
DEFINE_double(zipf, 1.05, "Zipf exponent of the user, item and author IDs.");
DEFINE_uint64(seed, 1, "Seed of data and model.");
DEFINE_double(roofline_gflops, 0,
              "GEMM roofline to compare with (e.g. the PyTorch reference's gemm_roofline.py "
              "figure); 0 = measure the float GEMM 1024^3 here, one product per thread.");

namespace pepnet {
namespace {

std::vector<int> IntList(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(std::stoi(item));
  }
  return out;
}

// Vocabularies by role, as in the reference: domain = the domain count, user 100k,
// item 200k, author 20k, others 1k.
std::vector<Batch> MakeBatches(const proto::ModelConfig& config, int batch_size, int count,
                               uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int num_slots = config.slot_size(), num_tasks = config.task_size();
  std::vector<std::unique_ptr<ZipfIds>> zipf(num_slots);
  std::vector<int> vocab(num_slots);
  for (int s = 0; s < num_slots; ++s) {
    switch (config.slot(s).role()) {
      case proto::DOMAIN:
        vocab[s] = config.num_domains();
        break;
      case proto::USER:
        vocab[s] = 100000;
        break;
      case proto::ITEM:
        vocab[s] = 200000;
        break;
      case proto::AUTHOR:
        vocab[s] = 20000;
        break;
      default:
        vocab[s] = 1000;
    }
    const proto::SlotRole role = config.slot(s).role();
    if (role == proto::USER || role == proto::ITEM || role == proto::AUTHOR) {
      zipf[s].reset(new ZipfIds(vocab[s], FLAGS_zipf, &rng));
    }
  }
  const double rates[] = {0.3, 0.05, 0.1};
  std::vector<Batch> batches(count);
  for (Batch& b : batches) {
    b.Reset(num_slots);
    b.size = batch_size;
    for (int i = 0; i < batch_size; ++i) {
      uint32_t domain = 0;
      for (int s = 0; s < num_slots; ++s) {
        const int id =
            zipf[s] ? (*zipf[s])(&rng) : std::uniform_int_distribution<int>(0, vocab[s] - 1)(rng);
        if (config.slot(s).role() == proto::DOMAIN) domain = id;
        if (config.slot(s).role() == proto::USER) b.user.push_back(id);
        const std::string value = std::to_string(id);
        b.slot_keys[s].push_back(
            FeatureKeyOf(config.slot(s).id(), value.data(), value.size(), config.slot_bits()));
        b.slot_offsets[s].push_back(static_cast<uint32_t>(b.slot_keys[s].size()));
      }
      if (b.user.size() <= static_cast<size_t>(i)) b.user.push_back(0);
      b.domain.push_back(domain);
      for (int t = 0; t < num_tasks; ++t) {
        const double rate = t < 3 ? rates[t] : 0.1;
        b.labels.push_back(std::uniform_real_distribution<double>(0, 1)(rng) < rate ? 1 : 0);
        b.label_mask.push_back(1);
      }
    }
  }
  return batches;
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// sgemm 1024^3 on `threads` threads at once (each its own product, as the trainer runs
// them), in GFLOP/s.
double MeasureRoofline(int threads) {
  const int n = 1024;
  std::vector<double> gflops(threads);
  std::vector<std::thread> team;
  for (int t = 0; t < threads; ++t) {
    team.emplace_back([&, t] {
      std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
      Gemm<float>(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
      int reps = 0;
      const auto start = std::chrono::steady_clock::now();
      do {
        Gemm<float>(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
        ++reps;
      } while (Seconds(start) < 1.0);
      gflops[t] = 2.0 * n * n * n * reps / Seconds(start) / 1e9;
    });
  }
  for (std::thread& t : team) t.join();
  double sum = 0;
  for (double g : gflops) sum += g;
  return sum;
}

// FLOPs per sample: the forward pass (2 * in * out per linear layer), and what a training
// step executes here: forward, weight gradients, and input gradients only where they reach
// something trainable (not the stop-gradient columns of the gate inputs).
struct Flops {
  double forward = 0, train_executed = 0, train_nominal = 0;
};

Flops CountFlops(const proto::ModelConfig& config) {
  PepNet<float> net(ShapeOf(config));
  PepNetParams<float> p = net.ZeroParams();
  int domain_width = 0, prior_emb_width = 0;
  for (const auto& s : config.slot()) {
    if (s.role() == proto::DOMAIN) domain_width += s.dim();
    if (s.role() == proto::USER || s.role() == proto::ITEM || s.role() == proto::AUTHOR) {
      prior_emb_width += s.dim();
    }
  }
  Flops f;
  p.ForEach(
      [&](const std::string& name, Matrix<float>* w) {
        const double io = double(w->rows()) * w->cols();
        f.forward += 2 * io;
        double input_cols = w->cols();
        if (name == "ep_gate.fc1.weight") input_cols = domain_width;
        if (name.rfind("pp_gates.", 0) == 0 && name.find(".fc1.") != std::string::npos) {
          input_cols = prior_emb_width;
        }
        f.train_executed += 4 * io + 2.0 * w->rows() * input_cols;
      },
      [](const std::string&, RowVector<float>*) {});
  f.train_nominal = 3 * f.forward;
  return f;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Measurement {
  std::string mode;
  int threads, batch;
  double samples_per_s;
};

int Run() {
  proto::ModelConfig config;
  const std::string path = FLAGS_config.empty() ? DefaultConfigPath() : FLAGS_config;
  Status st = LoadModelConfigFile(path, &config);
  if (!st.ok()) {
    fprintf(stderr, "pepnet_bench_train: %s\n", st.ToString().c_str());
    return 1;
  }
  const Flops flops = CountFlops(config);
  const std::vector<int> thread_counts = IntList(FLAGS_threads);
  const std::vector<int> batch_sizes = IntList(FLAGS_batch);
  const bool train = FLAGS_modes.find("train") != std::string::npos;
  const bool infer = FLAGS_modes.find("infer") != std::string::npos;
  printf("pepnet_bench_train: config %s\n", path.c_str());
  printf("FLOPs/sample: forward %.3f M; training %.3f M executed (%.3f M nominal, 3x forward)\n",
         flops.forward / 1e6, flops.train_executed / 1e6, flops.train_nominal / 1e6);
  fflush(stdout);

  std::vector<Measurement> results;
  for (int batch : batch_sizes) {
    const std::vector<Batch> pool = MakeBatches(config, batch, FLAGS_pool, FLAGS_seed);
    for (int threads : thread_counts) {
      for (const std::string mode : {"train", "infer"}) {
        if ((mode == "train" && !train) || (mode == "infer" && !infer)) continue;
        std::unique_ptr<EmbeddingStore> store;
        st = MakeLocalStore(config, FLAGS_seed, &store);
        if (!st.ok()) {
          fprintf(stderr, "pepnet_bench_train: %s\n", st.ToString().c_str());
          return 1;
        }
        Trainer trainer(config, store.get(), FLAGS_seed, threads);
        std::vector<std::string> tasks;
        for (const auto& t : config.task()) tasks.push_back(t.name());
        PassMetrics metrics(tasks, config.num_domains());
        std::vector<float> scores;
        size_t next = 0;
        auto step = [&] {
          const Batch& b = pool[next++ % pool.size()];
          Status s =
              mode == "train" ? trainer.TrainBatch(b, &metrics) : trainer.Predict(b, &scores);
          CHECK(s.ok()) << s.ToString();
        };
        // Untimed: one pass over the pool creates every row, then the warmup.
        for (size_t i = 0; i < pool.size(); ++i) step();
        std::vector<double> rates;
        for (int rep = 0; rep < FLAGS_reps; ++rep) {
          for (int i = 0; i < FLAGS_warmup; ++i) step();
          const auto start = std::chrono::steady_clock::now();
          for (int i = 0; i < FLAGS_batches; ++i) step();
          rates.push_back(double(FLAGS_batches) * batch / Seconds(start));
        }
        const double rate = Median(rates);
        const double per_sample = mode == "train" ? flops.train_executed : flops.forward;
        printf("%-5s threads=%d batch=%-4d %9.0f samples/s  (%.0f GFLOP/s executed; reps:",
               mode.c_str(), threads, batch, rate, rate * per_sample / 1e9);
        for (double r : rates) printf(" %.0f", r);
        printf(")\n");
        fflush(stdout);
        results.push_back({mode, threads, batch, rate});
      }
    }
  }

  const int max_threads = *std::max_element(thread_counts.begin(), thread_counts.end());
  const bool measured = FLAGS_roofline_gflops <= 0;
  const double roofline = measured ? MeasureRoofline(max_threads) : FLAGS_roofline_gflops;
  const double roofline_samples = roofline * 1e9 / flops.train_nominal;
  printf(
      "roofline: %.0f GFLOP/s (%s, %d threads) = %.0f trained samples/s at %.2f MFLOP "
      "nominal\n",
      roofline, measured ? "sgemm 1024^3 measured here" : "given", max_threads, roofline_samples,
      flops.train_nominal / 1e6);
  for (const Measurement& m : results) {
    if (m.mode == "train" && m.threads == max_threads) {
      printf("train threads=%d batch=%d: %.0f%% of the roofline\n", m.threads, m.batch,
             100.0 * m.samples_per_s / roofline_samples);
    }
  }

  std::ostringstream json;
  json << "{\"measurements\": [";
  for (size_t i = 0; i < results.size(); ++i) {
    const Measurement& m = results[i];
    json << (i ? ", " : "") << "{\"mode\": \"" << m.mode << "\", \"threads\": " << m.threads
         << ", \"batch\": " << m.batch << ", \"" << m.mode
         << "_samples_per_s\": " << static_cast<long>(m.samples_per_s);
    if (m.mode == "train") {
      json << ", \"roofline_fraction\": "
           << (m.threads == max_threads ? m.samples_per_s / roofline_samples : 0);
    }
    json << "}";
  }
  json << "], \"roofline_gflops\": " << static_cast<long>(roofline)
       << ", \"roofline_threads\": " << max_threads
       << ", \"train_mflop_per_sample_nominal\": " << flops.train_nominal / 1e6
       << ", \"train_mflop_per_sample_executed\": " << flops.train_executed / 1e6 << "}";
  printf("%s\n", json.str().c_str());
  return 0;
}

}  // namespace
}  // namespace pepnet

int main(int argc, char** argv) {
  gflags::SetUsageMessage("pepnet_bench_train [--threads=1,2 --batch=1024,256 ...]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  return pepnet::Run();
}
