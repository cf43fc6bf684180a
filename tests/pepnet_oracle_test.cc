// The model against the PyTorch oracle in ../shared/oracle (see its README): forward
// activations, losses and every gradient of one step on a tiny model, masked and not.
// Skipped with a message when the oracle is absent.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "worker/adam.h"
#include "worker/pepnet_model.h"

namespace pepnet {
namespace {

using M = Matrix<double>;

struct Tensor {
  std::vector<int> dims;
  std::vector<double> values;
};

bool LoadTensor(const std::string& path, Tensor* t) {
  std::ifstream in(path);
  if (!in) return false;
  std::string first;
  std::getline(in, first);
  std::istringstream header(first);
  int ndim;
  header >> ndim;
  t->dims.resize(ndim);
  for (int& d : t->dims) header >> d;
  double v;
  t->values.clear();
  while (in >> v) t->values.push_back(v);
  return true;
}

M AsMatrix(const Tensor& t) {
  const int rows = t.dims.size() >= 2 ? t.dims[0] : 1;
  const int cols = t.dims.empty() ? 1 : t.dims.back();
  M m(rows, cols);
  for (int i = 0; i < m.size(); ++i) m.data()[i] = t.values[i];
  return m;
}

class PepNetOracleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* src = getenv("PEPNET_SOURCE_DIR");
    ASSERT_NE(src, nullptr) << "run through ctest";
    dir_ = std::string(src) + "/../shared/oracle/";
    Tensor probe;
    if (!LoadTensor(dir_ + "batch/ids.txt", &probe)) {
      GTEST_SKIP() << "no oracle at " << dir_ << "; the PyTorch comparison is skipped";
    }
    shape_.slot_dims = {4, 4, 4, 4, 4, 4};
    shape_.slot_roles = {ModelShape::kDomain, ModelShape::kUser,    ModelShape::kItem,
                         ModelShape::kAuthor, ModelShape::kGeneral, ModelShape::kGeneral};
    shape_.num_tasks = 3;
    shape_.tower = {8, 6, 4};
    ids_ = AsMatrix(Load("batch/ids"));
    labels_ = AsMatrix(Load("batch/labels"));
  }

  Tensor Load(const std::string& name) {
    Tensor t;
    EXPECT_TRUE(LoadTensor(dir_ + name + ".txt", &t)) << name;
    return t;
  }

  // The README's tolerance |a - b| <= tol * (|b| + 0.01 max|b|): 1e-4 for the float32
  // engine, a hundred times tighter in double.
  template <typename T>
  void ExpectMatches(const Matrix<T>& got_t, const std::string& name) {
    const M got = got_t.template cast<double>();
    const double tol = sizeof(T) == sizeof(double) ? 1e-6 : 1e-4;
    const M want = AsMatrix(Load(name));
    ASSERT_EQ(got.rows(), want.rows()) << name;
    ASSERT_EQ(got.cols(), want.cols()) << name;
    const double scale = want.cwiseAbs().maxCoeff();
    for (int i = 0; i < want.size(); ++i) {
      const double b = want.data()[i];
      ASSERT_LE(std::abs(got.data()[i] - b), tol * (std::abs(b) + 0.01 * scale))
          << name << "[" << i << "]";
    }
  }

