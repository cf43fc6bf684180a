// Adam for the dense PEPNet parameters (as PyTorch's torch.optim.Adam without weight
// decay: bias-corrected moments, eps outside the square root). Every worker applies the
// same update to the same summed gradients, so replicas stay bitwise identical.
#ifndef PEPNET_WORKER_ADAM_H_
#define PEPNET_WORKER_ADAM_H_

#include <algorithm>
#include <cmath>
#include <vector>

#include "worker/pepnet_model.h"

namespace pepnet {

struct AdamOptions {
  double learning_rate = 5e-6;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
};

template <typename T>
class Adam {
 public:
  // `like` gives the shapes of the parameters; the moments start at zero.
  Adam(const AdamOptions& options, const PepNetParams<T>& like)
      : options_(options), m_(Zero(like)), v_(Zero(like)) {
    m_.ForEach([this](const std::string&, Matrix<T>* x) { num_values_ += x->size(); },
               [this](const std::string&, RowVector<T>* x) { num_values_ += x->size(); });
  }

  void Step(PepNetParams<T>* params, PepNetParams<T>* grads) {
    BeginStep();
    UpdateRange(params, {grads}, 0, num_values());
  }

  // A step split over threads: BeginStep once, then UpdateRange on disjoint ranges of the
  // flattened parameters (concurrently if wanted); the gradient is the sum of `grads`,
  // added in order.
  void BeginStep() {
    ++step_;
    c1_ = T(1) - static_cast<T>(std::pow(options_.beta1, step_));
    c2_ = T(1) - static_cast<T>(std::pow(options_.beta2, step_));
  }
  void UpdateRange(PepNetParams<T>* params, const std::vector<PepNetParams<T>*>& grads,
                   size_t begin, size_t end) {
    const T lr = static_cast<T>(options_.learning_rate);
    const T b1 = static_cast<T>(options_.beta1), b2 = static_cast<T>(options_.beta2);
    const T eps = static_cast<T>(options_.epsilon);
    const T inv_c1 = T(1) / c1_, inv_c2 = T(1) / c2_;
    std::vector<T*> p, m, v;
    std::vector<std::vector<T*>> g(grads.size());
    std::vector<long> n;
    Collect(params, &p, &n);
    for (size_t j = 0; j < grads.size(); ++j) Collect(grads[j], &g[j], nullptr);
    Collect(&m_, &m, nullptr);
    Collect(&v_, &v, nullptr);
    size_t base = 0;
    for (size_t k = 0; k < p.size() && base < end; base += n[k], ++k) {
      const size_t lo = std::max(begin, base), hi = std::min(end, base + n[k]);
      if (lo >= hi) continue;
      T* pk = p[k] + (lo - base);
      T* mk = m[k] + (lo - base);
      T* vk = v[k] + (lo - base);
      const T* g0 = g[0][k] + (lo - base);
      T* g1 = grads.size() > 1 ? g[1][k] + (lo - base) : nullptr;
      const long count = static_cast<long>(hi - lo);
      // Parts beyond the second are folded into the second (threads > 2).
      for (size_t j = 2; j < grads.size(); ++j) {
        const T* gj = g[j][k] + (lo - base);
        for (long i = 0; i < count; ++i) g1[i] += gj[i];
      }
#pragma omp simd
      for (long i = 0; i < count; ++i) {
        T gi = g0[i];
        if (g1) gi += g1[i];
        mk[i] = b1 * mk[i] + (T(1) - b1) * gi;
        vk[i] = b2 * vk[i] + (T(1) - b2) * gi * gi;
        pk[i] -= lr * (mk[i] * inv_c1) / (std::sqrt(vk[i] * inv_c2) + eps);
      }
    }
  }

