// pepnet_ctl report: the page for a run's metrics.jsonl, rendered by headless Chromium,
// draws every point the file holds, loads nothing, and bad input is refused with the
// file and line named.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/env.h"
#include "report/run_report.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

using Json = nlohmann::ordered_json;

const std::vector<std::string> kTasks = {"like", "forward", "follow"};
constexpr int kPasses = 5;
constexpr int kDomains = 2;
constexpr int kSamples = 40000;
constexpr int64_t kStartMs = 1764600000000;
constexpr double kPassSeconds = 2.1;

// What the coordinator of a run writes; parts are left out as runs leave them out.
struct FixtureOptions {
  bool cluster = true;  // pepnet_train writes only pass and tasks
  uint64_t memory_limit_bytes = 8 << 20;
  bool commit = true;            // a memory-only cluster does not commit
  int first_published_pass = 2;  // the first pass that publishes (0: none)
};

// Pass 1 of "follow" saw one class only: its AUC, and its domain 0's, are NaN (null).
bool NullAuc(int pass, const std::string& task) { return pass == 1 && task == "follow"; }

Json Summary(int pass, int t, int samples, bool null_auc) {
  Json s;
  s["samples"] = samples;
  s["auc"] = null_auc ? Json(nullptr) : Json(0.62 + 0.015 * pass + 0.02 * t);
  s["gauc"] = null_auc ? Json(nullptr) : Json(0.6 + 0.012 * pass + 0.02 * t);
  s["logloss"] = 0.55 - 0.02 * pass - 0.1 * t;
  s["positive_rate"] = 0.2 / (t + 1);
  s["mean_score"] = 0.21 / (t + 1);
  return s;
}

std::string Fixture(const FixtureOptions& o) {
  std::string jsonl;
  for (int pass = 1; pass <= kPasses; ++pass) {
    Json line;
    line["pass"] = pass;
    Json tasks;
    for (size_t t = 0; t < kTasks.size(); ++t) {
      Json task = Summary(pass, t, kSamples, NullAuc(pass, kTasks[t]));
      Json domains = Json::array();
      for (int d = 0; d < kDomains; ++d) {
        Json dom = {{"domain", d}};
        dom.update(Summary(pass, t, kSamples / kDomains, NullAuc(pass, kTasks[t]) && d == 0));
        domains.push_back(dom);
      }
      task["domains"] = domains;
      tasks[kTasks[t]] = task;
    }
    line["tasks"] = tasks;
    if (o.cluster) {
      line["name"] = "pass-0000" + std::to_string(pass);
      line["samples"] = kSamples;
      line["seconds"] = kPassSeconds;
      line["samples_per_s"] = kSamples / kPassSeconds;
      line["unix_ms"] = kStartMs + static_cast<int64_t>(pass * kPassSeconds * 1000);
      line["table"] = {{"shards", 2},
                       {"rows", 20000 + 3000 * pass},
                       {"bytes_used", (3 + pass) << 20},
                       {"memory_limit_bytes", o.memory_limit_bytes},
                       {"max_bytes_used", (4 + pass) << 20},
                       {"deleted",
                        {{"score", 0},
                         {"memory", pass >= 4 ? 100 * pass : 0},
                         {"cap", 0},
                         {"ttl", pass >= 3 ? 457 : 0},
                         {"min_updates", pass == 5 ? 12 : 0}}}};
      Json run_auc;
      for (size_t t = 0; t < kTasks.size(); ++t) {
        run_auc[kTasks[t]] = {{"auc", 0.7 + 0.01 * t + 0.001 * pass},
                              {"samples", kSamples * pass},
                              {"error_bound", 0.0003}};
      }
      line["run_auc"] = run_auc;
      if (o.commit) {
        line["commit"] = {{"seconds", 0.03 + 0.01 * pass},
                          {"rows_written", 17000 + pass},
                          {"rows_deleted", 457},
                          {"bytes_on_disk", 7235174 + 1000 * pass}};
      }
      if (o.first_published_pass > 0 && pass >= o.first_published_pass) {
        line["publish"] = {{"seconds", 0.02 * pass}, {"version", pass}, {"rows", 17723}};
      }
    }
    jsonl += line.dump() + "\n";
  }
  return jsonl;
}

// The Chromium that deploy/install_deps.sh --test installs.
constexpr char kChromium[] = "/usr/bin/chromium";

// Runs headless Chromium on `html` and returns the DOM after the page's scripts ran.
// The virtual time budget lets the load event and the timers it sets run before the dump.
std::string RenderDom(const testing::TempDir& dir, const std::string& html) {
  const std::string dom = html + ".dom";
  const std::string command =
      std::string(kChromium) +
      " --headless --no-sandbox --disable-gpu --no-first-run --disable-extensions"
      " --disable-background-networking --user-data-dir=" +
      dir.File("chromium-profile") + " --virtual-time-budget=5000 --dump-dom file://" + html +
      " > " + dom + " 2> " + dir.File("chromium.log");
  std::string output;
  const int code = testing::RunCommand({"/bin/sh", "-c", command}, dir, &output);
  EXPECT_EQ(code, 0) << output << testing::ReadFile(dir.File("chromium.log"));
  return testing::ReadFile(dom);
}

