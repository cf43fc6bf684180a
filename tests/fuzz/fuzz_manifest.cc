// Fuzz target: the manifest reader (publish/manifest.h) and what pepnet_predict does
// with a manifest: FindPublishedVersion (every manifest of the chain read and checked),
// CheckManifestModel (its model config and the dense size it implies), and
// LoadPublishedVersion (the row files and dense.bin checked against it).
//
// The publish folder holds a real base, version 1, and version 2, a delta of it whose
// manifest is the input; its row file and dense.bin are the real ones, so a manifest
// that matches them loads whole.
//
// Input: the text of version 2's manifest.pbtxt.
#include <glog/logging.h>

#include <cmath>
#include <string>

#include "proto/publish.pb.h"
#include "ps/embedding_table.h"
#include "publish/published_model.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/publish_util.h"
#include "worker/model_config.h"

namespace pepnet {
namespace {

void Expect(bool ok, const std::string& what) {
  if (ok) return;
  fprintf(stderr, "manifest: %s\n", what.c_str());
  abort();
}

struct Setup {
  fuzz::TempDirectory dir{"manifest"};
  std::string manifest_path;
  Setup() {
    testing::TestPublisher publisher(dir.path());
    fuzz::Require(publisher.Train(1, 0, 5, 0.5f), "train pass 1");
    fuzz::Require(publisher.Publish(1, true, 1), "publish the base");
    fuzz::Require(publisher.Train(2, 100, 3, 0.25f), "train pass 2");
    fuzz::Require(publisher.Publish(2, false, 1), "publish the delta");
    manifest_path = publisher.VersionDir(2) + "/" + kManifestFile;
  }
};

}  // namespace
}  // namespace pepnet

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pepnet;
  // Static, not leaked: its folder goes when the fuzzer exits.
  static Setup setup_object;
  Setup* const setup = &setup_object;
  fuzz::WriteWholeFile(setup->manifest_path, data, size);
  PublishedVersion version;
  if (!FindPublishedVersion(setup->dir.path(), 0, &version).ok()) return 0;
  Expect(version.folders.size() == version.manifests.size() && !version.folders.empty(),
         "a chain without versions");
  if (!CheckManifestModel(version.top(), version.top_manifest_path()).ok()) return 0;
  PublishedModel model;
  if (!LoadPublishedVersion(version, &model).ok()) return 0;
  Expect(model.dense.size() == version.top().dense_floats(), "dense size");
  Expect(model.dense.size() == ModelSizeOf(model.manifest->model()).dense_floats,
         "dense size differs from the model's");
  for (float v : model.dense) Expect(std::isfinite(v), "a non-finite dense parameter");
  model.table->ForEachRow([](uint64_t, const float* w, uint32_t dim, const RowMeta&) {
    for (uint32_t i = 0; i < dim; ++i) Expect(std::isfinite(w[i]), "a non-finite weight");
  });
  return 0;
}
