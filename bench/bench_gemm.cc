// pepnet_bench_gemm: the float GEMM kernels a training step runs, per library, on the bench
// model's shapes (configs/bench.pbtxt: E = 368, prior 416, gates as wide as their layer,
// towers 256-128-64), one product per thread with 1 and with 2 threads at once (each
// thread its own operands, as the trainer's threads have), and whether the results are
// bit-identical from run to run and between 1 and 2 threads.
//
// Every library is called row-major and single-threaded: the trainer splits a batch over
// its own threads, so a library's internal threading would only compete with them. Eigen
// and oneDNN are always measured; OpenBLAS and libxsmm when the build found them.
//
// Prints one line per library and shape set, and last a JSON line.
#include <gflags/gflags.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "worker/gemm.h"

#ifdef PEPNET_BENCH_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif
#ifdef PEPNET_BENCH_XSMM
#include <libxsmm.h>
#endif

DEFINE_string(rows, "512,128",
              "Rows per thread to measure (batch / threads: 1024 and 256 over 2 threads).");
DEFINE_int32(reps, 5, "Repetitions of the whole shape set; the median is reported.");
DEFINE_double(min_seconds, 0.3, "Least time of one repetition.");
DEFINE_bool(per_shape, false, "Also print each product's GFLOP/s on one thread.");

namespace pepnet {
namespace {

// One product of the step: C[m,n] = op(A) op(B), row-major.
struct Shape {
  const char* what;
  bool ta, tb;
  int m, n, k;
};

// The products of one thread's share of a training step (forward, weight gradients,
// input gradients) for `rows` samples.
std::vector<Shape> StepShapes(int rows) {
  const int e = 368, ep_in = 384, prior = 416, prior_emb = 48;
  std::vector<Shape> s;
  auto linear = [&](const char* what, int in, int out, int grad_in) {
    s.push_back({what, false, true, rows, out, in});                         // forward x W^T
    s.push_back({what, true, false, out, in, rows});                         // dW = dz^T x
    if (grad_in > 0) s.push_back({what, false, false, rows, grad_in, out});  // dx = dz W
  };
  linear("ep.fc1", ep_in, e, 16);
  linear("ep.fc2", e, e, e);
  for (int t = 0; t < 3; ++t) {
    for (int w : {368, 256, 128, 64}) {
      linear("pp.fc1", prior, w, prior_emb);
      linear("pp.fc2", w, w, w);
    }
    linear("tower", 368, 256, 368);
    linear("tower", 256, 128, 256);
    linear("tower", 128, 64, 128);
    linear("head", 64, 1, 64);
  }
  return s;
}

using GemmFn = std::function<void(const Shape&, const float*, const float*, float*)>;

struct Library {
  std::string name;
  GemmFn gemm;
  std::function<void()> per_thread_setup;
};

using PepnetGemm = void (*)(bool, bool, int, int, int, float, const float*, int, const float*, int,
                            float, float*, int);
GemmFn OfPepnetGemm(PepnetGemm gemm) {
  return [gemm](const Shape& s, const float* a, const float* b, float* c) {
    gemm(s.ta, s.tb, s.m, s.n, s.k, 1.f, a, s.ta ? s.m : s.k, b, s.tb ? s.k : s.n, 0.f, c, s.n);
  };
}

std::vector<Library> Libraries() {
  std::vector<Library> libs;
  // Eigen, and what the trainer runs: oneDNN's sgemm, one thread per caller.
  libs.push_back({"eigen", OfPepnetGemm(&EigenGemm<float>), [] {}});
#ifdef PEPNET_BENCH_OPENBLAS
  libs.push_back({"openblas",
                  [](const Shape& s, const float* a, const float* b, float* c) {
                    cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans,
                                s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k, 1.f, a,
                                s.ta ? s.m : s.k, b, s.tb ? s.k : s.n, 0.f, c, s.n);
                  },
                  [] { openblas_set_num_threads(1); }});
#endif
  libs.push_back({"onednn", OfPepnetGemm(&Gemm<float>), [] {}});
#ifdef PEPNET_BENCH_XSMM
  // Column-major: C^T = op(B)^T op(A)^T.
  libs.push_back({"libxsmm",
                  [](const Shape& s, const float* a, const float* b, float* c) {
                    const char ta = s.tb ? 'T' : 'N', tb = s.ta ? 'T' : 'N';
                    const libxsmm_blasint m = s.n, n = s.m, k = s.k;
                    const libxsmm_blasint lda = s.tb ? s.k : s.n, ldb = s.ta ? s.m : s.k;
                    const libxsmm_blasint ldc = s.n;
                    const float alpha = 1.f, beta = 0.f;
                    libxsmm_sgemm(&ta, &tb, &m, &n, &k, &alpha, b, &lda, a, &ldb, &beta, c, &ldc);
                  },
                  [] { libxsmm_init(); }});
#endif
  return libs;
}

// Operands of every shape, filled from a fixed seed.
struct Operands {
  std::vector<std::vector<float>> a, b, c;
  explicit Operands(const std::vector<Shape>& shapes) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (const Shape& s : shapes) {
      a.emplace_back(size_t(s.m) * s.k);
      b.emplace_back(size_t(s.k) * s.n);
      c.emplace_back(size_t(s.m) * s.n);
      for (float& x : a.back()) x = u(rng);
      for (float& x : b.back()) x = u(rng);
    }
  }
};

