#include "common/prometheus.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

#include "common/stats.h"

namespace pepnet {
namespace {

std::string Escape(const std::string& s, bool quote) {
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  if (v == std::floor(v) && std::fabs(v) < 9e15) {
    snprintf(buf, sizeof(buf), "%.0f", v);
  } else {
    snprintf(buf, sizeof(buf), "%.17g", v);
  }
  return buf;
}

std::string Labels(const StatLabels& labels, const std::string& le = "") {
  if (labels.empty() && le.empty()) return "";
  std::string out = "{";
  for (const auto& [name, value] : labels) {
    if (out.size() > 1) out += ",";
    out += name + "=\"" + Escape(value, true) + "\"";
  }
  if (!le.empty()) out += std::string(out.size() > 1 ? "," : "") + "le=\"" + le + "\"";
  return out + "}";
}

const char* TypeName(StatType t) {
  switch (t) {
    case StatType::kCounter:
      return "counter";
    case StatType::kGauge:
      return "gauge";
    case StatType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

const char kPrometheusContentType[] = "text/plain; version=0.0.4; charset=utf-8";

std::string FormatPrometheus(const StatSet& set) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<const Stat*>> families;
  for (const Stat& s : set.stats()) {
    auto& f = families[s.name];
    if (f.empty()) order.push_back(s.name);
    f.push_back(&s);
  }
  std::string out;
  for (const std::string& name : order) {
    const std::vector<const Stat*>& f = families[name];
    out += "# HELP " + name + " " + Escape(f[0]->help, false) + "\n";
    out += "# TYPE " + name + " " + TypeName(f[0]->type) + "\n";
    for (const Stat* s : f) {
      if (s->type != StatType::kHistogram) {
        out += name + Labels(s->labels) + " " + Value(s->value) + "\n";
        continue;
      }
      uint64_t cumulative = 0;
      for (size_t i = 0; i < s->counts.size(); ++i) {
        cumulative += s->counts[i];
        char le[32] = "+Inf";
        if (i < s->bounds.size()) snprintf(le, sizeof(le), "%g", s->bounds[i]);
        out += name + "_bucket" + Labels(s->labels, le) + " " + Value(double(cumulative)) + "\n";
      }
      out += name + "_sum" + Labels(s->labels) + " " + Value(s->sum) + "\n";
      out += name + "_count" + Labels(s->labels) + " " + Value(double(cumulative)) + "\n";
    }
  }
  return out;
}

}  // namespace pepnet
