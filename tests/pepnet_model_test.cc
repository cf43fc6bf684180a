// PEPNet gradients against central finite differences, in double precision.
#include "worker/pepnet_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

namespace pepnet {
namespace {

using M = Matrix<double>;

ModelShape TinyShape() {
  ModelShape s;
  s.slot_dims = {3, 4, 4, 2, 3};
  s.slot_roles = {ModelShape::kDomain, ModelShape::kUser, ModelShape::kItem, ModelShape::kAuthor,
                  ModelShape::kGeneral};
  s.num_tasks = 2;
  s.tower = {5, 3};
  return s;
}

struct Problem {
  std::vector<M> emb;
  M labels, mask;
};

Problem MakeProblem(const ModelShape& shape, int batch, std::mt19937_64* rng) {
  std::normal_distribution<double> normal(0, 0.5);
  Problem p;
  for (int dim : shape.slot_dims) {
    M m(batch, dim);
    for (int i = 0; i < m.size(); ++i) m.data()[i] = normal(*rng);
    p.emb.push_back(m);
  }
  p.labels.resize(batch, shape.num_tasks);
  p.mask.setOnes(batch, shape.num_tasks);
  for (int i = 0; i < p.labels.size(); ++i) p.labels.data()[i] = (*rng)() % 2;
  p.mask(1, 0) = 0;  // a missing label
  return p;
}

// (f(x + h) - f(x - h)) / 2h, leaving *x as it was.
double CentralDifference(const std::function<double()>& f, double* x) {
  const double h = 1e-6, saved = *x;
  *x = saved + h;
  const double up = f();
  *x = saved - h;
  const double down = f();
  *x = saved;
  return (up - down) / (2 * h);
}

// A model with random parameters and inputs, after one Forward and Backward.
struct Analytic {
  Analytic(const ModelShape& shape, uint64_t seed) : net(shape) {
    std::mt19937_64 rng(seed);
    params = net.InitParams(&rng);
    p = MakeProblem(shape, 6, &rng);
    net.Forward(params, p.emb, p.labels, p.mask);
    net.Backward(params, &grads, &slot_grads);
  }
  PepNet<double> net;
  PepNetParams<double> params, grads;
  Problem p;
  std::vector<M> slot_grads;
};

// Every dense parameter's and every embedding input's gradient against central
// differences, with the stop-gradient copies held fixed as autograd would.
void CheckGradients(const ModelShape& shape) {
  Analytic a(shape, 42);
  PepNetParams<double>& params = a.params;
  PepNetParams<double>& grads = a.grads;
  Problem& p = a.p;
  const std::vector<M>& slot_grads = a.slot_grads;
  const M e_frozen = a.net.E(), o_frozen = a.net.O();
  const std::pair<const M*, const M*> frozen{&e_frozen, &o_frozen};
  PepNet<double> probe(shape);
  auto loss = [&]() { return probe.Forward(params, p.emb, p.labels, p.mask, frozen); };
  auto numeric = [&](double* x) { return CentralDifference(loss, x); };
  auto expect_close = [&](double analytic, double fd, const std::string& what) {
    EXPECT_NEAR(analytic, fd, 1e-6 + 1e-5 * std::abs(fd)) << what;
  };
  // Dense parameters: walk params and grads in the same order.
  std::vector<std::pair<std::string, double*>> p_entries, g_entries;
  std::vector<int> sizes;
  auto collect = [](std::vector<std::pair<std::string, double*>>* out) {
    return std::make_pair(
        [out](const std::string& name, M* m) {
          for (int i = 0; i < m->size(); ++i) out->push_back({name, m->data() + i});
        },
        [out](const std::string& name, RowVector<double>* v) {
          for (int i = 0; i < v->size(); ++i) out->push_back({name, v->data() + i});
        });
  };
  auto pc = collect(&p_entries);
  params.ForEach(pc.first, pc.second);
  auto gc = collect(&g_entries);
  grads.ForEach(gc.first, gc.second);
  ASSERT_EQ(p_entries.size(), g_entries.size());
  ASSERT_GT(p_entries.size(), 100u);
  for (size_t k = 0; k < p_entries.size(); ++k) {
    expect_close(*g_entries[k].second, numeric(p_entries[k].second), p_entries[k].first);
  }
  // Embedding inputs, including the trainable priors.
  for (size_t s = 0; s < p.emb.size(); ++s) {
    for (int i = 0; i < p.emb[s].size(); ++i) {
      expect_close(slot_grads[s].data()[i], numeric(p.emb[s].data() + i),
                   "slot " + std::to_string(s));
    }
  }
}

TEST(PepNetGradientTest, FullModel) { CheckGradients(TinyShape()); }

TEST(PepNetGradientTest, EpnetGateSeesOnlyDomain) {
  ModelShape s = TinyShape();
  s.epnet_gate_sees_e = false;
  CheckGradients(s);
}

TEST(PepNetGradientTest, GatesDisabled) {
  ModelShape s = TinyShape();
  s.disable_gates = true;
  CheckGradients(s);
}

TEST(PepNetGradientTest, CustomGateWidthAndGamma) {
  ModelShape s = TinyShape();
  s.gate_hidden = 7;
  s.gamma = 1.5;
  CheckGradients(s);
}

TEST(PepNetGradientTest, SharedGatePerLayer) {
  ModelShape s = TinyShape();
  s.ppnet_shared_gate_per_layer = true;
  CheckGradients(s);
}

TEST(PepNetGradientTest, GateOutputs) {
  ModelShape s = TinyShape();
  s.ppnet_gate_outputs = true;
  CheckGradients(s);
}

TEST(PepNetGradientTest, SharedGateOnOutputs) {
  ModelShape s = TinyShape();
  s.ppnet_shared_gate_per_layer = true;
  s.ppnet_gate_outputs = true;
  s.gate_hidden = 4;
  CheckGradients(s);
}

// gamma * sigmoid(fc2(relu(fc1(x)))), written out independently of the model code.
M GateNU(const GateNUParams<double>& g, const M& x, double gamma) {
  M r = ((x * g.fc1.weight.transpose()).rowwise() + g.fc1.bias).cwiseMax(0.0);
  M a = (r * g.fc2.weight.transpose()).rowwise() + g.fc2.bias;
  return (gamma / (1.0 + (-a.array()).exp())).matrix();
}

// The shared variant: one gate per layer whose output is [task 0 | task 1], each task's
// tower input multiplied by its own part.
TEST(PepNetTest, SharedGateSplitsByTask) {
  ModelShape shape = TinyShape();
  shape.ppnet_shared_gate_per_layer = true;
  Analytic a(shape, 11);
  ASSERT_EQ(a.params.pp_gates.size(), 1u);
  ASSERT_EQ(a.params.pp_gates[0].size(), shape.tower.size() + 1);
  for (size_t l = 0; l <= shape.tower.size(); ++l) {
    const M all = GateNU(a.params.pp_gates[0][l], a.net.prior(), shape.gamma);
    const int width = static_cast<int>(all.cols()) / shape.num_tasks;
    for (int t = 0; t < shape.num_tasks; ++t) {
      const M gate = a.net.gate_pp(t, static_cast<int>(l));
      EXPECT_TRUE(gate.isApprox(all.middleCols(t * width, width), 1e-12)) << t << "," << l;
    }
  }
  const M z =
      (a.net.gate_pp(1, 0).cwiseProduct(a.net.O()) * a.params.towers[1][0].weight.transpose())
          .rowwise() +
      a.params.towers[1][0].bias;
  EXPECT_TRUE(a.net.h(1, 1).isApprox(M(z.cwiseMax(0.0)), 1e-12));
}

// The output variant: h_{l+1} = delta * relu(W h_l + b), the head ungated.
TEST(PepNetTest, GateOutputsMultipliesLayerOutputs) {
  ModelShape shape = TinyShape();
  shape.ppnet_gate_outputs = true;
  Analytic a(shape, 12);
  ASSERT_EQ(a.params.pp_gates[0].size(), shape.tower.size());
  for (int t = 0; t < shape.num_tasks; ++t) {
    for (size_t l = 0; l < shape.tower.size(); ++l) {
      const Linear<double>& lin = a.params.towers[t][l];
      const M gate = GateNU(a.params.pp_gates[t][l], a.net.prior(), shape.gamma);
      ASSERT_EQ(gate.cols(), shape.tower[l]);
      const M relu = ((a.net.h(t, l) * lin.weight.transpose()).rowwise() + lin.bias).cwiseMax(0.0);
      EXPECT_TRUE(a.net.h(t, l + 1).isApprox(M(gate.cwiseProduct(relu)), 1e-12));
    }
    const Linear<double>& head = a.params.heads[t];
    const M logit = (a.net.h(t, 2) * head.weight.transpose()).rowwise() + head.bias;
    EXPECT_TRUE(logit.col(0).isApprox(a.net.logits().col(t), 1e-12));
  }
}

// A batch split in two parts, each normalized by the whole batch's label counts, gives
// gradients that add up to the whole batch's: what the trainer's threads rely on.
TEST(PepNetTest, SplitBatchGradientsAddUp) {
  const ModelShape shape = TinyShape();
  std::mt19937_64 rng(5);
  PepNet<double> whole(shape), part(shape);
  PepNetParams<double> params = whole.InitParams(&rng);
  Problem p = MakeProblem(shape, 6, &rng);
  PepNetParams<double> g_whole, g_part;
  std::vector<M> s_whole, s_part;
  const double loss = whole.Forward(params, p.emb, p.labels, p.mask);
  whole.Backward(params, &g_whole, &s_whole);
  std::vector<double> normalizers(shape.num_tasks);
  for (int t = 0; t < shape.num_tasks; ++t) normalizers[t] = p.mask.col(t).sum();

  std::vector<double> sum(0);
  std::vector<double*> sum_ptrs;
  double part_loss = 0;
  for (int begin : {0, 4}) {
    const int rows = begin == 0 ? 4 : 2;
    std::vector<M> emb;
    for (const M& e : p.emb) emb.push_back(e.middleRows(begin, rows));
    part_loss +=
        part.Forward(params, emb, p.labels.middleRows(begin, rows), p.mask.middleRows(begin, rows),
                     {nullptr, nullptr}, normalizers.data());
    part.Backward(params, &g_part, &s_part);
    std::vector<double> flat;
    g_part.ForEach([&](const std::string&,
                       M* m) { flat.insert(flat.end(), m->data(), m->data() + m->size()); },
                   [&](const std::string&, RowVector<double>* v) {
                     flat.insert(flat.end(), v->data(), v->data() + v->size());
                   });
    if (sum.empty()) sum.assign(flat.size(), 0.0);
    for (size_t i = 0; i < flat.size(); ++i) sum[i] += flat[i];
    for (size_t s = 0; s < s_part.size(); ++s) {
      EXPECT_TRUE(s_part[s].isApprox(M(s_whole[s].middleRows(begin, rows)), 1e-12));
    }
  }
  EXPECT_NEAR(part_loss, loss, 1e-12);
  size_t i = 0;
  g_whole.ForEach(
      [&](const std::string& name, M* m) {
        for (int k = 0; k < m->size(); ++k, ++i) EXPECT_NEAR(m->data()[k], sum[i], 1e-12) << name;
      },
      [&](const std::string& name, RowVector<double>* v) {
        for (int k = 0; k < v->size(); ++k, ++i) EXPECT_NEAR(v->data()[k], sum[i], 1e-12) << name;
      });
  EXPECT_EQ(i, sum.size());
}

// Without the stop-gradient, perturbing E also moves the gate inputs sg(E) and sg(O_ep);
// the analytic gradient must leave exactly those paths out.
TEST(PepNetGradientTest, StopGradientCutsTheGateInputs) {
  const ModelShape shape = TinyShape();
  Analytic a(shape, 7);
  PepNet<double> probe(shape);
  auto loss = [&]() { return probe.Forward(a.params, a.p.emb, a.p.labels, a.p.mask); };
  double max_gap = 0;
  const int general = 4;  // a slot in E only: its gradient paths are the tower and the gates
  for (int i = 0; i < a.p.emb[general].size(); ++i) {
    const double fd = CentralDifference(loss, a.p.emb[general].data() + i);
    max_gap = std::max(max_gap, std::abs(fd - a.slot_grads[general].data()[i]));
  }
  EXPECT_GT(max_gap, 1e-5) << "the unfrozen derivative should differ: the gates see E";
}

TEST(PepNetTest, MaskedLabelsDoNotCount) {
  const ModelShape shape = TinyShape();
  std::mt19937_64 rng(3);
  PepNet<double> net(shape);
  PepNetParams<double> params = net.InitParams(&rng);
  Problem p = MakeProblem(shape, 6, &rng);
  const double before = net.Forward(params, p.emb, p.labels, p.mask);
  p.labels(1, 0) = 1 - p.labels(1, 0);  // the masked one
  EXPECT_EQ(net.Forward(params, p.emb, p.labels, p.mask), before);
  EXPECT_EQ(net.logits().rows(), 6);
  EXPECT_EQ(net.logits().cols(), 2);
}

}  // namespace
}  // namespace pepnet
