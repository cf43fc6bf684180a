#include "report/run_report.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>
#include <vector>

#include "common/delete_reason.h"
#include "common/http_server.h"  // HtmlEscape

namespace pepnet {
namespace report_assets {
// Generated from report/vendor/chart.umd.js and report/report_template.html at build time
// (report/embed_assets.cmake).
extern const char kChartJs[];
extern const char kReportTemplate[];
}  // namespace report_assets

namespace {

// Ordered: tasks keep the order of the file, as the trainer's own output has them.
using Json = nlohmann::ordered_json;

// --- Checking a line ---------------------------------------------------------------------

// A field's type, as a reader of the error message calls it.
std::string TypeOf(const Json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "a number";
}

Status WrongType(const std::string& path, const Json& v, const char* want) {
  return Status::InvalidArgument("\"" + path + "\" is " + TypeOf(v) + ", not " + want);
}

// Absent, null (a metric that is NaN) or a number.
Status CheckNumbers(const Json& obj, const std::string& path,
                    std::initializer_list<const char*> keys) {
  for (const char* key : keys) {
    const auto it = obj.find(key);
    if (it != obj.end() && !it->is_null() && !it->is_number()) {
      return WrongType(path + key, *it, "a number");
    }
  }
  return Status::OK();
}

// Absent or an object.
Status CheckObject(const Json& obj, const std::string& path, const char* key) {
  const auto it = obj.find(key);
  if (it != obj.end() && !it->is_object()) return WrongType(path + key, *it, "an object");
  return Status::OK();
}

// The figures of a task, and of a (task, domain), in every line (worker/metrics.cc).
Status CheckSummary(const Json& obj, const std::string& path) {
  return CheckNumbers(obj, path,
                      {"samples", "auc", "gauc", "logloss", "positive_rate", "mean_score"});
}

Status CheckTask(const Json& task, const std::string& path) {
  if (!task.is_object()) return WrongType(path, task, "an object");
  PEPNET_RETURN_IF_ERROR(CheckSummary(task, path + "."));
  const auto domains = task.find("domains");
  if (domains == task.end()) return Status::OK();
  if (!domains->is_array()) return WrongType(path + ".domains", *domains, "an array");
  for (size_t i = 0; i < domains->size(); ++i) {
    const Json& d = (*domains)[i];
    const std::string where = path + ".domains[" + std::to_string(i) + "]";
    if (!d.is_object()) return WrongType(where, d, "an object");
    if (!d.contains("domain") || !d["domain"].is_number_integer()) {
      return Status::InvalidArgument("\"" + where + "\" has no integer \"domain\"");
    }
    PEPNET_RETURN_IF_ERROR(CheckSummary(d, where + "."));
  }
  return Status::OK();
}

// The known fields have the types the writers give them; unknown ones are left alone, so
// that a newer writer's lines still make a report.
Status CheckLine(const Json& j) {
  if (!j.is_object()) return Status::InvalidArgument("not a JSON object");
  if (!j.contains("pass") || !j["pass"].is_number_integer()) {
    return Status::InvalidArgument("no integer \"pass\"");
  }
  if (j.contains("name") && !j["name"].is_string()) {
    return WrongType("name", j["name"], "a string");
  }
  PEPNET_RETURN_IF_ERROR(CheckNumbers(j, "", {"samples", "seconds", "samples_per_s", "unix_ms"}));
  for (const char* section : {"tasks", "table", "run_auc", "commit", "publish"}) {
    PEPNET_RETURN_IF_ERROR(CheckObject(j, "", section));
  }
  if (j.contains("tasks")) {
    for (const auto& [name, task] : j["tasks"].items()) {
      PEPNET_RETURN_IF_ERROR(CheckTask(task, "tasks." + name));
    }
  }
  if (j.contains("table")) {
    const Json& t = j["table"];
    PEPNET_RETURN_IF_ERROR(CheckNumbers(
        t, "table.", {"shards", "rows", "bytes_used", "memory_limit_bytes", "max_bytes_used"}));
    PEPNET_RETURN_IF_ERROR(CheckObject(t, "table.", "deleted"));
    if (t.contains("deleted")) {
      for (const auto& [reason, n] : t["deleted"].items()) {
        if (!n.is_number()) return WrongType("table.deleted." + reason, n, "a number");
      }
    }
  }
  if (j.contains("run_auc")) {
    for (const auto& [name, r] : j["run_auc"].items()) {
      if (!r.is_object()) return WrongType("run_auc." + name, r, "an object");
      PEPNET_RETURN_IF_ERROR(
          CheckNumbers(r, "run_auc." + name + ".", {"auc", "samples", "error_bound"}));
    }
  }
  if (j.contains("commit")) {
    PEPNET_RETURN_IF_ERROR(CheckNumbers(
        j["commit"], "commit.", {"seconds", "rows_written", "rows_deleted", "bytes_on_disk"}));
  }
  if (j.contains("publish")) {
    PEPNET_RETURN_IF_ERROR(CheckNumbers(j["publish"], "publish.", {"seconds", "version", "rows"}));
  }
  return Status::OK();
}

Status ParseLines(const std::string& jsonl, const std::string& source, std::vector<Json>* lines) {
  size_t begin = 0;
  for (size_t number = 1; begin < jsonl.size(); ++number) {
    size_t end = jsonl.find('\n', begin);
    if (end == std::string::npos) end = jsonl.size();
    const std::string text = jsonl.substr(begin, end - begin);
    begin = end + 1;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = source + ":" + std::to_string(number);
    Json j;
    try {
      j = Json::parse(text);
    } catch (const Json::parse_error& e) {
      // what() leads with "[json.exception.parse_error.101] ", which tells a reader
      // nothing, and counts lines within the one line parsed ("at line 1, column 9").
      std::string what = e.what();
      const size_t bracket = what.find("] ");
      if (bracket != std::string::npos) what = what.substr(bracket + 2);
      const size_t inner_line = what.find("at line 1, ");
      if (inner_line != std::string::npos) what.replace(inner_line, 11, "at ");
      return Status::InvalidArgument(where + ": malformed JSON: " + what);
    }
    Status st = CheckLine(j);
    if (!st.ok()) return Status::InvalidArgument(where + ": " + st.message());
    if (!lines->empty() && j["pass"].get<int64_t>() <= lines->back()["pass"].get<int64_t>()) {
      return Status::InvalidArgument(
          where + ": pass " + std::to_string(j["pass"].get<int64_t>()) + " does not follow pass " +
          std::to_string(lines->back()["pass"].get<int64_t>()) + " (passes must increase)");
    }
    lines->push_back(std::move(j));
  }
  if (lines->empty()) return Status::InvalidArgument(source + ": no line: the run has no pass");
  return Status::OK();
}

// --- What the page draws -----------------------------------------------------------------

const Json& Null() {
  static const Json* const null = new Json(nullptr);
  return *null;
}

// v[k1][k2]..., or null where a step is absent. A reference into `v`: no copy.
const Json& Get(const Json& v, std::initializer_list<const char*> path) {
  const Json* at = &v;
  for (const char* key : path) {
    if (!at->is_object()) return Null();
    const auto it = at->find(key);
    if (it == at->end()) return Null();
    at = &*it;
  }
  return *at;
}

// The element of tasks.<task>.domains for `domain`, or null.
const Json& DomainOf(const Json& line, const std::string& task, int64_t domain) {
  const Json& domains = Get(line, {"tasks", task.c_str(), "domains"});
  if (!domains.is_array()) return Null();
  for (const Json& d : domains) {
    if (d["domain"].get<int64_t>() == domain) return d;
  }
  return Null();
}

bool IsNum(const Json& v) { return v.is_number(); }

double Num(const Json& v) { return v.get<double>(); }

class ReportData {
 public:
  explicit ReportData(const std::vector<Json>& lines) : lines_(lines) {
    for (const Json& line : lines_) {
      const Json& tasks = Get(line, {"tasks"});
      if (!tasks.is_object()) continue;
      for (const auto& [name, task] : tasks.items()) {
        if (!domains_.count(name)) task_order_.push_back(name);
        std::set<int64_t>& ids = domains_[name];
        if (!task.contains("domains")) continue;
        for (const Json& d : task["domains"]) ids.insert(d["domain"].get<int64_t>());
      }
    }
  }

