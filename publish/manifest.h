// The names and the manifest of a published model version (docs/publish-format.md): the
// one place that knows how a publish folder is laid out.
#ifndef PEPNET_PUBLISH_MANIFEST_H_
#define PEPNET_PUBLISH_MANIFEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelManifest;
}

constexpr char kManifestFile[] = "manifest.pbtxt";
constexpr char kDenseFile[] = "dense.bin";

// "v-00000005": 8 digits, so name order is version order.
std::string VersionFolder(uint64_t version);
// "rows-3.bin".
std::string RowFileName(uint32_t shard);

// The version folders under `publish_dir`, oldest first: "v-" and digits only (unfinished
// ".tmp" ones and other names skipped).
Status ListVersions(const std::string& publish_dir, std::vector<std::string>* folders);

// Bounds of a manifest (ValidateManifest): shards of one cluster.
constexpr uint32_t kMaxRowFiles = 65536;

// The manifest of the version in `version_dir`, checked with ValidateManifest; errors
// name the file. A file over kMaxConfigFileBytes (ps/table_config.h) is refused unread.
Status ReadManifest(const std::string& version_dir, proto::ModelManifest* manifest);
// What a manifest must hold before anything is read or allocated from it: a version and
// a chain (parent, base) that fit it; one row file per shard, in shard order, named as
// the shards name them (so no path leaves the version folder), with counts that fit
// their bytes and add up to the totals; no deleted keys in a base; the dense file by its
// name, with at most kMaxDenseFloats floats (worker/model_config.h); a model. The model
// config itself is checked by CheckManifestModel (worker/model_config.h), which knows
// the model. Corruption naming `path` and the field.
Status ValidateManifest(const proto::ModelManifest& manifest, const std::string& path);
// Its text form, as written.
std::string FormatManifest(const proto::ModelManifest& manifest);

}  // namespace pepnet

#endif  // PEPNET_PUBLISH_MANIFEST_H_