double Flops(const std::vector<Shape>& shapes) {
  double f = 0;
  for (const Shape& s : shapes) f += 2.0 * s.m * s.n * s.k;
  return f;
}

// Runs the shape set repeatedly for at least min_seconds on `threads` threads at once;
// returns GFLOP/s over all threads and leaves each thread's last results in outs.
double Run(const Library& lib, const std::vector<Shape>& shapes, int threads,
           std::vector<Operands>* outs) {
  std::vector<double> rates;
  for (int rep = 0; rep < FLAGS_reps; ++rep) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<int> rounds(threads, 0);
    std::vector<double> seconds(threads, 0);
    std::vector<std::thread> team;
    for (int t = 0; t < threads; ++t) {
      team.emplace_back([&, t] {
        lib.per_thread_setup();
        Operands& op = (*outs)[t];
        for (size_t i = 0; i < shapes.size(); ++i) {
          lib.gemm(shapes[i], op.a[i].data(), op.b[i].data(), op.c[i].data());
        }
        ready++;
        while (!go) std::this_thread::yield();
        const auto start = std::chrono::steady_clock::now();
        double elapsed = 0;
        while (elapsed < FLAGS_min_seconds) {
          for (size_t i = 0; i < shapes.size(); ++i) {
            lib.gemm(shapes[i], op.a[i].data(), op.b[i].data(), op.c[i].data());
          }
          rounds[t]++;
          elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        }
        seconds[t] = elapsed;
      });
    }
    while (ready < threads) std::this_thread::yield();
    go = true;
    for (auto& th : team) th.join();
    double rate = 0;
    for (int t = 0; t < threads; ++t) rate += rounds[t] * Flops(shapes) / seconds[t] / 1e9;
    rates.push_back(rate);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

bool SameResults(const Operands& x, const Operands& y) {
  for (size_t i = 0; i < x.c.size(); ++i) {
    if (std::memcmp(x.c[i].data(), y.c[i].data(), x.c[i].size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

int Main() {
  std::vector<int> row_counts;
  for (const char* p = FLAGS_rows.c_str(); *p;) {
    row_counts.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  std::string json = "{\"results\": [";
  bool first = true;
  for (int rows : row_counts) {
    const std::vector<Shape> shapes = StepShapes(rows);
    for (const Library& lib : Libraries()) {
      std::vector<Operands> one(1, Operands(shapes)), two(2, Operands(shapes));
      const double g1 = Run(lib, shapes, 1, &one);
      const double g2 = Run(lib, shapes, 2, &two);
      // Bit-identity: both threads of the 2-thread run, and the 1-thread run, computed the
      // same products from the same operands.
      const bool deterministic = SameResults(one[0], two[0]) && SameResults(two[0], two[1]);
      std::printf("%-9s rows %4d: 1 thread %6.1f GFLOP/s, 2 threads %6.1f GFLOP/s, %s\n",
                  lib.name.c_str(), rows, g1, g2,
                  deterministic ? "bit-identical" : "RESULTS DIFFER");
      char line[256];
      std::snprintf(line, sizeof(line),
                    "%s{\"library\": \"%s\", \"rows\": %d, \"gflops_1_thread\": %.1f, "
                    "\"gflops_2_threads\": %.1f, \"deterministic\": %s}",
                    first ? "" : ", ", lib.name.c_str(), rows, g1, g2,
                    deterministic ? "true" : "false");
      json += line;
      first = false;
      if (!FLAGS_per_shape) continue;
      for (const Shape& shape : shapes) {
        std::vector<Operands> single(1, Operands({shape}));
        std::printf("    %-7s %c%c m %4d n %4d k %4d: %6.1f GFLOP/s\n", shape.what,
                    shape.ta ? 'T' : 'N', shape.tb ? 'T' : 'N', shape.m, shape.n, shape.k,
                    Run(lib, {shape}, 1, &single));
      }
    }
  }
  std::printf("%s]}\n", json.c_str());
  return 0;
}

}  // namespace
}  // namespace pepnet

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  return pepnet::Main();
}
