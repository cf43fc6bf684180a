#include "worker/pepnet_model.h"

#include <cmath>

#include "worker/gemm.h"

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

// out = x * lin.weight^T + lin.bias, with the ReLU when `relu`.
template <typename T>
void LinearForward(const Linear<T>& lin, const Matrix<T>& x, bool relu, Matrix<T>* out) {
  const int rows = static_cast<int>(x.rows()), in = static_cast<int>(x.cols());
  const int width = static_cast<int>(lin.weight.rows());
  out->resize(rows, width);
  Gemm<T>(false, true, rows, width, in, T(1), x.data(), in, lin.weight.data(), in, T(0),
          out->data(), width);
  if (relu) {
    *out = (out->rowwise() + lin.bias).cwiseMax(T(0));
  } else {
    out->rowwise() += lin.bias;
  }
}

// d weight = dz^T x and d bias = column sums of dz (overwritten).
template <typename T>
void LinearWeightGrad(const Matrix<T>& dz, const Matrix<T>& x, Linear<T>* d) {
  const int rows = static_cast<int>(x.rows()), in = static_cast<int>(x.cols());
  const int width = static_cast<int>(dz.cols());
  Gemm<T>(true, false, width, in, rows, T(1), dz.data(), width, x.data(), in, T(0),
          d->weight.data(), in);
  d->bias = dz.colwise().sum();
}

template <typename T>
Eigen::Block<const Matrix<T>> Columns(const Matrix<T>& m, int col, int width) {
  return Eigen::Block<const Matrix<T>>(m, 0, col, m.rows(), width);
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
  const bool per_task_gates = pp_gates.size() == towers.size();
  for (size_t t = 0; t < towers.size(); ++t) {
    for (size_t l = 0; l < towers[t].size(); ++l) {
      linear("towers." + std::to_string(t) + "." + std::to_string(l), &towers[t][l]);
    }
    linear("heads." + std::to_string(t), &heads[t]);
    if (!per_task_gates) continue;
    for (size_t l = 0; l < pp_gates[t].size(); ++l) {
      gate("pp_gates." + std::to_string(t) + "." + std::to_string(l), &pp_gates[t][l]);
    }
  }
  if (!per_task_gates && pp_gates.size() == 1) {
    for (size_t l = 0; l < pp_gates[0].size(); ++l) {
      gate("pp_gates.shared." + std::to_string(l), &pp_gates[0][l]);
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
        prior_emb_width_ += dim;
        e_width_ += dim;
        break;
      case ModelShape::kGeneral:
        e_width_ += dim;
        break;
    }
  }
  prior_width_ = prior_emb_width_ + e_width_;  // + sg(O_ep)
  pp_gated_layers_ = gated() ? num_layers() + (shape_.ppnet_gate_outputs ? 0 : 1) : 0;
  const int units = shape_.ppnet_shared_gate_per_layer ? 1 : shape_.num_tasks;
  slices_.resize(shape_.num_tasks);
  for (int t = 0; t < shape_.num_tasks; ++t) {
    for (int l = 0; l < pp_gated_layers_; ++l) {
      const int width = GatedWidth(l);
      slices_[t].push_back(shape_.ppnet_shared_gate_per_layer ? GateSlice{0, l, t * width, width}
                                                              : GateSlice{t, l, 0, width});
    }
  }
  if (gated()) {
    pp_cache_.assign(units, std::vector<GateCache>(pp_gated_layers_));
    d_delta_.assign(units, std::vector<Matrix<T>>(pp_gated_layers_));
    const int tasks_per_unit = shape_.ppnet_shared_gate_per_layer ? shape_.num_tasks : 1;
    pp_hidden_col_.assign(units, std::vector<int>(pp_gated_layers_));
    for (int u = 0; u < units; ++u) {
      for (int l = 0; l < pp_gated_layers_; ++l) {
        pp_hidden_col_[u][l] = pp_hidden_total_;
        const int out = tasks_per_unit * GatedWidth(l);
        pp_hidden_total_ += shape_.gate_hidden > 0 ? shape_.gate_hidden : out;
      }
    }
  }
  tasks_.resize(shape_.num_tasks);
  for (TaskCache& t : tasks_) t.layers.resize(num_layers() + 1);
  loss_per_task_.resize(shape_.num_tasks);
}

template <typename T>
int PepNet<T>::GatedWidth(int l) const {
  return shape_.ppnet_gate_outputs ? LayerOutput(l) : LayerInput(l);
}