  Json Build(const std::string& source, const std::string& title) const {
    Json out;
    out["title"] = title;
    out["source"] = source;
    out["passes"] = Series([](const Json& l) { return l["pass"]; });
    out["names"] = Series([](const Json& l) { return Get(l, {"name"}); });
    out["tasks"] = Tasks();
    out["samples_per_s"] = Series([](const Json& l) { return Get(l, {"samples_per_s"}); });
    out["seconds"] = Series([](const Json& l) { return Get(l, {"seconds"}); });
    Json table;
    for (const char* key : {"rows", "bytes_used", "max_bytes_used"}) {
      table[key] = Series([key](const Json& l) { return Get(l, {"table", key}); });
    }
    // 0 means no limit: null draws no point there, and no line at all when never set.
    table["memory_limit_bytes"] = Series([](const Json& l) {
      const Json& v = Get(l, {"table", "memory_limit_bytes"});
      return IsNum(v) && Num(v) > 0 ? v : Json(nullptr);
    });
    out["table"] = table;
    out["deleted"] = Deleted();
    out["commit_seconds"] = Series([](const Json& l) { return Get(l, {"commit", "seconds"}); });
    out["publish_seconds"] = Series([](const Json& l) { return Get(l, {"publish", "seconds"}); });
    out["summary"] = Summary();
    return out;
  }

