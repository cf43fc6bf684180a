// Dense matrix products for the model, row-major: C = alpha * op(A) * op(B) + beta * C.
// The strided form lets a product read or write a block of columns of
// a wider matrix in place (the trainable columns of a gate input, say) without copies.
//
// float runs on oneDNN's sgemm, double (the gradient checks) on Eigen. oneDNN won on every
// product shape of the bench model against Eigen, OpenBLAS and libxsmm, one thread per
// product, and gives bit-identical results from run to run and whatever the other threads
// do (pepnet_bench_gemm, docs/benchmarks.md, "GEMM libraries").
//
// Thread-safe. Each calling thread runs its products alone (its OpenMP team is set to one
// thread on its first call): the trainer parallelizes over rows itself.
#ifndef PEPNET_WORKER_GEMM_H_
#define PEPNET_WORKER_GEMM_H_

namespace pepnet {

// op(A) is [m, k] and op(B) is [k, n]; lda, ldb and ldc are row strides in elements. With
// beta == 0, C is not read (it may be uninitialized).
template <typename T>
void Gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
          int ldb, T beta, T* c, int ldc);
template <>
void Gemm<float>(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc);
template <>
void Gemm<double>(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a,
                  int lda, const double* b, int ldb, double beta, double* c, int ldc);

// The same product on Eigen's kernels whatever T (the double Gemm's, and the float
// baseline pepnet_bench_gemm compares oneDNN with).
template <typename T>
void EigenGemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda,
               const T* b, int ldb, T beta, T* c, int ldc);

}  // namespace pepnet

#endif  // PEPNET_WORKER_GEMM_H_
