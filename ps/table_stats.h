// The table's and its storage's figures in the stats registry: what a shard's STATS reply,
// `pepnet_ctl stats` and /metrics report about its rows, bytes, deletions and admission.
#ifndef PEPNET_PS_TABLE_STATS_H_
#define PEPNET_PS_TABLE_STATS_H_

#include "ps/embedding_table.h"

namespace pepnet {

class StatSet;
namespace proto {
class StorageStats;
}

void AddTableStats(const TableStatsSnapshot& t, StatSet* out);
// A durable shard's storage (ShardStore::Stats), under "storage.*" in the JSON.
void AddStorageStats(const proto::StorageStats& st, StatSet* out);

}  // namespace pepnet

#endif  // PEPNET_PS_TABLE_STATS_H_
