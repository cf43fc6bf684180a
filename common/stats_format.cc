#include "common/stats_format.h"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>

#include "common/stats.h"
#include "proto/ps.pb.h"

namespace pepnet {
namespace {

using Json = nlohmann::ordered_json;

std::string HumanBytes(double b) {
  char buf[48];
  if (b >= double(1ull << 30)) {
    snprintf(buf, sizeof(buf), "%.2f GiB", b / double(1ull << 30));
  } else if (b >= double(1ull << 20)) {
    snprintf(buf, sizeof(buf), "%.2f MiB", b / double(1ull << 20));
  } else if (b >= 1024) {
    snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  } else {
    snprintf(buf, sizeof(buf), "%.0f B", b);
  }
  return buf;
}

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Integral values as integers, so that counts read as counts in JSON.
Json Number(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15) {
    return v < 0 ? Json(static_cast<int64_t>(v)) : Json(static_cast<uint64_t>(v));
  }
  if (!std::isfinite(v)) return Json(nullptr);
  return Json(v);
}

std::string Text(const std::string& key, double v) {
  char buf[64];
  if (EndsWith(key, "unix_ms")) {
    if (v == 0) return "never";
    const time_t seconds = static_cast<time_t>(v / 1000);
    struct tm t;
    gmtime_r(&seconds, &t);
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &t);
    return buf;
  }
  if (EndsWith(key, "memory_limit_bytes") && v == 0) return "none";
  if (EndsWith(key, "_bytes") || EndsWith(key, "bytes_used") || key == "bytes") {
    return HumanBytes(v) + (v >= 1024 ? " (" + Number(v).dump() + " B)" : "");
  }
  if (EndsWith(key, "_ns")) {
    snprintf(buf, sizeof(buf), "%.3f ms", v / 1e6);
    return buf;
  }
  if (EndsWith(key, "_seconds") || EndsWith(key, "_s")) {
    snprintf(buf, sizeof(buf), "%.3f s", v);
    return buf;
  }
  const Json n = Number(v);
  return n.is_null() ? "nan" : n.dump();
}

void Put(Json* obj, const std::string& path, Json value) {
  Json* at = obj;
  size_t start = 0;
  for (size_t dot; (dot = path.find('.', start)) != std::string::npos; start = dot + 1) {
    at = &(*at)[path.substr(start, dot - start)];
  }
  (*at)[path.substr(start)] = std::move(value);
}

// The object of one shard (or the total).
Json ToJson(const proto::ServerStats& header, const StatSet& set) {
  Json out = Json::object();
  out["shard_id"] = header.shard_id();
  out["num_shards"] = header.num_shards();
  std::map<std::string, size_t> slot_at;
  for (const Stat& s : set.stats()) {
    if (s.json.empty()) continue;
    // A key in a smaller unit (nanoseconds, milliseconds) holds whole numbers.
    const Json value = Number(s.json_scale == 1 ? s.value : std::round(s.value * s.json_scale));
    if (EndsWith(s.json, "[]")) {  // {"q": label, "score": value} per quantile
      Json& list = out[s.json.substr(0, s.json.size() - 2)];
      list.push_back(Json{{"q", Number(std::atof(s.LabelValue("q").c_str()))}, {"score", value}});
      continue;
    }
    const std::string& slot = s.LabelValue("slot");
    if (slot.empty()) {
      Put(&out, s.json, value);
      continue;
    }
    Json& slots = out["slots"];
    auto [it, fresh] = slot_at.emplace(slot, slots.size());
    if (fresh) slots.push_back(Json{{"slot", Number(std::atof(slot.c_str()))}});
    Put(&slots[it->second], s.json, value);
  }
  // Keys scripts read are there even when empty (the total has no quantiles).
  if (!out.contains("score_quantiles")) out["score_quantiles"] = Json::array();
  if (!out.contains("slots")) out["slots"] = Json::array();
  return out;
}

// "5 (memory 2, ttl 3)" for an object of counts by reason.
std::string Breakdown(const Json& counts) {
  uint64_t sum = 0;
  std::string parts;
  for (const auto& [name, v] : counts.items()) {
    const uint64_t n = v.is_number() ? v.get<uint64_t>() : 0;
    sum += n;
    if (n) parts += (parts.empty() ? "" : ", ") + name + " " + std::to_string(n);
  }
  return std::to_string(sum) + (parts.empty() ? "" : " (" + parts + ")");
}

void Line(std::string* out, const std::string& label, const std::string& value) {
  char buf[512];
  snprintf(buf, sizeof(buf), "  %-28s %s\n", label.c_str(), value.c_str());
  *out += buf;
}

// Walks the JSON object (the one rendering of the key layout) for people.
void Block(const std::string& title, const Json& obj, std::string* out) {
  *out += title + "\n";
  for (const auto& [key, v] : obj.items()) {
    if (key == "shard_id" || key == "num_shards") continue;
    if (key == "slots") {
      for (const Json& slot : v) {
        std::string text;
        for (const auto& [k, x] : slot.items()) {
          if (k == "slot" || k == "dim") continue;
          if (!text.empty()) text += ", ";
          text += k + " " +
                  (x.is_object() ? Breakdown(x) : Text(k, x.is_number() ? x.get<double>() : 0));
        }
        Line(out,
             "slot " + slot.value("slot", Json(0)).dump() + " (dim " +
                 slot.value("dim", Json(0)).dump() + ")",
             text);
      }
    } else if (key == "score_quantiles") {
      std::string q;
      for (const Json& e : v) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%sp%g %.4g", q.empty() ? "" : ", ", e.value("q", 0.0) * 100,
                 e.value("score", 0.0));
        q += buf;
      }
      if (!q.empty()) Line(out, key, q);
    } else if (v.is_object()) {
      for (const auto& [k, x] : v.items()) {
        Line(out, key + "." + k, Text(k, x.is_number() ? x.get<double>() : NAN));
      }
    } else {
      Line(out, key, Text(key, v.is_number() ? v.get<double>() : NAN));
    }
  }
}

std::vector<StatSet> Sets(const std::vector<proto::ServerStats>& shards) {
  std::vector<StatSet> sets;
  for (const proto::ServerStats& s : shards) sets.push_back(StatsFromProto(s));
  return sets;
}

}  // namespace

std::string FormatStatsTable(const std::vector<proto::ServerStats>& shards) {
  std::string out;
  const std::vector<StatSet> sets = Sets(shards);
  for (size_t i = 0; i < shards.size(); ++i) {
    Block("shard " + std::to_string(shards[i].shard_id()) + " of " +
              std::to_string(shards[i].num_shards()),
          ToJson(shards[i], sets[i]), &out);
  }
  const proto::ServerStats header = shards.empty() ? proto::ServerStats() : shards[0];
  Block("TOTAL (" + std::to_string(shards.size()) + " shards)", ToJson(header, TotalStats(sets)),
        &out);
  return out;
}

std::string FormatStatsJson(const std::vector<proto::ServerStats>& shards) {
  const std::vector<StatSet> sets = Sets(shards);
  Json out = Json::object();
  out["shards"] = Json::array();
  for (size_t i = 0; i < shards.size(); ++i) out["shards"].push_back(ToJson(shards[i], sets[i]));
  const proto::ServerStats header = shards.empty() ? proto::ServerStats() : shards[0];
  out["total"] = ToJson(header, TotalStats(sets));
  return out.dump();
}

}  // namespace pepnet