std::string Unescape(std::string text) {
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&amp;", "&"}}) {
    for (size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size()) {
      text.replace(at, from.size(), to);
    }
  }
  return text;
}

// The page's own account of what it drew (the <pre id="render-check"> its script fills).
Json RenderCheck(const std::string& dom) {
  const std::string open = "<pre id=\"render-check\"";
  const size_t at = dom.find(open);
  if (at == std::string::npos) return nullptr;
  const size_t begin = dom.find('>', at) + 1;
  const size_t end = dom.find("</pre>", begin);
  const Json check = Json::parse(Unescape(dom.substr(begin, end - begin)), nullptr, false);
  return check.is_discarded() ? Json(nullptr) : check;
}

class RunReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    struct stat st;
    ASSERT_EQ(stat(kChromium, &st), 0)
        << kChromium << " is missing: the report test renders the page in headless Chromium, "
        << "which deploy/install_deps.sh --test installs (Debian's chromium)";
  }

  // Writes `jsonl` as run/metrics.jsonl and runs the real pepnet_ctl report on it;
  // returns the page's path.
  std::string Report(const std::string& jsonl) {
    CreateDirs(Env::Default(), dir_.File("run"));
    testing::WriteFile(dir_.File("run/metrics.jsonl"), jsonl);
    std::string output;
    const int code = testing::RunCommand(
        {testing::BinDir() + "/pepnet_ctl", "report", "--run_dir=" + dir_.File("run")}, dir_,
        &output);
    EXPECT_EQ(code, 0) << output;
    const std::string page = dir_.File("run/report.html");
    EXPECT_EQ(output, "wrote " + page + "\n");
    return page;
  }

  // Expects the page drew exactly `points` per chart and that the charts in `absent` say
  // their data is not in the file; and that it loaded nothing.
  // Points of the quality charts over the fixture: "follow" pass 1 has no AUC, overall and
  // in domain 0, a gap, not a point.
  static std::map<std::string, int> QualityPoints() {
    const int values = kPasses * static_cast<int>(kTasks.size());
    const int per_domain = kPasses * kDomains;
    return {{"auc", values - 1},
            {"logloss", values},
            {"domain-auc-0", per_domain},
            {"domain-auc-1", per_domain},
            {"domain-auc-2", per_domain - 1},
            {"domain-logloss-0", per_domain},
            {"domain-logloss-1", per_domain},
            {"domain-logloss-2", per_domain}};
  }

  Json ExpectRendered(const std::string& dom, const std::map<std::string, int>& points,
                      const std::vector<std::string>& absent) {
    const Json check = RenderCheck(dom);
    EXPECT_TRUE(check.is_object()) << "no render check in the page:\n" << dom.substr(0, 4000);
    if (!check.is_object()) return check;
    EXPECT_EQ(check["errors"], Json::array()) << check.dump(2);
    EXPECT_EQ(check["resources"], 0) << "the page requested something: " << check.dump(2);
    EXPECT_EQ(check["csp_violations"], 0) << check.dump(2);
    std::map<std::string, int> drawn;
    for (const auto& [id, chart] : check["charts"].items()) drawn[id] = chart["points"].get<int>();
    EXPECT_EQ(drawn, points) << check.dump(2);
    std::vector<std::string> said_absent;
    for (const auto& [id, why] : check["absent"].items()) said_absent.push_back(id);
    EXPECT_EQ(said_absent, absent) << check.dump(2);
    return check;
  }

  testing::TempDir dir_;
};

