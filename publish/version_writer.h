// VersionWriter: writes one model version into a publish folder so that a reader sees all
// of it or nothing, across crashes too: every file goes into v-XXXXXXXX.tmp/ durably
// (a temporary name, fsync, rename), then the folder is synced, renamed into place, and
// the publish folder synced. The shards write their row files into the temporary folder
// themselves (EXPORT_ROWS); the writer does the dense parameters and the manifest.
//
// One writer per version, used by one thread.
#ifndef PEPNET_PUBLISH_VERSION_WRITER_H_
#define PEPNET_PUBLISH_VERSION_WRITER_H_

#include <cstdint>
#include <string>

#include "common/env.h"
#include "common/status.h"

namespace pepnet {
namespace proto {
class ModelManifest;
}

class VersionWriter {
 public:
  // `env` is borrowed.
  VersionWriter(Env* env, std::string publish_dir, uint64_t version);

  // Creates the publish folder if it is absent and an empty temporary folder for the
  // version (removing what an interrupted publish left of one).
  Status Begin();
  // Where shard `shard` writes its row file.
  std::string RowFilePath(uint32_t shard) const;
  // Writes dense.bin and the manifest (setting its dense fields), then renames the
  // version into place. InvalidArgument if the version exists already.
  Status Finish(const float* dense, uint64_t num_dense, proto::ModelManifest* manifest);

  // Whether `version` is in place under `publish_dir` as the version of `pass`, folder
  // `pass_name` (a republish after a crash between the rename and the coordinator's
  // record finds it).
  static bool IsPublished(const std::string& publish_dir, uint64_t version, uint32_t pass,
                          const std::string& pass_name);

 private:
  Env* const env_;
  const std::string publish_dir_;
  const std::string final_dir_, tmp_dir_;
};

}  // namespace pepnet

#endif  // PEPNET_PUBLISH_VERSION_WRITER_H_