  template <typename T>
  void RunCase(const std::string& variant, const M& mask_d) {
    using MT = Matrix<T>;
    PepNet<T> net(shape_);
    PepNetParams<T> params = net.ZeroParams();
    params.ForEach(
        [&](const std::string& n, MT* m) { *m = AsMatrix(Load("weights/" + n)).cast<T>(); },
        [&](const std::string& n, RowVector<T>* v) {
          *v = AsMatrix(Load("weights/" + n)).row(0).cast<T>();
        });
    const MT labels = labels_.cast<T>(), mask = mask_d.cast<T>();
    std::vector<MT> tables, emb;
    for (int s = 0; s < 6; ++s) {
      tables.push_back(AsMatrix(Load("weights/emb." + std::to_string(s) + ".weight")).cast<T>());
      MT e(ids_.rows(), 4);
      for (int i = 0; i < ids_.rows(); ++i) e.row(i) = tables[s].row(static_cast<int>(ids_(i, s)));
      emb.push_back(e);
    }
    const T loss = net.Forward(params, emb, labels, mask);
    const std::string f = "f64/" + variant + "forward/";
    ExpectMatches(MT(MT::Constant(1, 1, loss)), f + "loss");
    ExpectMatches(net.logits(), f + "logits");
    if (variant.empty()) {
      ExpectMatches(net.E(), f + "E");
      ExpectMatches(net.gate_ep(), f + "gate_ep");
      ExpectMatches(net.O(), f + "O_ep");
      ExpectMatches(net.prior(), f + "prior");
      for (int t = 0; t < 3; ++t) {
        for (int l = 0; l < 4; ++l) {
          const std::string tl = "t" + std::to_string(t) + "_l" + std::to_string(l);
          ExpectMatches(Matrix<T>(net.gate_pp(t, l)), f + "gate_pp_" + tl);
          if (l > 0) ExpectMatches(net.h(t, l), f + "h_" + tl);
        }
      }
    }
    PepNetParams<T> grads;
    std::vector<MT> slot_grads;
    net.Backward(params, &grads, &slot_grads);
    const std::string g = "f64/" + variant + "grads/";
    int checked = 0;
    grads.ForEach(
        [&](const std::string& n, MT* m) {
          ExpectMatches(*m, g + n);
          ++checked;
        },
        [&](const std::string& n, RowVector<T>* v) {
          ExpectMatches(MT(*v), g + n);
          ++checked;
        });
    EXPECT_EQ(checked, 2 * 2 + 3 * (4 * 4 + 3 * 2 + 2));
    if (variant.empty()) {
      // One Adam step on the dense parameters. Its deltas (about lr = 5e-6) are compared,
      // not just the new values, so a missing or wrong step cannot hide in the tolerance.
      const PepNetParams<T> before = params;
      Adam<T> adam(AdamOptions(), params);
      adam.Step(&params, &grads);
      std::vector<std::pair<std::string, MT>> deltas;
      PepNetParams<T> b = before;
      std::vector<MT> before_list;
      b.ForEach([&](const std::string&, MT* m) { before_list.push_back(*m); },
                [&](const std::string&, RowVector<T>* v) { before_list.push_back(MT(*v)); });
      size_t k = 0;
      auto check = [&](const std::string& n, const MT& after) {
        const M want =
            AsMatrix(Load("f64/after_step1/" + n)) - before_list[k].template cast<double>();
        const M got = (after - before_list[k]).template cast<double>();
        ++k;
        const double tol = sizeof(T) == sizeof(double) ? 1e-6 : 2e-2;
        ASSERT_LE((got - want).cwiseAbs().maxCoeff(), tol * want.cwiseAbs().maxCoeff() + 1e-15)
            << n;
      };
      params.ForEach([&](const std::string& n, MT* m) { check(n, *m); },
                     [&](const std::string& n, RowVector<T>* v) { check(n, MT(*v)); });
    }
    // Embedding gradients: per-sample rows summed into the rows of their IDs.
    for (int s = 0; s < 6; ++s) {
      MT dense = MT::Zero(tables[s].rows(), 4);
      for (int i = 0; i < ids_.rows(); ++i)
        dense.row(static_cast<int>(ids_(i, s))) += slot_grads[s].row(i);
      ExpectMatches(dense, g + "emb." + std::to_string(s) + ".weight");
    }
  }

  std::string dir_;
  ModelShape shape_;
  M ids_, labels_;
};

TEST_F(PepNetOracleTest, MatchesPyTorchForwardAndGradients) {
  RunCase<double>("", M::Ones(labels_.rows(), labels_.cols()));
}

TEST_F(PepNetOracleTest, MatchesPyTorchWithMaskedLabels) {
  RunCase<double>("masked/", AsMatrix(Load("batch/mask_masked_case")));
}

// The float32 engine used for training, within the oracle README's tolerance.
TEST_F(PepNetOracleTest, Float32MatchesWithinTolerance) {
  RunCase<float>("", M::Ones(labels_.rows(), labels_.cols()));
  RunCase<float>("masked/", AsMatrix(Load("batch/mask_masked_case")));
}

}  // namespace
}  // namespace pepnet
