#include "common/stats.h"

#include <algorithm>
#include <map>

#include "common/latency_histogram.h"
#include "proto/ps.pb.h"

namespace pepnet {

const std::string& Stat::LabelValue(const std::string& label) const {
  static const std::string kNone;
  for (const auto& [name, value] : labels) {
    if (name == label) return value;
  }
  return kNone;
}

uint64_t Stat::Count() const {
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  return n;
}

Stat& StatSet::Add(std::string name, std::string help, StatType type, double value) {
  Stat& s = stats_.emplace_back();
  s.name = std::move(name);
  s.help = std::move(help);
  s.type = type;
  s.value = value;
  return s;
}

Stat& StatSet::Counter(std::string name, std::string help, double value) {
  return Add(std::move(name), std::move(help), StatType::kCounter, value);
}

Stat& StatSet::Gauge(std::string name, std::string help, double value) {
  return Add(std::move(name), std::move(help), StatType::kGauge, value);
}

Stat& StatSet::Histogram(std::string name, std::string help, const LatencyHistogram& h) {
  Stat& s = Add(std::move(name), std::move(help), StatType::kHistogram, 0);
  s.bounds.assign(LatencyHistogram::kBounds.begin(), LatencyHistogram::kBounds.end());
  for (size_t i = 0; i < LatencyHistogram::num_buckets(); ++i) s.counts.push_back(h.count(i));
  s.sum = h.sum_seconds();
  return s;
}

const Stat* StatSet::Find(const std::string& name, const StatLabels& labels) const {
  for (const Stat& s : stats_) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& [label, value] : labels) all = all && s.LabelValue(label) == value;
    if (all) return &s;
  }
  return nullptr;
}

double StatSet::Value(const std::string& name, const StatLabels& labels) const {
  const Stat* s = Find(name, labels);
  return s == nullptr ? 0 : s->value;
}

void StatsToProto(const StatSet& set, proto::ServerStats* out) {
  for (const Stat& s : set.stats()) {
    proto::Stat* p = out->add_stats();
    p->set_name(s.name);
    p->set_help(s.help);
    p->set_type(static_cast<proto::StatType>(s.type));
    for (const auto& [name, value] : s.labels) {
      proto::StatLabel* l = p->add_labels();
      l->set_name(name);
      l->set_value(value);
    }
    p->set_value(s.value);
    for (double b : s.bounds) p->add_bounds(b);
    for (uint64_t c : s.counts) p->add_counts(c);
    p->set_sum(s.sum);
    p->set_json(s.json);
    p->set_json_scale(s.json_scale);
    p->set_total(static_cast<proto::StatTotal>(s.total));
  }
}

StatSet StatsFromProto(const proto::ServerStats& stats) {
  StatSet set;
  for (const proto::Stat& p : stats.stats()) {
    Stat& s = set.mutable_stats()->emplace_back();
    s.name = p.name();
    s.help = p.help();
    s.type = p.type() <= proto::STAT_HISTOGRAM ? static_cast<StatType>(p.type()) : StatType::kGauge;
    for (const proto::StatLabel& l : p.labels()) s.labels.emplace_back(l.name(), l.value());
    s.value = p.value();
    s.bounds.assign(p.bounds().begin(), p.bounds().end());
    s.counts.assign(p.counts().begin(), p.counts().end());
    // A histogram of another shape renders wrong; make it a well-formed empty one.
    if (s.type == StatType::kHistogram && s.counts.size() != s.bounds.size() + 1) {
      s.counts.assign(s.bounds.size() + 1, 0);
    }
    s.sum = p.sum();
    s.json = p.json();
    s.json_scale = p.json_scale() == 0 ? 1 : p.json_scale();
    s.total =
        p.total() <= proto::STAT_TOTAL_NONE ? static_cast<StatTotal>(p.total()) : StatTotal::kNone;
  }
  return set;
}

double StatValue(const proto::ServerStats& stats, const std::string& name,
                 const StatLabels& labels) {
  return StatsFromProto(stats).Value(name, labels);
}

StatSet TotalStats(const std::vector<StatSet>& sets) {
  StatSet total;
  std::map<std::pair<std::string, StatLabels>, size_t> at;
  for (const StatSet& set : sets) {
    for (const Stat& s : set.stats()) {
      if (s.total == StatTotal::kNone) continue;
      const auto [it, fresh] = at.emplace(std::make_pair(s.name, s.labels), total.stats().size());
      if (fresh) {
        total.mutable_stats()->push_back(s);
        continue;
      }
      Stat& t = (*total.mutable_stats())[it->second];
      switch (s.total) {
        case StatTotal::kSum:
          t.value += s.value;
          break;
        case StatTotal::kMax:
          t.value = std::max(t.value, s.value);
          break;
        case StatTotal::kMin:
          t.value = std::min(t.value, s.value);
          break;
        case StatTotal::kNone:
          break;
      }
      if (t.counts.size() == s.counts.size()) {
        for (size_t i = 0; i < t.counts.size(); ++i) t.counts[i] += s.counts[i];
        t.sum += s.sum;
      }
    }
  }
  return total;
}

StatSet ShardTotal(const std::vector<proto::ServerStats>& replies) {
  std::vector<StatSet> sets;
  for (const proto::ServerStats& r : replies) sets.push_back(StatsFromProto(r));
  return TotalStats(sets);
}

}  // namespace pepnet
