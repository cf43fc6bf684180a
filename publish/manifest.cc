#include "publish/manifest.h"

#include <dirent.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cstdio>

#include "common/text_proto.h"
#include "proto/publish.pb.h"

namespace pepnet {

std::string VersionFolder(uint64_t version) {
  char name[32];
  snprintf(name, sizeof(name), "v-%08llu", static_cast<unsigned long long>(version));
  return name;
}

std::string RowFileName(uint32_t shard) { return "rows-" + std::to_string(shard) + ".bin"; }

Status ListVersions(const std::string& publish_dir, std::vector<std::string>* folders) {
  folders->clear();
  DIR* d = opendir(publish_dir.c_str());
  if (d == nullptr) return Status::NotFound("cannot read the model folder " + publish_dir);
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("v-", 0) == 0 && name.find('.') == std::string::npos) folders->push_back(name);
  }
  closedir(d);
  std::sort(folders->begin(), folders->end());
  return Status::OK();
}

Status ReadManifest(const std::string& version_dir, proto::ModelManifest* manifest) {
  const std::string path = version_dir + "/" + kManifestFile;
  std::string text;
  PEPNET_RETURN_IF_ERROR(ReadFileToString(path, "model manifest", &text));
  return ParseTextProto(text, path, manifest);
}

std::string FormatManifest(const proto::ModelManifest& manifest) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(manifest, &text);
  return "# pepnet-ps model version (docs/publish-format.md)\n" + text;
}

}  // namespace pepnet
