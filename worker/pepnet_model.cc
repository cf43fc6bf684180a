#include "worker/pepnet_model.h"

#include <cmath>

namespace pepnet {
namespace {

template <typename T>
Linear<T> MakeLinear(int in, int out) {
  Linear<T> l;
  l.weight = Matrix<T>::Zero(out, in);
  l.bias = RowVector<T>::Zero(out);
  return l;
}

template <typename T>
void FillUniform(Linear<T>* l, std::mt19937_64* rng) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(l->weight.cols()));
  std::uniform_real_distribution<double> u(-bound, bound);
  for (int i = 0; i < l->weight.size(); ++i) l->weight.data()[i] = static_cast<T>(u(*rng));
  for (int i = 0; i < l->bias.size(); ++i) l->bias[i] = static_cast<T>(u(*rng));
}

template <typename T>
Matrix<T> Relu(const Matrix<T>& x) {
  return x.cwiseMax(T(0));
}

}  // namespace

template <typename T>
void PepNetParams<T>::ForEach(
    const std::function<void(const std::string&, Matrix<T>*)>& on_matrix,
    const std::function<void(const std::string&, RowVector<T>*)>& on_vector) {
  auto linear = [&](const std::string& name, Linear<T>* l) {
    on_matrix(name + ".weight", &l->weight);
    on_vector(name + ".bias", &l->bias);
  };
  auto gate = [&](const std::string& name, GateNUParams<T>* g) {
    linear(name + ".fc1", &g->fc1);
    linear(name + ".fc2", &g->fc2);
  };
  if (ep_gate.fc1.weight.size() > 0) gate("ep_gate", &ep_gate);
  for (size_t t = 0; t < towers.size(); ++t) {
    for (size_t l = 0; l < towers[t].size(); ++l) {
      linear("towers." + std::to_string(t) + "." + std::to_string(l), &towers[t][l]);
    }
    linear("heads." + std::to_string(t), &heads[t]);
    for (size_t l = 0; l < pp_gates[t].size(); ++l) {
      gate("pp_gates." + std::to_string(t) + "." + std::to_string(l), &pp_gates[t][l]);
    }
  }
}

template <typename T>
PepNet<T>::PepNet(const ModelShape& shape) : shape_(shape) {
  for (size_t s = 0; s < shape_.slot_dims.size(); ++s) {
    const int dim = shape_.slot_dims[s];
    switch (shape_.slot_roles[s]) {
      case ModelShape::kDomain:
        domain_width_ += dim;
        break;
      case ModelShape::kUser:
      case ModelShape::kItem:
      case ModelShape::kAuthor:
        prior_width_ += dim;
        e_width_ += dim;
        break;
      case ModelShape::kGeneral:
        e_width_ += dim;
        break;
    }
  }
  prior_width_ += e_width_;  // sg(O_ep)
  tasks_.resize(shape_.num_tasks);
  for (TaskCache& t : tasks_) t.layers.resize(shape_.tower.size() + 1);
  loss_per_task_.resize(shape_.num_tasks);
}

template <typename T>
PepNetParams<T> PepNet<T>::ZeroParams() const {
  PepNetParams<T> p;
  auto gate = [&](int in, int out) {
    const int hidden = shape_.gate_hidden > 0 ? shape_.gate_hidden : out;
    return GateNUParams<T>{MakeLinear<T>(in, hidden), MakeLinear<T>(hidden, out)};
  };
  const int layers = static_cast<int>(shape_.tower.size());
  if (!shape_.disable_gates) {
    p.ep_gate = gate(domain_width_ + (shape_.epnet_gate_sees_e ? e_width_ : 0), e_width_);
  }
  p.pp_gates.resize(shape_.num_tasks);
  p.towers.resize(shape_.num_tasks);
  for (int t = 0; t < shape_.num_tasks; ++t) {
    int in = e_width_;
    for (int l = 0; l <= layers; ++l) {
      const int out = l < layers ? shape_.tower[l] : 1;
      if (!shape_.disable_gates) p.pp_gates[t].push_back(gate(prior_width_, in));
      if (l < layers) p.towers[t].push_back(MakeLinear<T>(in, out));
      if (l == layers) p.heads.push_back(MakeLinear<T>(in, 1));
      in = out;
    }
  }
  return p;
}