TEST_F(RunReportTest, EveryChartDrawsEveryPointOfTheFileAndThePageLoadsNothing) {
  const std::string page = Report(Fixture(FixtureOptions()));
  const std::string html = testing::ReadFile(page);
  EXPECT_NE(html.find("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src "
                      "'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                      "img-src data:\">"),
            std::string::npos);
  const std::string dom = RenderDom(dir_, page);
  std::map<std::string, int> charts = QualityPoints();
  charts.insert({{"samples-per-s", kPasses},
                 {"table-rows", kPasses},
                 // bytes used, the high-water mark and the memory limit
                 {"table-bytes", 3 * kPasses},
                 // five reasons, a bar each per pass (zero-high bars included)
                 {"deletions", 5 * kPasses},
                 // publish from pass 2 on
                 {"commit-publish", kPasses + kPasses - 1}});
  const Json check = ExpectRendered(dom, charts, {});
  EXPECT_EQ(check["charts"]["auc"]["datasets"], 3);
  EXPECT_EQ(check["charts"]["deletions"]["datasets"], 5);

  // The summary: the run AUC comes from the last line's run_auc, not from the last pass.
  EXPECT_NE(dom.find("<tr data-task=\"like\"><td>like</td><td class=\"run-auc\">0.7050</td>"),
            std::string::npos);
  EXPECT_NE(dom.find("<tr data-task=\"follow\"><td>follow</td><td class=\"run-auc\">0.7250</td>"),
            std::string::npos);
  EXPECT_NE(dom.find("<td id=\"summary-samples\">200,000</td>"), std::string::npos);
  EXPECT_NE(dom.find("<td id=\"summary-wall\">10.5 s"), std::string::npos);
  EXPECT_NE(dom.find("<td id=\"summary-rows\">35,000</td>"), std::string::npos);
  EXPECT_NE(dom.find("<td id=\"summary-limit\">8.0 MiB</td>"), std::string::npos);
  EXPECT_NE(dom.find("<td id=\"summary-deleted\">score 0, memory 900, cap 0, ttl 1,371, "
                     "min_updates 12</td>"),
            std::string::npos);
}

TEST_F(RunReportTest, PartsARunDoesNotWriteAreSaidToBeAbsent) {
  // A memory-only cluster without a memory limit or a publish folder.
  FixtureOptions memory_only;
  memory_only.memory_limit_bytes = 0;
  memory_only.commit = false;
  memory_only.first_published_pass = 0;
  const std::string dom = RenderDom(dir_, Report(Fixture(memory_only)));
  const std::map<std::string, int> quality = QualityPoints();
  std::map<std::string, int> charts = quality;
  charts.insert({{"samples-per-s", kPasses},
                 {"table-rows", kPasses},
                 {"table-bytes", 2 * kPasses},  // no limit line
                 {"deletions", 5 * kPasses}});
  const Json check = ExpectRendered(dom, charts, {"commit-publish"});
  EXPECT_EQ(check["charts"]["table-bytes"]["datasets"], 2);
  EXPECT_NE(dom.find("<td id=\"summary-limit\">none</td>"), std::string::npos);
  EXPECT_NE(dom.find("No commit in any line"), std::string::npos);

  // pepnet_train: pass and tasks only.
  FixtureOptions trainer;
  trainer.cluster = false;
  const std::string train_dom = RenderDom(dir_, Report(Fixture(trainer)));
  ExpectRendered(train_dom, quality,
                 {"samples-per-s", "table-rows", "table-bytes", "deletions", "commit-publish"});
  EXPECT_NE(train_dom.find("No run_auc in the last line"), std::string::npos);
  EXPECT_NE(train_dom.find("<td id=\"summary-samples\">200,000</td>"), std::string::npos);
}

// The page's checks see a request when there is one: the same page with an image from
// elsewhere reports the blocked load.
TEST_F(RunReportTest, TheRenderCheckSeesARequestThePolicyBlocks) {
  const std::string page = Report(Fixture(FixtureOptions()));
  std::string html = testing::ReadFile(page);
  const size_t body_end = html.rfind("</body>");
  ASSERT_NE(body_end, std::string::npos);
  html.insert(body_end, "<img src=\"https://example.invalid/pixel.png\">");
  const std::string tampered = dir_.File("tampered.html");
  testing::WriteFile(tampered, html);
  const Json check = RenderCheck(RenderDom(dir_, tampered));
  ASSERT_TRUE(check.is_object());
  EXPECT_GE(check["csp_violations"].get<int>(), 1) << check.dump(2);
}

TEST_F(RunReportTest, ATaskNameCannotEndTheDataScript) {
  std::string jsonl = Fixture(FixtureOptions());
  const std::string hostile = "</script><!--<script>";
  for (size_t at = 0; (at = jsonl.find("\"follow\"", at)) != std::string::npos;) {
    jsonl.replace(at, 8, "\"" + hostile + "\"");
    at += hostile.size();
  }
  std::string html;
  ASSERT_TRUE(RenderRunReport(jsonl, "metrics.jsonl", "t", &html).ok());
  EXPECT_EQ(html.find(hostile), std::string::npos);
  const std::string dom = RenderDom(dir_, Report(jsonl));
  const Json check = RenderCheck(dom);
  ASSERT_TRUE(check.is_object()) << dom.substr(0, 4000);
  EXPECT_EQ(check["errors"], Json::array());
  EXPECT_EQ(check["charts"]["auc"]["datasets"], 3);
}

// --- Bad input ---------------------------------------------------------------------------

std::string Error(const std::string& jsonl) {
  std::string html;
  const Status st = RenderRunReport(jsonl, "run/metrics.jsonl", "t", &html);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), Status::kInvalidArgument) << st.ToString();
  return st.message();
}

