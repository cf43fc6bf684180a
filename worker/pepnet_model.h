// PEPNet forward and backward (arXiv 2302.01115, section 2) over one batch, batch-major
// with Eigen. Templated on the scalar: float for training, double for gradient checks.
//
//   E      = concat of the pooled embeddings of the non-domain slots
//   EPNet: delta_ep = GateNU_ep([E(domain slots) | sg(E)]); O_ep = delta_ep * E
//   PPNet: prior = [E(user) | E(item) | E(author) | sg(O_ep)]
//          per task t, layer l: delta = GateNU_pp[t][l](prior) (the layer input's width);
//          h_{l+1} = relu(W_l (delta * h_l) + b_l), h_0 = O_ep; the 1-unit head's input
//          is gated too and gives the logit.
//   Variants: ppnet_shared_gate_per_layer: one GateNU per layer emits the gates of all
//          tasks side by side ([task 0 | task 1 | ...]); ppnet_gate_outputs: the gate
//          multiplies each hidden layer's output instead of its input,
//          h_{l+1} = delta * relu(W_l h_l + b_l), and the head is ungated.
//   GateNU(x) = gamma * sigmoid(W2 relu(W1 x + b1) + b2)
//   loss = sum over tasks of the mean BCE over that task's labelled samples.
// sg = stop-gradient: no gradient flows back through those gate inputs.
//
// Not thread-safe: a model object holds the activations of its last Forward.
#ifndef PEPNET_WORKER_PEPNET_MODEL_H_
#define PEPNET_WORKER_PEPNET_MODEL_H_

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace pepnet {

template <typename T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;

// What the model needs to know of the feature config.
struct ModelShape {
  enum Role { kGeneral, kDomain, kUser, kItem, kAuthor };
  std::vector<int> slot_dims;
  std::vector<Role> slot_roles;
  int num_tasks = 1;
  std::vector<int> tower;  // hidden widths
  int gate_hidden = 0;     // 0 = the gate's output width
  double gamma = 2.0;
  bool epnet_gate_sees_e = true;
  bool ppnet_shared_gate_per_layer = false;
  bool ppnet_gate_outputs = false;
  bool disable_gates = false;  // ablation: O_ep = E, towers ungated
};

template <typename T>
struct Linear {
  Matrix<T> weight;  // [out, in]; y = x * weight^T + bias
  RowVector<T> bias;
};

template <typename T>
struct GateNUParams {
  Linear<T> fc1, fc2;
};

// Every dense parameter of the model. Also used for their gradients.
template <typename T>
struct PepNetParams {
  GateNUParams<T> ep_gate;
  // [task][layer] (layer L = the head's input gate, absent when gating outputs); with
  // ppnet_shared_gate_per_layer a single row [0][layer] whose gates emit all tasks' widths.
  std::vector<std::vector<GateNUParams<T>>> pp_gates;
  std::vector<std::vector<Linear<T>>> towers;  // [task][layer]
  std::vector<Linear<T>> heads;                // [task], out = 1

  // Visits every parameter tensor with a stable name (the oracle's naming).
  void ForEach(const std::function<void(const std::string&, Matrix<T>*)>& on_matrix,
               const std::function<void(const std::string&, RowVector<T>*)>& on_vector);
};

template <typename T>
class PepNet {
 public:
  explicit PepNet(const ModelShape& shape);

  const ModelShape& shape() const { return shape_; }
  int e_width() const { return e_width_; }

  // Parameters shaped for this model, drawn uniform in +-1/sqrt(fan_in) from `rng`.
  PepNetParams<T> InitParams(std::mt19937_64* rng) const;
  // Zero tensors of the same shapes (for gradients).
  PepNetParams<T> ZeroParams() const;

  // slot_emb[s] is [batch, dim_s], the pooled embeddings of slot s. labels and mask are
  // [batch, num_tasks]; with no rows (inference) no loss is computed. Returns the loss;
  // logits() holds [batch, num_tasks].
  // `frozen`, if given, replaces the stop-gradient copies of E and O_ep (for checks
  // that perturb inputs while holding those fixed). `task_normalizers`, if given, divides
  // each task's summed BCE instead of this batch's labelled count: a batch split over
  // threads passes the whole batch's counts so the parts' gradients add up.
  T Forward(const PepNetParams<T>& params, const std::vector<Matrix<T>>& slot_emb,
            const Matrix<T>& labels, const Matrix<T>& mask,
            const std::pair<const Matrix<T>*, const Matrix<T>*>& frozen = {nullptr, nullptr},
            const T* task_normalizers = nullptr);

  // Gradients of the last Forward's loss: dense ones into *grads (overwritten; shaped on
  // first use), per-slot embedding ones into *slot_grads.
  void Backward(const PepNetParams<T>& params, PepNetParams<T>* grads,
                std::vector<Matrix<T>>* slot_grads);

  const Matrix<T>& logits() const { return logits_; }
  const Matrix<T>& E() const { return e_; }
  const Matrix<T>& O() const { return o_; }
  const Matrix<T>& gate_ep() const { return ep_cache_.delta; }
  const Matrix<T>& prior() const { return prior_; }
  // The PPNet gate of task t at layer l: [batch, gated width].
  Eigen::Block<const Matrix<T>> gate_pp(int t, int l) const;
  // Input of layer l of task t (h_l; h_0 = O_ep).
  const Matrix<T>& h(int t, int l) const;
  const std::vector<T>& loss_per_task() const { return loss_per_task_; }

 private:
  struct GateCache {
    Matrix<T> r, delta;  // relu(fc1 x), gamma * sigmoid(fc2 r)
    Matrix<T> da1, da2;  // Backward scratch; per gate so that no size changes per step
  };
  // Where the gate of (task, layer) comes from: columns [col, col + width) of gate unit
  // [unit_row][unit_layer].
  struct GateSlice {
    int unit_row = 0, unit_layer = 0, col = 0, width = 0;
  };
  struct LayerCache {
    Matrix<T> gated;  // delta * h_l, the linear's input (gating inputs only)
    Matrix<T> act;    // relu(z) of a hidden layer; the head's z
    Matrix<T> out;    // delta * act (gating outputs only); h_{l+1}
    // Backward: d z, d (linear input), d h_l. Per layer so that no size changes per step.
    Matrix<T> dz, d_in, dh;
  };
  struct TaskCache {
    std::vector<LayerCache> layers;  // tower layers, then the head
  };

  void GateForward(const GateNUParams<T>& g, const Matrix<T>& x, GateCache* cache) const;
  // Writes the parameter gradients into *dg and adds d x[:, :x_grad_cols] into *dx.
  void GateBackward(const GateNUParams<T>& g, const Matrix<T>& x, GateCache* cache,
                    const Matrix<T>& d_delta, GateNUParams<T>* dg, int x_grad_cols, Matrix<T>* dx);
  // The gradients of every PPNet gate into *grads; adds d prior[:, :prior_emb_width_] into
  // d_prior_. Every gate reads the prior, so their shares of d prior come from one product
  // over the stacked first layers (k = pp_hidden_total_) instead of one narrow product per
  // (task, layer). The forward pass is not fused: one [rows, sum of hidden] product measured
  // slower than the gates' own, as its output falls out of cache before the second layers
  // read it and the weights must be stacked every step (docs/benchmarks.md).
  void PpGatesBackward(const PepNetParams<T>& params, PepNetParams<T>* grads);
  bool gated() const { return !shape_.disable_gates; }
  int num_layers() const { return static_cast<int>(shape_.tower.size()); }
  // Width gated at (layer l) for one task: l's input width or, gating outputs, its output.
  int GatedWidth(int l) const;
  int LayerInput(int l) const { return l == 0 ? e_width_ : shape_.tower[l - 1]; }
  int LayerOutput(int l) const { return l < num_layers() ? shape_.tower[l] : 1; }
  const GateSlice* SliceOf(int t, int l) const;

  ModelShape shape_;
  int e_width_ = 0, domain_width_ = 0, prior_width_ = 0, prior_emb_width_ = 0;
  int pp_gated_layers_ = 0;  // layers with a PPNet gate: L + 1 (inputs) or L (outputs)
  std::vector<std::vector<GateSlice>> slices_;  // [task][layer]
  // The first column of gate [unit][layer]'s hidden units in pp_da1_.
  std::vector<std::vector<int>> pp_hidden_col_;
  int pp_hidden_total_ = 0;

  // Activations of the last Forward.
  Matrix<T> e_, domain_, ep_in_, o_, prior_, logits_, dlogits_;
  GateCache ep_cache_;
  std::vector<std::vector<GateCache>> pp_cache_;  // like params.pp_gates
  // Backward: every PPNet gate's d(fc1 output) side by side, [rows, pp_hidden_total_], and
  // the prior-embedding columns of their fc1 weights stacked, [pp_hidden_total_, 48].
  Matrix<T> pp_da1_, pp_w1_;
  std::vector<TaskCache> tasks_;
  std::vector<T> loss_per_task_;
  // Backward scratch.
  Matrix<T> d_o_, d_prior_, d_domain_, d_delta_ep_;
  std::vector<std::vector<Matrix<T>>> d_delta_;  // like pp_cache_
};

extern template class PepNet<float>;
extern template class PepNet<double>;

}  // namespace pepnet

#endif  // PEPNET_WORKER_PEPNET_MODEL_H_
