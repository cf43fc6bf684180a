#include "worker/gemm.h"

#include <dnnl.h>
#include <glog/logging.h>
#include <omp.h>

#include <Eigen/Core>

namespace pepnet {
namespace {

template <typename T>
void ScaleOutput(int m, int n, T beta, T* c, int ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<Mat, 0, Eigen::OuterStride<>> cm(c, m, n, Eigen::OuterStride<>(ldc));
  if (beta == T(0)) {
    cm.setZero();
  } else if (beta != T(1)) {
    cm *= beta;
  }
}

// oneDNN runs its products on an OpenMP team of the calling thread; the trainer's threads
// each call it for their own rows, so each must run its products alone, or every call would
// put two threads on each core.
void RunProductsOnThisThreadOnly() {
  thread_local const bool alone = [] {
    omp_set_num_threads(1);
    return true;
  }();
  (void)alone;
}

}  // namespace

template <typename T>
void EigenGemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda,
               const T* b, int ldb, T beta, T* c, int ldc) {
  if (m == 0 || n == 0) return;
  ScaleOutput(m, n, beta, c, ldc);
  if (k == 0) return;
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ConstMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  Eigen::Map<Mat, 0, Eigen::OuterStride<>> cm(c, m, n, Eigen::OuterStride<>(ldc));
  const ConstMap am(a, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  const ConstMap bm(b, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  if (trans_a && trans_b) {
    cm.noalias() += alpha * am.transpose() * bm.transpose();
  } else if (trans_a) {
    cm.noalias() += alpha * am.transpose() * bm;
  } else if (trans_b) {
    cm.noalias() += alpha * am * bm.transpose();
  } else {
    cm.noalias() += alpha * am * bm;
  }
}

template <>
void Gemm<float>(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) return ScaleOutput(m, n, beta, c, ldc);
  RunProductsOnThisThreadOnly();
  const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a,
                                      lda, b, ldb, beta, c, ldc);
  CHECK_EQ(st, dnnl_success) << "dnnl_sgemm " << m << "x" << n << "x" << k << " lda " << lda
                             << " ldb " << ldb << " ldc " << ldc;
}

template <>
void Gemm<double>(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a,
                  int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  EigenGemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template void EigenGemm<float>(bool, bool, int, int, int, float, const float*, int, const float*,
                               int, float, float*, int);
template void EigenGemm<double>(bool, bool, int, int, int, double, const double*, int,
                                const double*, int, double, double*, int);

}  // namespace pepnet
