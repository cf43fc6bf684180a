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
