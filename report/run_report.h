// The run report: one self-contained HTML page drawn from the per-pass metrics a run
// writes (metrics.jsonl, one JSON object per pass): quality per task and per domain,
// throughput, the table's rows and bytes against its memory limit, deletions by reason,
// commit and publish times, and a summary of the whole run (docs/operations.md, "Run
// report").
//
// The page carries everything it needs (the charting library and the data are inlined)
// and loads nothing: it can be mailed, archived, or opened on a machine without network.
//
// Plain functions without shared state: safe to call from any number of threads.
#ifndef PEPNET_REPORT_RUN_REPORT_H_
#define PEPNET_REPORT_RUN_REPORT_H_

#include <string>

#include "common/env.h"
#include "common/status.h"

namespace pepnet {

// The file in a run folder that the report reads.
constexpr char kRunMetricsFile[] = "metrics.jsonl";

// Renders the page for `jsonl`, the text of a metrics file. `source` names that file in
// error messages ("run/metrics.jsonl:7: ..."); `title` heads the page.
//
// Every field but "pass" may be absent from a line; the page shows what is there and
// says what is not. InvalidArgument, naming `source` and the line, for malformed JSON,
// a line without an integer "pass", passes that do not increase, a known field of the
// wrong type, or a file without any line.
Status RenderRunReport(const std::string& jsonl, const std::string& source,
                       const std::string& title, std::string* html);

// Reads run_dir/metrics.jsonl through `env` (borrowed) and writes the page to `out_path`
// (WriteFileDurably: a reader sees the old page or the whole new one). NotFound, naming
// the path, when there is no metrics file.
Status WriteRunReport(Env* env, const std::string& run_dir, const std::string& out_path);

}  // namespace pepnet

#endif  // PEPNET_REPORT_RUN_REPORT_H_
