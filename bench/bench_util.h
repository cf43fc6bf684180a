// What the benchmark programs share: where the bench model's config is, and Zipf-drawn
// IDs (the reference's distribution of user, item and author IDs).
#ifndef PEPNET_BENCH_BENCH_UTIL_H_
#define PEPNET_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/subprocess.h"

namespace pepnet {

// configs/bench.pbtxt from the working directory or from the source tree the binary was
// built in.
inline std::string DefaultConfigPath() {
  for (const std::string& p :
       {std::string("configs/bench.pbtxt"), ExecutableDir() + "/../../configs/bench.pbtxt"}) {
    if (FILE* f = fopen(p.c_str(), "r")) {
      fclose(f);
      return p;
    }
  }
  return "configs/bench.pbtxt";
}

// Ranks 0..n-1 with P(r) ~ (r+1)^-s, scattered over the IDs by a permutation.
class ZipfIds {
 public:
  ZipfIds(uint64_t n, double s, std::mt19937_64* rng) : cdf_(n), perm_(n) {
    double sum = 0;
    for (uint64_t r = 0; r < n; ++r) cdf_[r] = sum += std::pow(r + 1.0, -s);
    for (double& c : cdf_) c /= sum;
    for (uint64_t r = 0; r < n; ++r) perm_[r] = r;
    std::shuffle(perm_.begin(), perm_.end(), *rng);
  }
  uint64_t operator()(std::mt19937_64* rng) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(*rng);
    const size_t r = std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin();
    return perm_[std::min(r, perm_.size() - 1)];
  }

 private:
  std::vector<double> cdf_;
  std::vector<uint64_t> perm_;
};

}  // namespace pepnet

#endif  // PEPNET_BENCH_BENCH_UTIL_H_
