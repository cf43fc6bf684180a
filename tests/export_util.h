// Exports a shard's rows the way the coordinator does: into the version's temporary
// folder under the shards' --export_dir, through a coordinator-role client.
#ifndef PEPNET_TESTS_EXPORT_UTIL_H_
#define PEPNET_TESTS_EXPORT_UTIL_H_

#include <string>
#include <vector>

#include "common/env.h"
#include "common/ps_client.h"
#include "proto/ps.pb.h"
#include "publish/manifest.h"

namespace pepnet {
namespace testing {

// Every shard writes its rows (all, or those of `pass`) as version `version`; `paths`
// gets the files, one per shard, in shard order.
inline Status ExportShardRows(PsClient* client, const std::string& export_dir, uint64_t version,
                              uint32_t pass, bool all, std::vector<std::string>* paths,
                              std::vector<proto::ExportReply>* replies) {
  const std::string folder = export_dir + "/" + VersionFolder(version) + ".tmp";
  PEPNET_RETURN_IF_ERROR(CreateDirs(Env::Default(), folder));
  PEPNET_RETURN_IF_ERROR(client->ExportRows(pass, all, version, replies));
  paths->clear();
  for (uint32_t s = 0; s < client->num_shards(); ++s) {
    paths->push_back(folder + "/" + RowFileName(s));
  }
  return Status::OK();
}

}  // namespace testing
}  // namespace pepnet

#endif  // PEPNET_TESTS_EXPORT_UTIL_H_