 private:
  template <typename F>
  Json Series(F value) const {
    Json values = Json::array();
    for (const Json& line : lines_) values.push_back(value(line));
    return values;
  }

  Json Tasks() const {
    Json tasks = Json::array();
    for (const std::string& name : task_order_) {
      Json t;
      t["name"] = name;
      for (const char* key : {"auc", "gauc", "logloss"}) {
        t[key] = Series([&](const Json& l) { return Get(l, {"tasks", name.c_str(), key}); });
      }
      Json domains = Json::array();
      for (int64_t id : domains_.at(name)) {
        Json d;
        d["domain"] = id;
        for (const char* key : {"auc", "logloss"}) {
          d[key] = Series([&](const Json& l) { return Json(Get(DomainOf(l, name, id), {key})); });
        }
        domains.push_back(std::move(d));
      }
      t["domains"] = std::move(domains);
      tasks.push_back(std::move(t));
    }
    return tasks;
  }

  // The reasons any line names: the table's own first, in their order, then others.
  std::vector<std::string> Reasons() const {
    std::vector<std::string> reasons;
    for (int r = 0; r < kNumDeleteReasons; ++r) {
      reasons.push_back(DeleteReasonName(static_cast<DeleteReason>(r)));
    }
    std::vector<std::string> named;
    for (const Json& line : lines_) {
      const Json& deleted = Get(line, {"table", "deleted"});
      if (!deleted.is_object()) continue;
      for (const auto& [reason, n] : deleted.items()) {
        if (std::find(named.begin(), named.end(), reason) == named.end()) named.push_back(reason);
      }
    }
    std::vector<std::string> out;
    for (const std::string& r : reasons) {
      if (std::find(named.begin(), named.end(), r) != named.end()) out.push_back(r);
    }
    for (const std::string& r : named) {
      if (std::find(reasons.begin(), reasons.end(), r) == reasons.end()) out.push_back(r);
    }
    return out;
  }