  // As UpdateRange, with the summed gradient given flattened (ForEach order).
  void UpdateRangeFlat(PepNetParams<T>* params, const T* grad, size_t begin, size_t end) {
    const T lr = static_cast<T>(options_.learning_rate);
    const T b1 = static_cast<T>(options_.beta1), b2 = static_cast<T>(options_.beta2);
    const T eps = static_cast<T>(options_.epsilon);
    const T inv_c1 = T(1) / c1_, inv_c2 = T(1) / c2_;
    std::vector<T*> p, m, v;
    std::vector<long> n;
    Collect(params, &p, &n);
    Collect(&m_, &m, nullptr);
    Collect(&v_, &v, nullptr);
    size_t base = 0;
    for (size_t k = 0; k < p.size() && base < end; base += n[k], ++k) {
      const size_t lo = std::max(begin, base), hi = std::min(end, base + n[k]);
      if (lo >= hi) continue;
      T* pk = p[k] + (lo - base);
      T* mk = m[k] + (lo - base);
      T* vk = v[k] + (lo - base);
      const T* gk = grad + lo;
      const long count = static_cast<long>(hi - lo);
#pragma omp simd
      for (long i = 0; i < count; ++i) {
        mk[i] = b1 * mk[i] + (T(1) - b1) * gk[i];
        vk[i] = b2 * vk[i] + (T(1) - b2) * gk[i] * gk[i];
        pk[i] -= lr * (mk[i] * inv_c1) / (std::sqrt(vk[i] * inv_c2) + eps);
      }
    }
  }

  size_t num_values() const { return num_values_; }

  long step() const { return step_; }

  // The moments flattened in ForEach order, and their replacement with the step count
  // they go with (a restored checkpoint); false if the sizes do not fit.
  void FlattenMoments(std::vector<T>* m, std::vector<T>* v) const {
    Flatten(m_, m);
    Flatten(v_, v);
  }
  bool LoadMoments(const std::vector<T>& m, const std::vector<T>& v, long step) {
    if (m.size() != num_values_ || v.size() != num_values_ || step < 0) return false;
    Unflatten(m, &m_);
    Unflatten(v, &v_);
    step_ = step;
    // What BeginStep last computed, so a restored optimizer continues bit for bit.
    c1_ = step_ > 0 ? T(1) - static_cast<T>(std::pow(options_.beta1, step_)) : T(1);
    c2_ = step_ > 0 ? T(1) - static_cast<T>(std::pow(options_.beta2, step_)) : T(1);
    return true;
  }

 private:
  static PepNetParams<T> Zero(const PepNetParams<T>& like) {
    PepNetParams<T> z = like;
    z.ForEach([](const std::string&, Matrix<T>* m) { m->setZero(); },
              [](const std::string&, RowVector<T>* v) { v->setZero(); });
    return z;
  }
  static void Flatten(const PepNetParams<T>& p, std::vector<T>* out) {
    out->clear();
    PepNetParams<T>& params = const_cast<PepNetParams<T>&>(p);
    params.ForEach([&](const std::string&,
                       Matrix<T>* x) { out->insert(out->end(), x->data(), x->data() + x->size()); },
                   [&](const std::string&, RowVector<T>* x) {
                     out->insert(out->end(), x->data(), x->data() + x->size());
                   });
  }
  static void Unflatten(const std::vector<T>& in, PepNetParams<T>* p) {
    size_t at = 0;
    p->ForEach(
        [&](const std::string&, Matrix<T>* x) {
          std::copy(in.begin() + at, in.begin() + at + x->size(), x->data());
          at += x->size();
        },
        [&](const std::string&, RowVector<T>* x) {
          std::copy(in.begin() + at, in.begin() + at + x->size(), x->data());
          at += x->size();
        });
  }
  static void Collect(PepNetParams<T>* params, std::vector<T*>* data, std::vector<long>* sizes) {
    params->ForEach(
        [&](const std::string&, Matrix<T>* m) {
          data->push_back(m->data());
          if (sizes) sizes->push_back(m->size());
        },
        [&](const std::string&, RowVector<T>* v) {
          data->push_back(v->data());
          if (sizes) sizes->push_back(v->size());
        });
  }

  AdamOptions options_;
  PepNetParams<T> m_, v_;
  size_t num_values_ = 0;
  long step_ = 0;
  T c1_ = 1, c2_ = 1;
};

}  // namespace pepnet

#endif  // PEPNET_WORKER_ADAM_H_
