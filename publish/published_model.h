// Loading a published model (docs/publish-format.md): the newest version (or a chosen
// one) is its base version's rows, then every delta after the base up to it, in order,
// and its own dense parameters. Every file's checksum is verified, and every weight must
// be finite.
//
// In two steps, so that a caller who knows the model can check it between them
// (pepnet_predict: CheckManifestModel, worker/model_config.h) before anything is sized
// from it: FindPublishedVersion reads and checks the manifests only,
// LoadPublishedVersion reads the rows and the dense parameters.
#ifndef PEPNET_PUBLISH_PUBLISHED_MODEL_H_
#define PEPNET_PUBLISH_PUBLISHED_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelManifest;
}
class EmbeddingTable;

// A version to load and the versions it is built on: its base first, itself last.
struct PublishedVersion {
  std::string publish_dir;
  std::vector<std::string> folders;             // "v-00000004", ...
  std::vector<proto::ModelManifest> manifests;  // of the folders, in the same order
  const proto::ModelManifest& top() const;      // the version's own manifest
  std::string top_manifest_path() const;
  PublishedVersion();
  ~PublishedVersion();
};

struct PublishedModel {
  std::unique_ptr<proto::ModelManifest> manifest;  // of the loaded version
  std::unique_ptr<EmbeddingTable> table;           // every row of the model
  std::vector<float> dense;                        // PepNetParams::ForEach order
  std::vector<uint64_t> versions_applied;          // base first
  ~PublishedModel();
};

// The chain of version `version` (0 = the newest) under `publish_dir`, read from the
// version back to its base and nothing else (a broken folder outside the chain does not
// matter): every manifest of it is read and checked (ValidateManifest,
// publish/manifest.h), each must be the version its folder names, each delta must name
// the folder before it as its parent, and the base must be present and a base.
Status FindPublishedVersion(const std::string& publish_dir, uint64_t version,
                            PublishedVersion* out);
// Its rows (row files checked against their manifest's bytes, counts and checksum) and
// its dense parameters (ReadDenseFile).
Status LoadPublishedVersion(const PublishedVersion& version, PublishedModel* out);
// The row files of one version (in `version_dir`, "DIR/v-00000004"), shard by shard: each
// file's size checked against its manifest before it is read, then every deleted key and
// every row passed on with the file's path, then its counts compared with the manifest's.
// A file's checksum is known only at its end (ReadRowFile): on an error, drop what the
// callbacks built.
Status ReadVersionRows(
    const std::string& version_dir, const proto::ModelManifest& manifest,
    const std::function<Status(uint64_t key, const std::string& path)>& on_deleted,
    const std::function<Status(uint64_t key, const float* weights, uint32_t dim,
                               const std::string& path)>& on_row);
// Both steps, for a caller that checks the model itself afterwards.
Status LoadPublishedModel(const std::string& publish_dir, uint64_t version, PublishedModel* out);

// dense.bin: exactly `floats` float32 (the size is compared before anything is
// allocated), whose checksum is `checksum`, every one finite. Corruption naming `path`.
Status ReadDenseFile(const std::string& path, uint64_t floats, uint64_t checksum,
                     std::vector<float>* out);

}  // namespace pepnet

#endif  // PEPNET_PUBLISH_PUBLISHED_MODEL_H_
