// pepnet_predict: scores data files with a published model (the newest version under
// --model_dir, or --version). Prints one line per sample: the probability of each task,
// comma-separated, after a header line of task names.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cmath>
#include <cstdio>

#include "proto/model_config.pb.h"
#include "proto/publish.pb.h"
#include "ps/embedding_table.h"
#include "publish/published_model.h"
#include "worker/data_reader.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

DEFINE_string(model_dir, "", "The publish folder of a cluster (holding v-* versions).");
DEFINE_uint64(model_version, 0, "Version to load; 0 = the newest.");
DEFINE_string(data, "", "Data files to score, comma-separated (the model's data format).");
DEFINE_string(out, "", "Write scores here instead of stdout.");
DEFINE_int32(threads, 2, "Threads.");

namespace {
int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_predict: %s\n", message.c_str());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("pepnet_predict --model_dir=DIR --data=F1,F2 [--out=FILE]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (FLAGS_model_dir.empty() || FLAGS_data.empty()) {
    return Fail("--model_dir and --data are required");
  }
  // The model config is checked (bounds, and the dense size it implies against the
  // manifest's) before any row or parameter is read or sized from it.
  pepnet::PublishedVersion version;
  pepnet::Status st = pepnet::FindPublishedVersion(FLAGS_model_dir, FLAGS_model_version, &version);
  if (st.ok()) st = pepnet::CheckManifestModel(version.top(), version.top_manifest_path());
  pepnet::PublishedModel model;
  if (st.ok()) st = pepnet::LoadPublishedVersion(version, &model);
  if (!st.ok()) return Fail(st.ToString());
  const pepnet::proto::ModelConfig& config = model.manifest->model();
  std::vector<std::string> files;
  for (size_t start = 0; start <= FLAGS_data.size();) {
    size_t comma = FLAGS_data.find(',', start);
    if (comma == std::string::npos) comma = FLAGS_data.size();
    if (comma > start) files.push_back(FLAGS_data.substr(start, comma - start));
    start = comma + 1;
  }
  std::unique_ptr<pepnet::EmbeddingStore> store = pepnet::MakeTableStore(std::move(model.table));
  pepnet::Trainer trainer(config, store.get(), 1, FLAGS_threads);
  st = trainer.LoadParams(model.dense.data(), model.dense.size());
  if (!st.ok()) return Fail(st.ToString());
  FILE* out = FLAGS_out.empty() ? stdout : fopen(FLAGS_out.c_str(), "w");
  if (out == nullptr) return Fail("cannot write " + FLAGS_out);
  for (int t = 0; t < config.task_size(); ++t) {
    fprintf(out, "%s%s", t ? "," : "", config.task(t).name().c_str());
  }
  fprintf(out, "\n");
  pepnet::DataReader reader(&config, files);
  pepnet::Batch batch;
  std::vector<float> scores;
  bool done = false;
  uint64_t samples = 0;
  while (!done) {
    st = reader.Next(config.batch_size(), &batch, &done);
    if (st.ok()) st = trainer.Predict(batch, &scores);
    if (!st.ok()) return Fail(st.ToString());
    for (size_t i = 0; i < batch.size; ++i) {
      for (int t = 0; t < config.task_size(); ++t) {
        const float score = scores[i * config.task_size() + t];
        // Finite weights give finite scores; a NaN here is a bug, never a result.
        if (!std::isfinite(score)) {
          return Fail("sample " + std::to_string(samples + i) + ", task " + config.task(t).name() +
                      ": score " + std::to_string(score));
        }
        fprintf(out, "%s%.9g", t ? "," : "", score);
      }
      fprintf(out, "\n");
    }
    samples += batch.size;
  }
  if (out != stdout && fclose(out) != 0) return Fail("cannot write " + FLAGS_out);
  fprintf(stderr,
          "pepnet_predict: scored %llu samples with version %llu (base %llu + %zu deltas)\n",
          static_cast<unsigned long long>(samples),
          static_cast<unsigned long long>(model.manifest->version()),
          static_cast<unsigned long long>(model.versions_applied.front()),
          model.versions_applied.size() - 1);
  return 0;
}