  Json Deleted() const {
    Json deleted = Json::object();
    for (const std::string& reason : Reasons()) {
      deleted[reason] = Series([&](const Json& l) {
        return Get(l, {"table", "deleted", reason.c_str()});
      });
    }
    return deleted;
  }

  // The samples of a line: its own count, else the largest task's (every task sees every
  // sample of a pass), else null.
  static Json SamplesOf(const Json& line) {
    const Json& own = Get(line, {"samples"});
    if (IsNum(own)) return own;
    Json most = nullptr;
    const Json& tasks = Get(line, {"tasks"});
    if (!tasks.is_object()) return most;
    for (const auto& [name, task] : tasks.items()) {
      const Json& n = Get(task, {"samples"});
      if (IsNum(n) && (most.is_null() || Num(n) > Num(most))) most = n;
    }
    return most;
  }

  // The last line's value of a section, or null if no line has the section.
  Json Last(const char* section) const {
    for (auto it = lines_.rbegin(); it != lines_.rend(); ++it) {
      const Json& v = Get(*it, {section});
      if (!v.is_null()) return v;
    }
    return nullptr;
  }

  // The sum of one number over the lines that have it.
  double Sum(const char* section, const char* key) const {
    double sum = 0;
    for (const Json& line : lines_) {
      const Json& v = Get(line, {section, key});
      if (IsNum(v)) sum += Num(v);
    }
    return sum;
  }

  Json Summary() const {
    const Json& first = lines_.front();
    const Json& last = lines_.back();
    Json s;
    Json notes = Json::array();
    s["passes"] = lines_.size();
    s["first_pass"] = first["pass"];
    s["last_pass"] = last["pass"];

    double samples = 0;
    int samples_passes = 0;
    for (const Json& line : lines_) {
      const Json n = SamplesOf(line);
      if (IsNum(n)) {
        samples += Num(n);
        ++samples_passes;
      }
    }
    s["total_samples"] = samples_passes ? Json(samples) : Json(nullptr);
    s["samples_passes"] = samples_passes;
    if (!samples_passes) notes.push_back("No line counts its samples: total samples unknown.");

    const Json& first_ms = Get(first, {"unix_ms"});
    const Json& first_seconds = Get(first, {"seconds"});
    const Json& last_ms = Get(last, {"unix_ms"});
    s["first_unix_ms"] = IsNum(first_ms) && IsNum(first_seconds)
                             ? Json(Num(first_ms) - 1000 * Num(first_seconds))
                             : first_ms;
    s["last_unix_ms"] = last_ms;
    bool every_line_timed = true;
    double seconds = 0;
    for (const Json& line : lines_) {
      const Json& v = Get(line, {"seconds"});
      every_line_timed = every_line_timed && IsNum(v);
      if (IsNum(v)) seconds += Num(v);
    }
    if (IsNum(s["first_unix_ms"]) && IsNum(last_ms)) {
      s["wall_seconds"] = (Num(last_ms) - Num(s["first_unix_ms"])) / 1000;
      s["wall_from"] = "by unix_ms";
    } else if (every_line_timed) {
      s["wall_seconds"] = seconds;
      s["wall_from"] = "sum of pass seconds";
    } else {
      s["wall_seconds"] = nullptr;
      s["wall_from"] = nullptr;
      notes.push_back("Neither unix_ms nor seconds in every line: wall time unknown.");
    }

    Json tasks = Json::array();
    const Json& run_auc = Get(last, {"run_auc"});
    for (const std::string& name : task_order_) {
      Json t;
      t["name"] = name;
      t["run_auc"] = Get(run_auc, {name.c_str(), "auc"});
      t["run_auc_samples"] = Get(run_auc, {name.c_str(), "samples"});
      t["run_auc_error_bound"] = Get(run_auc, {name.c_str(), "error_bound"});
      for (const char* key : {"auc", "gauc", "logloss"}) {
        t[std::string("last_") + key] = Get(last, {"tasks", name.c_str(), key});
      }
      tasks.push_back(std::move(t));
    }
    s["tasks"] = std::move(tasks);
    if (task_order_.empty()) notes.push_back("No line has task metrics.");
    if (run_auc.is_null()) {
      notes.push_back(
          "No run_auc in the last line: the AUC over the whole run is not known (the "
          "single-process trainer does not write it).");
    }
    s["table"] = Last("table");
    if (s["table"].is_null()) notes.push_back("No table figures in any line.");
    Json deleted_total = nullptr;
    for (const std::string& reason : Reasons()) {
      double sum = 0;
      for (const Json& line : lines_) {
        const Json& v = Get(line, {"table", "deleted", reason.c_str()});
        if (IsNum(v)) sum += Num(v);
      }
      deleted_total[reason] = sum;
    }
    s["deleted_total"] = std::move(deleted_total);
    if (Last("commit").is_null()) {
      s["commit"] = nullptr;
      notes.push_back("No commit in any line: a memory-only cluster commits nothing.");
    } else {
      s["commit"] = {{"seconds_total", Sum("commit", "seconds")},
                     {"last_bytes_on_disk", Get(Last("commit"), {"bytes_on_disk"})}};
    }
    if (Last("publish").is_null()) {
      s["publish"] = nullptr;
      notes.push_back("No publish in any line: the run published no model version.");
    } else {
      s["publish"] = {{"seconds_total", Sum("publish", "seconds")},
                      {"last_version", Get(Last("publish"), {"version"})}};
    }
    s["notes"] = std::move(notes);
    return s;
  }