TEST(RunReportInputTest, BadLinesAreNamedByFileAndNumber) {
  const std::string ok1 = "{\"pass\":1,\"tasks\":{}}\n";
  const std::string ok2 = "{\"pass\":2,\"tasks\":{}}\n";
  EXPECT_EQ(Error(ok1 + ok2 + "{\"pass\":3,\n").find("run/metrics.jsonl:3: malformed JSON: "), 0u);
  EXPECT_EQ(Error(ok1 + "{\"tasks\":{}}\n"), "run/metrics.jsonl:2: no integer \"pass\"");
  EXPECT_EQ(Error(ok1 + "[1,2]\n"), "run/metrics.jsonl:2: not a JSON object");
  EXPECT_EQ(Error(ok1 + ok2 + ok2),
            "run/metrics.jsonl:3: pass 2 does not follow pass 2 (passes must increase)");
  EXPECT_EQ(Error(ok2 + ok1),
            "run/metrics.jsonl:2: pass 1 does not follow pass 2 (passes must increase)");
  EXPECT_EQ(Error("{\"pass\":1,\"table\":{\"rows\":\"many\"}}\n"),
            "run/metrics.jsonl:1: \"table.rows\" is a string, not a number");
  EXPECT_EQ(Error("{\"pass\":1,\"tasks\":{\"like\":{\"auc\":[1]}}}\n"),
            "run/metrics.jsonl:1: \"tasks.like.auc\" is an array, not a number");
  EXPECT_EQ(Error("{\"pass\":1,\"tasks\":{\"like\":{\"domains\":[{\"auc\":0.5}]}}}\n"),
            "run/metrics.jsonl:1: \"tasks.like.domains[0]\" has no integer \"domain\"");
  EXPECT_EQ(Error("{\"pass\":1,\"commit\":7}\n"),
            "run/metrics.jsonl:1: \"commit\" is a number, not an object");
  EXPECT_EQ(Error(""), "run/metrics.jsonl: no line: the run has no pass");
  EXPECT_EQ(Error("\n \n"), "run/metrics.jsonl: no line: the run has no pass");
  // Blank lines are skipped but counted; null metrics (NaN) and unknown fields are fine.
  std::string html;
  EXPECT_TRUE(RenderRunReport("\n{\"pass\":4,\"tasks\":{\"like\":{\"auc\":null}},\"new\":1}\n\n",
                              "m", "t", &html)
                  .ok());
  EXPECT_EQ(Error("\n" + ok1 + "\n{").find("run/metrics.jsonl:4: malformed JSON: "), 0u);
}

TEST(RunReportInputTest, AMissingFileIsNamed) {
  testing::TempDir dir;
  const Status st = WriteRunReport(Env::Default(), dir.File("nowhere"), dir.File("out.html"));
  EXPECT_EQ(st.code(), Status::kNotFound) << st.ToString();
  EXPECT_NE(st.message().find(dir.File("nowhere/metrics.jsonl")), std::string::npos)
      << st.ToString();
}

TEST(RunReportCtlTest, ErrorsGoToStderrWithANonZeroExit) {
  testing::TempDir dir;
  std::string output;
  EXPECT_NE(testing::RunCommand(
                {testing::BinDir() + "/pepnet_ctl", "report", "--run_dir=" + dir.File("none")}, dir,
                &output),
            0);
  EXPECT_NE(output.find("pepnet_ctl: report: NotFound: " + dir.File("none/metrics.jsonl")),
            std::string::npos)
      << output;

  testing::WriteFile(dir.File("metrics.jsonl"), "{\"pass\":1}\n{\"pass\":2,\n");
  EXPECT_NE(testing::RunCommand({testing::BinDir() + "/pepnet_ctl", "report",
                                 "--run_dir=" + dir.path(), "--out=" + dir.File("r.html")},
                                dir, &output),
            0);
  EXPECT_NE(output.find(dir.File("metrics.jsonl") + ":2: malformed JSON"), std::string::npos)
      << output;
  EXPECT_NE(Env::Default()->FileExists(dir.File("r.html")).code(), Status::kOk);

  testing::WriteFile(dir.File("metrics.jsonl"), "");
  EXPECT_NE(
      testing::RunCommand({testing::BinDir() + "/pepnet_ctl", "report", "--run_dir=" + dir.path()},
                          dir, &output),
      0);
  EXPECT_NE(output.find(dir.File("metrics.jsonl") + ": no line"), std::string::npos) << output;

  EXPECT_NE(testing::RunCommand({testing::BinDir() + "/pepnet_ctl", "report"}, dir, &output), 0);
  EXPECT_NE(output.find("report needs --run_dir"), std::string::npos) << output;
}

}  // namespace
}  // namespace pepnet
