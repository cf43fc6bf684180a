// Published model versions for tests and fuzz targets of their readers: a small model's
// rows and dense parameters written as the coordinator writes them (VersionWriter, one
// row file per shard), and the means to break one file of a version at a time. Every
// step returns a Status, so that fuzz targets (without gtest) use it too.
#ifndef PEPNET_TESTS_PUBLISH_UTIL_H_
#define PEPNET_TESTS_PUBLISH_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "common/env.h"
#include "common/hash.h"
#include "common/text_proto.h"
#include "proto/model_config.pb.h"
#include "proto/publish.pb.h"
#include "ps/embedding_table.h"
#include "ps/table_config.h"
#include "publish/manifest.h"
#include "publish/row_file.h"
#include "publish/version_writer.h"
#include "worker/model_config.h"

namespace pepnet {
namespace testing {

// Two domains, one task, a domain slot and two others; small enough to score by hand.
constexpr char kPublishedModelConfig[] = R"(
num_domains: 2
task { name: "click" }
slot { name: "domain" id: 1 role: DOMAIN dim: 4 }
slot { name: "user" id: 2 role: USER dim: 8 }
slot { name: "item" id: 3 dim: 8 }
tower: 8
batch_size: 16
data { domain_column: "domain" }
)";

// Key `id` of `slot` in the model's slot_bits (10).
inline uint64_t ModelKey(uint32_t slot, uint64_t id) { return MakeFeatureKey(slot, Mix64(id), 10); }

class TestPublisher {
 public:
  explicit TestPublisher(std::string publish_dir) : dir_(std::move(publish_dir)) {
    init_ = ParseModelConfig(kPublishedModelConfig, "model", &model_);
    if (init_.ok()) init_ = EmbeddingTable::Create(TableOptionsFor(model_, 7), &table_);
  }
  // Whether the model and its table were made (false only for a broken build).
  const Status& init_status() const { return init_; }

  const proto::ModelConfig& model() const { return model_; }
  EmbeddingTable* table() { return table_.get(); }
  uint64_t dense_floats() const { return ModelSizeOf(model_).dense_floats; }

  // Starts pass `pass` and gives `rows` rows of each non-domain slot (ids from `first`)
  // the weights `value`: the rows a delta of the pass holds.
  Status Train(uint32_t pass, uint64_t first, int rows, float value) {
    PEPNET_RETURN_IF_ERROR(init_);
    PEPNET_RETURN_IF_ERROR(table_->BeginPass(pass));
    const std::vector<float> w(8, value);
    for (uint32_t slot : {2u, 3u}) {
      for (int i = 0; i < rows; ++i) {
        PEPNET_RETURN_IF_ERROR(table_->SetWeights(ModelKey(slot, first + i), w.data(), 8));
      }
    }
    return Status::OK();
  }

  // Publishes the table as version `version` (pass = version), a base or a delta of
  // base `base`, with dense parameters `dense` (default: dense_floats() of 0.01).
  Status Publish(uint64_t version, bool is_base, uint64_t base, std::vector<float> dense = {}) {
    PEPNET_RETURN_IF_ERROR(init_);
    if (dense.empty()) dense.assign(dense_floats(), 0.01f);
    VersionWriter writer(Env::Default(), dir_, version);
    PEPNET_RETURN_IF_ERROR(writer.Begin());
    RowFileInfo info;
    const uint32_t pass = static_cast<uint32_t>(version);
    PEPNET_RETURN_IF_ERROR(
        WriteRowFile(Env::Default(), *table_, is_base, pass, writer.RowFilePath(0), &info));
    proto::ModelManifest m;
    m.set_version(version);
    m.set_pass(pass);
    m.set_pass_name("pass-" + std::to_string(pass));
    m.set_parent_version(version - 1);
    m.set_is_base(is_base);
    m.set_base_version(base);
    m.set_table_seed(7);
    *m.mutable_model() = model_;
    AddRowFile(0, info, &m);
    return writer.Finish(dense.data(), dense.size(), &m);
  }

  std::string VersionDir(uint64_t version) const { return dir_ + "/" + VersionFolder(version); }

  // Reads version `version`'s manifest as written (not validated), lets `edit` change
  // it, and writes it back.
  template <typename Edit>
  Status EditManifest(uint64_t version, Edit edit) {
    const std::string path = VersionDir(version) + "/" + kManifestFile;
    std::string text;
    PEPNET_RETURN_IF_ERROR(ReadFileToString(path, "manifest", &text));
    proto::ModelManifest m;
    PEPNET_RETURN_IF_ERROR(ParseTextProto(text, path, &m));
    edit(&m);
    return WriteFileDurably(Env::Default(), path, FormatManifest(m));
  }

 private:
  const std::string dir_;
  proto::ModelConfig model_;
  std::unique_ptr<EmbeddingTable> table_;
  Status init_;
};

}  // namespace testing
}  // namespace pepnet

#endif  // PEPNET_TESTS_PUBLISH_UTIL_H_