  const std::vector<Json>& lines_;
  std::vector<std::string> task_order_;
  std::map<std::string, std::set<int64_t>> domains_;
};

// --- The page ------------------------------------------------------------------------------

// JSON that can stand inside <script>: no "<" at all, so that neither "</script" nor
// "<!--" in a task name can end or change the element (JSON reads \u003c as "<").
std::string ScriptSafeJson(const Json& value) {
  const std::string json = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  std::string out;
  out.reserve(json.size());
  for (char c : json) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

// The template with every "@NAME@" of `values` replaced; the values are not scanned, so
// data that happens to hold a marker stays as it is.
std::string FillTemplate(const std::string& tmpl,
                         const std::vector<std::pair<std::string, std::string>>& values) {
  std::string out;
  size_t at = 0;
  while (at < tmpl.size()) {
    bool replaced = false;
    if (tmpl[at] == '@') {
      for (const auto& [marker, value] : values) {
        if (tmpl.compare(at, marker.size(), marker) == 0) {
          out += value;
          at += marker.size();
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out += tmpl[at++];
  }
  return out;
}

}  // namespace

Status RenderRunReport(const std::string& jsonl, const std::string& source,
                       const std::string& title, std::string* html) {
  std::vector<Json> lines;
  PEPNET_RETURN_IF_ERROR(ParseLines(jsonl, source, &lines));
  const Json data = ReportData(lines).Build(source, title);
  *html = FillTemplate(report_assets::kReportTemplate, {{"@TITLE@", HtmlEscape(title)},
                                                        {"@CHART_JS@", report_assets::kChartJs},
                                                        {"@REPORT_DATA@", ScriptSafeJson(data)}});
  return Status::OK();
}

Status WriteRunReport(Env* env, const std::string& run_dir, const std::string& out_path) {
  const std::string path = run_dir + "/" + kRunMetricsFile;
  std::string jsonl;
  Status st = env->ReadFile(path, &jsonl);
  if (st.code() == Status::kNotFound) {
    return Status::NotFound(path + ": no such file (the run's per-pass metrics)");
  }
  PEPNET_RETURN_IF_ERROR(st);
  std::string html;
  PEPNET_RETURN_IF_ERROR(RenderRunReport(jsonl, path, "Run report: " + run_dir, &html));
  return WriteFileDurably(env, out_path, html);
}

}  // namespace pepnet