template <typename T>
const Matrix<T>& PepNet<T>::h(int t, int l) const {
  if (l == 0) return o_;
  const LayerCache& prev = tasks_[t].layers[l - 1];
  return gated() && shape_.ppnet_gate_outputs ? prev.out : prev.act;
}

template <typename T>
Eigen::Block<const Matrix<T>> PepNet<T>::gate_pp(int t, int l) const {
  const GateSlice& s = slices_[t][l];
  return Columns(pp_cache_[s.unit_row][s.unit_layer].delta, s.col, s.width);
}

template <typename T>
PepNetParams<T> PepNet<T>::ZeroParams() const {
  PepNetParams<T> p;
  auto gate = [&](int in, int out) {
    const int hidden = shape_.gate_hidden > 0 ? shape_.gate_hidden : out;
    return GateNUParams<T>{MakeLinear<T>(in, hidden), MakeLinear<T>(hidden, out)};
  };
  if (gated()) {
    p.ep_gate = gate(domain_width_ + (shape_.epnet_gate_sees_e ? e_width_ : 0), e_width_);
    p.pp_gates.resize(pp_cache_.size());
    const int tasks_per_unit = shape_.ppnet_shared_gate_per_layer ? shape_.num_tasks : 1;
    for (auto& unit : p.pp_gates) {
      for (int l = 0; l < pp_gated_layers_; ++l) {
        unit.push_back(gate(prior_width_, tasks_per_unit * GatedWidth(l)));
      }
    }
  }
  p.towers.resize(shape_.num_tasks);
  for (int t = 0; t < shape_.num_tasks; ++t) {
    for (int l = 0; l < num_layers(); ++l) {
      p.towers[t].push_back(MakeLinear<T>(LayerInput(l), LayerOutput(l)));
    }
    p.heads.push_back(MakeLinear<T>(LayerInput(num_layers()), 1));
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
  if (gated()) fill_gate(&p.ep_gate);
  for (int t = 0; t < shape_.num_tasks; ++t) {
    if (t < static_cast<int>(p.pp_gates.size())) {
      for (auto& g : p.pp_gates[t]) fill_gate(&g);
    }
    for (auto& l : p.towers[t]) FillUniform(&l, rng);
    FillUniform(&p.heads[t], rng);
  }
  return p;
}

template <typename T>
void PepNet<T>::GateForward(const GateNUParams<T>& g, const Matrix<T>& x, GateCache* c) const {
  LinearForward(g.fc1, x, /*relu=*/true, &c->r);
  LinearForward(g.fc2, c->r, /*relu=*/false, &c->delta);
  c->delta.array() = T(shape_.gamma) / (T(1) + (-c->delta.array()).exp());
}

template <typename T>
void PepNet<T>::PpGatesBackward(const PepNetParams<T>& params, PepNetParams<T>* grads) {
  const int rows = static_cast<int>(prior_.rows()), in = prior_width_;
  const int total = pp_hidden_total_;
  const T inv_gamma = T(1) / T(shape_.gamma);
  pp_da1_.resize(rows, total);
  pp_w1_.resize(total, prior_emb_width_);
  for (size_t u = 0; u < pp_cache_.size(); ++u) {
    for (int l = 0; l < pp_gated_layers_; ++l) {
      GateCache& c = pp_cache_[u][l];
      const GateNUParams<T>& g = params.pp_gates[u][l];
      GateNUParams<T>& dg = grads->pp_gates[u][l];
      const int hidden = static_cast<int>(g.fc2.weight.cols());
      const int out = static_cast<int>(g.fc2.weight.rows());
      const int col = pp_hidden_col_[u][l];
      c.da2 = (d_delta_[u][l].array() * c.delta.array() * (T(1) - c.delta.array() * inv_gamma))
                  .matrix();
      LinearWeightGrad(c.da2, c.r, &dg.fc2);
      // This gate's d(fc1 output) goes into its block of columns of pp_da1_.
      Eigen::Block<Matrix<T>> da1 = pp_da1_.middleCols(col, hidden);
      Gemm<T>(false, false, rows, hidden, out, T(1), c.da2.data(), out, g.fc2.weight.data(), hidden,
              T(0), da1.data(), total);
      da1 = (c.r.array() > T(0)).select(da1, T(0));
      Gemm<T>(true, false, hidden, in, rows, T(1), da1.data(), total, prior_.data(), in, T(0),
              dg.fc1.weight.data(), in);
      dg.fc1.bias = da1.colwise().sum();
      pp_w1_.middleRows(col, hidden) = g.fc1.weight.leftCols(prior_emb_width_);
    }
  }
  // Every gate's share of d prior in one product over the stacked first layers: a product
  // [rows, 48] is too narrow to run fast on its own, twelve times over.
  Gemm<T>(false, false, rows, prior_emb_width_, total, T(1), pp_da1_.data(), total, pp_w1_.data(),
          prior_emb_width_, T(1), d_prior_.data(), prior_emb_width_);
}

template <typename T>
void PepNet<T>::GateBackward(const GateNUParams<T>& g, const Matrix<T>& x, GateCache* c,
                             const Matrix<T>& d_delta, GateNUParams<T>* dg, int x_grad_cols,
                             Matrix<T>* dx) {
  // d/da (gamma * sigmoid(a)) = delta * (1 - delta / gamma).
  const T inv_gamma = T(1) / T(shape_.gamma);
  c->da2 = (d_delta.array() * c->delta.array() * (T(1) - c->delta.array() * inv_gamma)).matrix();
  LinearWeightGrad(c->da2, c->r, &dg->fc2);
  const int rows = static_cast<int>(x.rows());
  const int hidden = static_cast<int>(c->r.cols()), out = static_cast<int>(c->delta.cols());
  c->da1.resize(rows, hidden);
  Gemm<T>(false, false, rows, hidden, out, T(1), c->da2.data(), out, g.fc2.weight.data(), hidden,
          T(0), c->da1.data(), hidden);
  c->da1 = (c->r.array() > T(0)).select(c->da1, T(0));
  LinearWeightGrad(c->da1, x, &dg->fc1);
  // Only the leading columns of x are trainable inputs; the rest are stop-gradient copies,
  // whose input gradient would be thrown away.
  const int in = static_cast<int>(x.cols());
  Gemm<T>(false, false, rows, x_grad_cols, hidden, T(1), c->da1.data(), hidden, g.fc1.weight.data(),
          in, T(1), dx->data(), static_cast<int>(dx->cols()));
}

template <typename T>
T PepNet<T>::Forward(const PepNetParams<T>& params, const std::vector<Matrix<T>>& slot_emb,
                     const Matrix<T>& labels, const Matrix<T>& mask,
                     const std::pair<const Matrix<T>*, const Matrix<T>*>& frozen,
                     const T* task_normalizers) {
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
  if (gated()) {
    const Matrix<T>& e_sg = frozen.first ? *frozen.first : e_;
    ep_in_.resize(batch, domain_width_ + (shape_.epnet_gate_sees_e ? e_width_ : 0));
    ep_in_.leftCols(domain_width_) = domain_;
    if (shape_.epnet_gate_sees_e) ep_in_.rightCols(e_width_) = e_sg;
    GateForward(params.ep_gate, ep_in_, &ep_cache_);
    o_ = ep_cache_.delta.cwiseProduct(e_);
    prior_.rightCols(e_width_) = frozen.second ? *frozen.second : o_;
    for (size_t u = 0; u < pp_cache_.size(); ++u) {
      for (int l = 0; l < pp_gated_layers_; ++l) {
        GateForward(params.pp_gates[u][l], prior_, &pp_cache_[u][l]);
      }
    }
  } else {
    o_ = e_;
  }

  const int layers = num_layers();
  const bool gate_inputs = gated() && !shape_.ppnet_gate_outputs;
  const bool gate_outputs = gated() && shape_.ppnet_gate_outputs;
  logits_.resize(batch, shape_.num_tasks);
  for (int t = 0; t < shape_.num_tasks; ++t) {
    for (int l = 0; l <= layers; ++l) {
      LayerCache& c = tasks_[t].layers[l];
      const Matrix<T>* in = &h(t, l);
      if (gate_inputs) {
        c.gated = gate_pp(t, l).cwiseProduct(*in);
        in = &c.gated;
      }
      const Linear<T>& lin = l < layers ? params.towers[t][l] : params.heads[t];
      LinearForward(lin, *in, /*relu=*/l < layers, &c.act);
      if (l == layers) {
        logits_.col(t) = c.act.col(0);
      } else if (gate_outputs) {
        c.out = gate_pp(t, l).cwiseProduct(c.act);
      }
    }
  }

  // Sum over tasks of the mean BCE-with-logits over each task's labelled samples.
  dlogits_.setZero(batch, shape_.num_tasks);
  T loss = 0;
  if (labels.rows() == 0) return loss;
  for (int t = 0; t < shape_.num_tasks; ++t) {
    const T labelled = task_normalizers ? task_normalizers[t] : mask.col(t).sum();
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
  if (grads->towers.size() != params.towers.size() ||
      grads->pp_gates.size() != params.pp_gates.size()) {
    *grads = ZeroParams();
  }
  const int batch = static_cast<int>(e_.rows());
  const int layers = num_layers();
  const bool gate_inputs = gated() && !shape_.ppnet_gate_outputs;
  const bool gate_outputs = gated() && shape_.ppnet_gate_outputs;
  for (auto& unit : d_delta_) {
    for (int l = 0; l < pp_gated_layers_; ++l) {
      unit[l].resize(batch, pp_cache_[0][l].delta.cols());
    }
  }
  auto d_delta_of = [&](int t, int l) {
    const GateSlice& s = slices_[t][l];
    return d_delta_[s.unit_row][s.unit_layer].middleCols(s.col, s.width);
  };

  d_o_.setZero(batch, e_width_);
  for (int t = 0; t < shape_.num_tasks; ++t) {
    std::vector<LayerCache>& cache = tasks_[t].layers;
    for (int l = layers; l >= 0; --l) {
      LayerCache& c = cache[l];
      const Linear<T>& lin = l < layers ? params.towers[t][l] : params.heads[t];
      Linear<T>& dlin = l < layers ? grads->towers[t][l] : grads->heads[t];
      if (l == layers) {
        c.dz = dlogits_.col(t);
      } else {
        const Matrix<T>& dh_next = cache[l + 1].dh;  // d h_{l+1}
        if (gate_outputs) {
          d_delta_of(t, l) = dh_next.cwiseProduct(c.act);
          c.dz = (c.act.array() > T(0)).select(dh_next.cwiseProduct(gate_pp(t, l)), T(0));
        } else {
          c.dz = (c.act.array() > T(0)).select(dh_next, T(0));
        }
      }
      const Matrix<T>& in = h(t, l);
      LinearWeightGrad(c.dz, gate_inputs ? c.gated : in, &dlin);
      const int width = static_cast<int>(lin.weight.rows());
      const int in_width = static_cast<int>(lin.weight.cols());
      Matrix<T>& d_in = gate_inputs ? c.d_in : c.dh;
      d_in.resize(batch, in_width);
      Gemm<T>(false, false, batch, in_width, width, T(1), c.dz.data(), width, lin.weight.data(),
              in_width, T(0), d_in.data(), in_width);
      if (gate_inputs) {
        d_delta_of(t, l) = c.d_in.cwiseProduct(in);
        c.dh = c.d_in.cwiseProduct(gate_pp(t, l));
      }
    }
    d_o_ += cache[0].dh;
  }

  // The sg(O_ep) columns of the prior pass no gradient on; the prior embeddings do.
  d_prior_.setZero(batch, prior_emb_width_);
  d_domain_.setZero(batch, domain_width_);
  if (gated()) {
    PpGatesBackward(params, grads);
    // d delta_ep = d O_ep * E; d E = d O_ep * delta_ep. The sg(E) columns of the gate input
    // pass no gradient on.
    d_delta_ep_ = d_o_.cwiseProduct(e_);
    GateBackward(params.ep_gate, ep_in_, &ep_cache_, d_delta_ep_, &grads->ep_gate, domain_width_,
                 &d_domain_);
    d_o_.array() *= ep_cache_.delta.array();
  }
  const Matrix<T>& d_e = d_o_;
  slot_grads->resize(shape_.slot_dims.size());
  int e_off = 0, d_off = 0;
  for (size_t s = 0; s < shape_.slot_dims.size(); ++s) {
    const int dim = shape_.slot_dims[s];
    if (shape_.slot_roles[s] == ModelShape::kDomain) {
      (*slot_grads)[s] = d_domain_.middleCols(d_off, dim);
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
      (*slot_grads)[s] += d_prior_.middleCols(p_off, shape_.slot_dims[s]);
      p_off += shape_.slot_dims[s];
    }
  }
}

template struct PepNetParams<float>;
template struct PepNetParams<double>;
template class PepNet<float>;
template class PepNet<double>;

}  // namespace pepnet
