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

// The version folders under `publish_dir`, oldest first (unfinished ".tmp" ones skipped).
Status ListVersions(const std::string& publish_dir, std::vector<std::string>* folders);

// The manifest of the version in `version_dir`; errors name the file.
Status ReadManifest(const std::string& version_dir, proto::ModelManifest* manifest);
// Its text form, as written.
std::string FormatManifest(const proto::ModelManifest& manifest);

}  // namespace pepnet

#endif  // PEPNET_PUBLISH_MANIFEST_H_
