// Dense matrix products for the model, row-major: C = alpha * op(A) * op(B) + beta * C,
// on Eigen's kernels. The strided form lets a product read or write a block of columns of
// a wider matrix in place (the trainable columns of a gate input, say) without copies.
//
// Eigen rather than a BLAS: with -march=native its AVX-512 kernels train this model as fast
// as OpenBLAS 0.3.21 on our benchmark, and two trainer threads calling Debian's OpenBLAS
// at once gave run-to-run different results (docs/benchmarks.md).
//
// Thread-safe: no state.
#ifndef PEPNET_WORKER_GEMM_H_
#define PEPNET_WORKER_GEMM_H_

namespace pepnet {

// op(A) is [m, k] and op(B) is [k, n]; lda, ldb and ldc are row strides in elements. With
// beta == 0, C is not read (it may be uninitialized).
template <typename T>
void Gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
          int ldb, T beta, T* c, int ldc);

}  // namespace pepnet

#endif  // PEPNET_WORKER_GEMM_H_