template <typename T>
PepNetParams<T> PepNet<T>::InitParams(std::mt19937_64* rng) const {
  PepNetParams<T> p = ZeroParams();
  auto fill_gate = [&](GateNUParams<T>* g) {
    FillUniform(&g->fc1, rng);
    FillUniform(&g->fc2, rng);
  };
  if (!shape_.disable_gates) fill_gate(&p.ep_gate);
  for (int t = 0; t < shape_.num_tasks; ++t) {
    for (auto& g : p.pp_gates[t]) fill_gate(&g);
    for (auto& l : p.towers[t]) FillUniform(&l, rng);
    FillUniform(&p.heads[t], rng);
  }
  return p;
}

template <typename T>
Matrix<T> PepNet<T>::GateForward(const GateNUParams<T>& g, const Matrix<T>& x, GateCache* c) const {
  c->a1 = x * g.fc1.weight.transpose();
  c->a1.rowwise() += g.fc1.bias;
  c->r = Relu(c->a1);
  Matrix<T> a2 = c->r * g.fc2.weight.transpose();
  a2.rowwise() += g.fc2.bias;
  c->s = (T(1) + (-a2.array()).exp()).inverse().matrix();
  return T(shape_.gamma) * c->s;
}

template <typename T>
Matrix<T> PepNet<T>::GateBackward(const GateNUParams<T>& g, const Matrix<T>& x, const GateCache& c,
                                  const Matrix<T>& d_out, GateNUParams<T>* dg) const {
  const Matrix<T> da2 =
      (T(shape_.gamma) * d_out.array() * c.s.array() * (T(1) - c.s.array())).matrix();
  dg->fc2.weight += da2.transpose() * c.r;
  dg->fc2.bias += da2.colwise().sum();
  const Matrix<T> da1 =
      ((da2 * g.fc2.weight).array() * (c.a1.array() > T(0)).template cast<T>()).matrix();
  dg->fc1.weight += da1.transpose() * x;
  dg->fc1.bias += da1.colwise().sum();
  return da1 * g.fc1.weight;
}

template <typename T>
T PepNet<T>::Forward(const PepNetParams<T>& params, const std::vector<Matrix<T>>& slot_emb,
                     const Matrix<T>& labels, const Matrix<T>& mask,
                     const std::pair<const Matrix<T>*, const Matrix<T>*>& frozen) {
  const int batch = static_cast<int>(slot_emb[0].rows());
  e_.resize(batch, e_width_);
  domain_.resize(batch, domain_width_);
  prior_.resize(batch, prior_width_);
  int e_off = 0, d_off = 0;
  for (size_t s = 0; s < slot_emb.size(); ++s) {
    const int dim = shape_.slot_dims[s];
    if (shape_.slot_roles[s] == ModelShape::kDomain) {
      domain_.middleCols(d_off, dim) = slot_emb[s];
      d_off += dim;
    } else {
      e_.middleCols(e_off, dim) = slot_emb[s];
      e_off += dim;
    }
  }
  // Priors in role order: user slots, then item, then author, then sg(O_ep).
  int p_off = 0;
  for (ModelShape::Role role : {ModelShape::kUser, ModelShape::kItem, ModelShape::kAuthor}) {
    for (size_t s = 0; s < slot_emb.size(); ++s) {
      if (shape_.slot_roles[s] != role) continue;
      prior_.middleCols(p_off, shape_.slot_dims[s]) = slot_emb[s];
      p_off += shape_.slot_dims[s];
    }
  }
  const bool gated = !shape_.disable_gates;
  if (gated) {
    const Matrix<T>& e_sg = frozen.first ? *frozen.first : e_;
    ep_in_.resize(batch, domain_width_ + (shape_.epnet_gate_sees_e ? e_width_ : 0));
    ep_in_.leftCols(domain_width_) = domain_;
    if (shape_.epnet_gate_sees_e) ep_in_.rightCols(e_width_) = e_sg;
    gate_ep_ = GateForward(params.ep_gate, ep_in_, &ep_cache_);
    o_ = gate_ep_.cwiseProduct(e_);
  } else {
    o_ = e_;
  }
  prior_.rightCols(e_width_) = frozen.second ? *frozen.second : o_;

  const int layers = static_cast<int>(shape_.tower.size());
  logits_.resize(batch, shape_.num_tasks);
  for (int t = 0; t < shape_.num_tasks; ++t) {
    const Matrix<T>* h = &o_;
    for (int l = 0; l <= layers; ++l) {
      LayerCache& c = tasks_[t].layers[l];
      c.input = *h;
      if (gated) {
        c.gate = GateForward(params.pp_gates[t][l], prior_, &c.gate_cache);
        c.gated = c.gate.cwiseProduct(c.input);
      } else {
        c.gated = c.input;
      }
      const Linear<T>& lin = l < layers ? params.towers[t][l] : params.heads[t];
      c.z = c.gated * lin.weight.transpose();
      c.z.rowwise() += lin.bias;
      if (l < layers) {
        tasks_[t].layers[l + 1].input = Relu(c.z);
        h = &tasks_[t].layers[l + 1].input;
      } else {
        logits_.col(t) = c.z.col(0);
      }
    }
  }

  // Sum over tasks of the mean BCE-with-logits over each task's labelled samples.
  dlogits_.setZero(batch, shape_.num_tasks);
  T loss = 0;
  for (int t = 0; t < shape_.num_tasks; ++t) {
    const T labelled = mask.col(t).sum();
    T sum = 0;
    for (int i = 0; i < batch; ++i) {
      if (mask(i, t) == T(0)) continue;
      const T x = logits_(i, t), y = labels(i, t);
      sum += std::max(x, T(0)) - x * y + std::log1p(std::exp(-std::abs(x)));
      dlogits_(i, t) = (T(1) / (T(1) + std::exp(-x)) - y) / labelled;
    }
    loss_per_task_[t] = labelled > 0 ? sum / labelled : T(0);
    loss += loss_per_task_[t];
  }
  return loss;
}

