// Loading a published model (docs/publish-format.md): the newest version (or a chosen
// one) is its base version's rows, then every delta after the base up to it, in order,
// and its own dense parameters. Every file's checksum is verified.
#ifndef PEPNET_PUBLISH_PUBLISHED_MODEL_H_
#define PEPNET_PUBLISH_PUBLISHED_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelManifest;
}
class EmbeddingTable;

struct PublishedModel {
  std::unique_ptr<proto::ModelManifest> manifest;  // of the loaded version
  std::unique_ptr<EmbeddingTable> table;           // every row of the model
  std::vector<float> dense;                        // PepNetParams::ForEach order
  std::vector<uint64_t> versions_applied;          // base first
  ~PublishedModel();
};

// Loads version `version` (0 = the newest) from `publish_dir`.
Status LoadPublishedModel(const std::string& publish_dir, uint64_t version, PublishedModel* out);

}  // namespace pepnet

#endif  // PEPNET_PUBLISH_PUBLISHED_MODEL_H_
