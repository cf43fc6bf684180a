// Gemm (oneDNN for float, Eigen for double) against a plain triple loop: every
// transposition, operands and output read or written as column blocks of wider matrices,
// beta 0 over garbage, beta 1 accumulating, an empty inner dimension; and the same float
// product bit-identical whether run alone or on two threads at once.
#include "worker/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <thread>
#include <vector>

namespace pepnet {
namespace {

// op(X)[i][p] of a row-major X with row stride ld.
template <typename T>
T At(const std::vector<T>& x, bool trans, int ld, int i, int p) {
  return trans ? x[size_t(p) * ld + i] : x[size_t(i) * ld + p];
}

template <typename T>
void CheckAgainstLoop(bool ta, bool tb, T beta, double tolerance) {
  const int m = 37, n = 29, k = 53;
  // Operands are blocks of wider matrices: strides exceed their widths.
  const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 7;
  std::mt19937 rng(ta * 2 + tb);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<T> a(size_t(ta ? k : m) * lda), b(size_t(tb ? n : k) * ldb), c(size_t(m) * ldc);
  for (T& x : a) x = T(u(rng));
  for (T& x : b) x = T(u(rng));
  for (T& x : c) x = beta == T(0) ? std::numeric_limits<T>::quiet_NaN() : T(u(rng));
  const std::vector<T> c0 = c;
  const T alpha = T(0.75);
  Gemm<T>(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < ldc; ++j) {
      const size_t at = size_t(i) * ldc + j;
      if (j >= n) {  // outside the block: untouched
        EXPECT_TRUE(std::isnan(c[at]) ? std::isnan(c0[at]) : c[at] == c0[at]) << i << "," << j;
        continue;
      }
      double want = beta == T(0) ? 0.0 : double(beta) * c0[at];
      for (int p = 0; p < k; ++p) {
        want += double(alpha) * At(a, ta, lda, i, p) * At(b, tb, ldb, p, j);
      }
      ASSERT_NEAR(c[at], want, tolerance) << "ta " << ta << " tb " << tb << " at " << i << "," << j;
    }
  }
}

TEST(GemmTest, FloatMatchesTheLoopForEveryTransposition) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      CheckAgainstLoop<float>(ta, tb, 0.0f, 1e-4);
      CheckAgainstLoop<float>(ta, tb, 1.0f, 1e-4);
      CheckAgainstLoop<float>(ta, tb, 0.5f, 1e-4);
    }
  }
}

TEST(GemmTest, DoubleMatchesTheLoopForEveryTransposition) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      CheckAgainstLoop<double>(ta, tb, 0.0, 1e-12);
      CheckAgainstLoop<double>(ta, tb, 1.0, 1e-12);
    }
  }
}

TEST(GemmTest, AnEmptyInnerDimensionScalesTheOutput) {
  std::vector<float> c = {std::nanf(""), 2, 3, 4};
  Gemm<float>(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 0.f, c.data(), 2);
  EXPECT_EQ(c, std::vector<float>({0, 0, 0, 0}));
  c = {1, 2, 3, 4};
  Gemm<float>(false, false, 2, 2, 0, 1.f, nullptr, 1, nullptr, 2, 2.f, c.data(), 2);
  EXPECT_EQ(c, std::vector<float>({2, 4, 6, 8}));
}

// Training's bit-identity rests on this: a product's result does not depend on what the
// other trainer threads are doing.
TEST(GemmTest, FloatResultsAreTheSameAloneAndOnTwoThreadsAtOnce) {
  const int m = 512, n = 368, k = 416;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> a(size_t(m) * k), b(size_t(n) * k);
  for (float& x : a) x = u(rng);
  for (float& x : b) x = u(rng);
  auto product = [&](std::vector<float>* c) {
    c->assign(size_t(m) * n, 0.f);
    Gemm<float>(false, true, m, n, k, 1.f, a.data(), k, b.data(), k, 0.f, c->data(), n);
  };
  std::vector<float> alone, first, second;
  product(&alone);
  for (int round = 0; round < 3; ++round) {
    std::thread other([&] { product(&second); });
    product(&first);
    other.join();
    ASSERT_EQ(first, alone);
    ASSERT_EQ(second, alone);
  }
}

}  // namespace
}  // namespace pepnet