template <typename T>
void PepNet<T>::Backward(const PepNetParams<T>& params, PepNetParams<T>* grads,
                         std::vector<Matrix<T>>* slot_grads) {
  *grads = ZeroParams();
  const int batch = static_cast<int>(e_.rows());
  const int layers = static_cast<int>(shape_.tower.size());
  const bool gated = !shape_.disable_gates;
  Matrix<T> d_o = Matrix<T>::Zero(batch, e_width_);
  Matrix<T> d_prior = Matrix<T>::Zero(batch, prior_width_);
  for (int t = 0; t < shape_.num_tasks; ++t) {
    Matrix<T> dh;
    for (int l = layers; l >= 0; --l) {
      const LayerCache& c = tasks_[t].layers[l];
      const Linear<T>& lin = l < layers ? params.towers[t][l] : params.heads[t];
      Linear<T>& dlin = l < layers ? grads->towers[t][l] : grads->heads[t];
      Matrix<T> dz;
      if (l == layers) {
        dz = dlogits_.col(t);
      } else {
        dz = (dh.array() * (c.z.array() > T(0)).template cast<T>()).matrix();
      }
      dlin.weight += dz.transpose() * c.gated;
      dlin.bias += dz.colwise().sum();
      const Matrix<T> d_gated = dz * lin.weight;
      if (gated) {
        d_prior += GateBackward(params.pp_gates[t][l], prior_, c.gate_cache,
                                d_gated.cwiseProduct(c.input), &grads->pp_gates[t][l]);
        dh = d_gated.cwiseProduct(c.gate);
      } else {
        dh = d_gated;
      }
    }
    d_o += dh;
  }
  Matrix<T> d_e, d_domain = Matrix<T>::Zero(batch, domain_width_);
  if (gated) {
    d_e = d_o.cwiseProduct(gate_ep_);
    const Matrix<T> d_ep_in =
        GateBackward(params.ep_gate, ep_in_, ep_cache_, d_o.cwiseProduct(e_), &grads->ep_gate);
    // The sg(E) columns of the gate input pass no gradient on.
    d_domain = d_ep_in.leftCols(domain_width_);
  } else {
    d_e = d_o;
  }
  // The sg(O_ep) columns of the prior pass no gradient on; the prior embeddings do.
  slot_grads->resize(shape_.slot_dims.size());
  int e_off = 0, d_off = 0;
  for (size_t s = 0; s < shape_.slot_dims.size(); ++s) {
    const int dim = shape_.slot_dims[s];
    if (shape_.slot_roles[s] == ModelShape::kDomain) {
      (*slot_grads)[s] = d_domain.middleCols(d_off, dim);
      d_off += dim;
    } else {
      (*slot_grads)[s] = d_e.middleCols(e_off, dim);
      e_off += dim;
    }
  }
  int p_off = 0;
  for (ModelShape::Role role : {ModelShape::kUser, ModelShape::kItem, ModelShape::kAuthor}) {
    for (size_t s = 0; s < shape_.slot_dims.size(); ++s) {
      if (shape_.slot_roles[s] != role) continue;
      (*slot_grads)[s] += d_prior.middleCols(p_off, shape_.slot_dims[s]);
      p_off += shape_.slot_dims[s];
    }
  }
}

template struct PepNetParams<float>;
template struct PepNetParams<double>;
template class PepNet<float>;
template class PepNet<double>;

}  // namespace pepnet
