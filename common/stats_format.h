// Rendering of shard statistics for people (a table) and machines (JSON).
#ifndef PEPNET_COMMON_STATS_FORMAT_H_
#define PEPNET_COMMON_STATS_FORMAT_H_

#include <string>
#include <vector>

namespace pepnet {
namespace proto {
class ServerStats;
}

// One block per shard plus a TOTAL block: rows, rows, bytes and deletions per slot,
// bytes by category, memory limit and high-water mark, admission counters, score
// quantiles, worst pauses, request counters. (The TOTAL has no score quantiles.)
std::string FormatStatsTable(const std::vector<proto::ServerStats>& shards);

// {"shards": [...], "total": {...}} with the same fields, one JSON object on one line.
std::string FormatStatsJson(const std::vector<proto::ServerStats>& shards);

// Sum of all shards (shard_id and num_shards of the first; uptime, pass and pauses the
// maximum; no score quantiles).
proto::ServerStats TotalStats(const std::vector<proto::ServerStats>& shards);

}  // namespace pepnet

#endif  // PEPNET_COMMON_STATS_FORMAT_H_
