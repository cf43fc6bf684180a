// The Prometheus text exposition format 0.0.4 of a stats registry (common/stats.h), as
// the admin port's /metrics serves it.
#ifndef PEPNET_COMMON_PROMETHEUS_H_
#define PEPNET_COMMON_PROMETHEUS_H_

#include <string>

namespace pepnet {

class StatSet;

// The content type /metrics answers with.
extern const char kPrometheusContentType[];

// One `# HELP` and `# TYPE` per metric family, then its samples; a family's samples are
// grouped even when the set has them apart. Histograms get cumulative `_bucket{le=...}`
// lines, `+Inf`, `_sum` and `_count`. Label values are escaped as the format says.
std::string FormatPrometheus(const StatSet& set);

}  // namespace pepnet

#endif  // PEPNET_COMMON_PROMETHEUS_H_
