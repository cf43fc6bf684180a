// Dense matrix products for the model, row-major: C = alpha * op(A) * op(B) + beta * C.
//
// float goes to OpenBLAS when the build found it (PEPNET_HAVE_BLAS): its AVX-512 sgemm
// kernels run about 1.5x faster than Eigen's on the model's shapes (docs/benchmarks.md).
// double (gradient checks) and builds without OpenBLAS use Eigen. The BLAS is the serial
// variant: the trainer runs one product per thread, so BLAS threads would only compete.
//
// Thread-safe: no state.
#ifndef PEPNET_WORKER_GEMM_H_
#define PEPNET_WORKER_GEMM_H_

#include <string>

namespace pepnet {

// op(A) is [m, k] and op(B) is [k, n]; lda, ldb and ldc are row strides in elements, so a
// block of columns of a wider matrix can be read or written in place.
template <typename T>
void Gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
          int ldb, T beta, T* c, int ldc);

// Which float GEMM this build uses, e.g. "OpenBLAS 0.3.21 (core: Cooperlake)" or "Eigen",
// plus a warning when OPENBLAS_CORETYPE overrides the kernels the CPU could run.
std::string GemmBackendDescription();

}  // namespace pepnet

#endif  // PEPNET_WORKER_GEMM_H_
