// Adam for the dense PEPNet parameters (as PyTorch's torch.optim.Adam without weight
// decay: bias-corrected moments, eps outside the square root). Every worker applies the
// same update to the same summed gradients, so replicas stay bitwise identical.
#ifndef PEPNET_WORKER_ADAM_H_
#define PEPNET_WORKER_ADAM_H_

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
      : options_(options), m_(Zero(like)), v_(Zero(like)) {}

  void Step(PepNetParams<T>* params, PepNetParams<T>* grads) {
    ++step_;
    const T lr = static_cast<T>(options_.learning_rate);
    const T b1 = static_cast<T>(options_.beta1), b2 = static_cast<T>(options_.beta2);
    const T eps = static_cast<T>(options_.epsilon);
    const T c1 = T(1) - static_cast<T>(std::pow(options_.beta1, step_));
    const T c2 = T(1) - static_cast<T>(std::pow(options_.beta2, step_));
    std::vector<T*> p, g, m, v;
    std::vector<long> n;
    Collect(params, &p, &n);
    Collect(grads, &g, nullptr);
    Collect(&m_, &m, nullptr);
    Collect(&v_, &v, nullptr);
    for (size_t k = 0; k < p.size(); ++k) {
      for (long i = 0; i < n[k]; ++i) {
        const T gi = g[k][i];
        m[k][i] = b1 * m[k][i] + (T(1) - b1) * gi;
        v[k][i] = b2 * v[k][i] + (T(1) - b2) * gi * gi;
        p[k][i] -= lr * (m[k][i] / c1) / (std::sqrt(v[k][i] / c2) + eps);
      }
    }
  }

  long step() const { return step_; }

 private:
  static PepNetParams<T> Zero(const PepNetParams<T>& like) {
    PepNetParams<T> z = like;
    z.ForEach([](const std::string&, Matrix<T>* m) { m->setZero(); },
              [](const std::string&, RowVector<T>* v) { v->setZero(); });
    return z;
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
  long step_ = 0;
};

}  // namespace pepnet

#endif  // PEPNET_WORKER_ADAM_H_
