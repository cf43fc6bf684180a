// Rendering of shard statistics for people (a table) and machines (JSON).
#ifndef PEPNET_COMMON_STATS_FORMAT_H_
#define PEPNET_COMMON_STATS_FORMAT_H_

#include <string>
#include <vector>

namespace pepnet {
namespace proto {
class ServerStats;
}

// Rendered from each reply's stats registry (common/stats.h), so a figure a shard adds
// appears here without a change: one block per shard plus a TOTAL block (the sum as each
// stat's `total` says). Labelled by `slot`: one line per slot. Units from the key:
// `*_bytes` as KiB/MiB/GiB, `*_ns` as ms, `*_unix_ms` as a UTC time.
std::string FormatStatsTable(const std::vector<proto::ServerStats>& shards);

// {"shards": [...], "total": {...}}: every stat under its `json` key, one JSON object on
// one line; each object starts with "shard_id" and "num_shards".
std::string FormatStatsJson(const std::vector<proto::ServerStats>& shards);

}  // namespace pepnet

#endif  // PEPNET_COMMON_STATS_FORMAT_H_
