#include "worker/gemm.h"

#include <Eigen/Core>
#include <cstdlib>

#ifdef PEPNET_HAVE_BLAS
#include <cblas.h>
#endif

namespace pepnet {
namespace {

template <typename T>
void EigenGemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda,
               const T* b, int ldb, T beta, T* c, int ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ConstMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  Eigen::Map<Mat, 0, Eigen::OuterStride<>> cm(c, m, n, Eigen::OuterStride<>(ldc));
  // beta == 0 must not read C: it may hold uninitialized memory (as in BLAS).
  if (beta == T(0)) {
    cm.setZero();
  } else if (beta != T(1)) {
    cm *= beta;
  }
  if (k == 0) return;
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

}  // namespace

template <>
void Gemm<double>(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a,
                  int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  if (m == 0 || n == 0) return;
  EigenGemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <>
void Gemm<float>(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
#ifdef PEPNET_HAVE_BLAS
  if (k > 0) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#endif
  EigenGemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

std::string GemmBackendDescription() {
#ifdef PEPNET_HAVE_BLAS
  std::string s = std::string("OpenBLAS (") + openblas_get_config() +
                  "; core: " + openblas_get_corename() + ")";
  if (const char* forced = std::getenv("OPENBLAS_CORETYPE")) {
    s += std::string("; OPENBLAS_CORETYPE=") + forced +
         " overrides the CPU's own kernels (unset it for full speed)";
  }
  return s;
#else
  return "Eigen (built without OpenBLAS)";
#endif
}

}  // namespace pepnet
