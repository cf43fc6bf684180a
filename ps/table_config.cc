#include "ps/table_config.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include <google/protobuf/text_format.h>

#include "common/text_proto.h"
#include "proto/model_config.pb.h"
#include "proto/table_config.pb.h"
#include "ps/slot_shard.h"

namespace pepnet {
namespace {

std::string SlotName(const SlotOptions& s) {
  return "slot " + std::to_string(s.id) + (s.name.empty() ? "" : " (" + s.name + ")");
}

// Every float of the options must be finite: an infinite learning rate or weight bound
// turns the first update of a row into a NaN weight.
bool Finite(double x) { return std::isfinite(x); }

}  // namespace

SlotEvictionOptions SlotEvictionFromProto(const proto::SlotEviction& p) {
  SlotEvictionOptions e;
  e.max_rows = p.max_rows();
  e.ttl_passes = p.ttl_passes();
  e.min_updates = p.min_updates();
  e.min_updates_passes = p.min_updates_passes();
  e.delete_score_threshold = p.delete_score_threshold();
  e.admission_threshold = p.admission_threshold();
  return e;
}

void SlotEvictionToProto(const SlotEvictionOptions& e, proto::SlotEviction* p) {
  p->set_max_rows(e.max_rows);
  p->set_ttl_passes(e.ttl_passes);
  p->set_min_updates(e.min_updates);
  p->set_min_updates_passes(e.min_updates_passes);
  p->set_delete_score_threshold(e.delete_score_threshold);
  p->set_admission_threshold(e.admission_threshold);
}

FeatureScoreOptions FeatureScoreFromProto(const proto::FeatureScoreConfig& p) {
  FeatureScoreOptions o;
  o.coefficients.nonclick = p.nonclick_coeff();
  o.coefficients.click = p.click_coeff();
  o.decay = p.decay();
  return o;
}

void FeatureScoreToProto(const FeatureScoreOptions& o, proto::FeatureScoreConfig* p) {
  p->set_nonclick_coeff(o.coefficients.nonclick);
  p->set_click_coeff(o.coefficients.click);
  p->set_decay(o.decay);
}

Status ValidateTableOptions(const TableOptions& o) {
  if (o.slot_bits < 1 || o.slot_bits > 16) {
    return Status::InvalidArgument("slot_bits must be in [1, 16], got " +
                                   std::to_string(o.slot_bits));
  }
  // The index tag takes hash bits 48..55; partitions take the top bits.
  if (o.partition_bits > 8) {
    return Status::InvalidArgument("partition_bits must be in [0, 8], got " +
                                   std::to_string(o.partition_bits));
  }
  if (o.slots.empty()) return Status::InvalidArgument("no slot configured");
  std::set<uint32_t> seen;
  for (const SlotOptions& s : o.slots) {
    if (s.id >= (1u << o.slot_bits)) {
      return Status::InvalidArgument(
          SlotName(s) + ": id does not fit in slot_bits=" + std::to_string(o.slot_bits));
    }
    if (!seen.insert(s.id).second) {
      return Status::InvalidArgument(SlotName(s) + ": configured twice");
    }
    if (s.dim < 1 || s.dim > kMaxSlotDim) {
      return Status::InvalidArgument(SlotName(s) + ": dim must be in [1, " +
                                     std::to_string(kMaxSlotDim) + "], got " +
                                     std::to_string(s.dim));
    }
    const AdagradParams& a = s.adagrad;
    if (!Finite(a.learning_rate) || !Finite(a.initial_accumulator) || !Finite(a.epsilon) ||
        !Finite(a.weight_bound) || !Finite(a.init_range)) {
      return Status::InvalidArgument(SlotName(s) +
                                     ": learning_rate, initial_accumulator, epsilon, "
                                     "weight_bound and init_range must be finite");
    }
    if (!(a.learning_rate > 0)) {
      return Status::InvalidArgument(SlotName(s) + ": learning_rate must be > 0");
    }
    if (!(a.initial_accumulator >= 0) || !(a.epsilon >= 0) ||
        !(a.initial_accumulator + a.epsilon > 0)) {
      return Status::InvalidArgument(SlotName(s) +
                                     ": initial_accumulator and epsilon must be >= 0 and "
                                     "not both 0");
    }
    if (!(a.weight_bound > 0)) {
      return Status::InvalidArgument(SlotName(s) + ": weight_bound must be > 0");
    }
    if (!(a.init_range >= 0) || a.init_range > a.weight_bound) {
      return Status::InvalidArgument(SlotName(s) + ": init_range must be in [0, weight_bound]");
    }
    const SlotEvictionOptions& e = s.eviction;
    if (e.max_rows > SlotShard::kMaxRows << o.partition_bits) {
      return Status::InvalidArgument(
          SlotName(s) + ": eviction.max_rows must be at most " +
          std::to_string(uint64_t{SlotShard::kMaxRows} << o.partition_bits));
    }
    if (e.min_updates > 0 && e.min_updates_passes < 1) {
      return Status::InvalidArgument(SlotName(s) + ": eviction.min_updates_passes must be >= 1");
    }
    if (e.ttl_passes > kMaxPassAge || e.min_updates_passes > kMaxPassAge) {
      return Status::InvalidArgument(SlotName(s) +
                                     ": eviction.ttl_passes and min_updates_passes must be at "
                                     "most " +
                                     std::to_string(kMaxPassAge));
    }
    if (!(e.delete_score_threshold >= 0) || !Finite(e.delete_score_threshold)) {
      return Status::InvalidArgument(SlotName(s) +
                                     ": eviction.delete_score_threshold must be >= 0 and "
                                     "finite");
    }
    if (e.admission_threshold > kMaxAdmissionThreshold) {
      return Status::InvalidArgument(SlotName(s) +
                                     ": eviction.admission_threshold must be at most " +
                                     std::to_string(kMaxAdmissionThreshold));
    }
  }
  const FeatureScoreOptions& sc = o.score;
  if (!(sc.coefficients.nonclick >= 0) || !(sc.coefficients.click >= 0) ||
      !Finite(sc.coefficients.nonclick) || !Finite(sc.coefficients.click)) {
    return Status::InvalidArgument("score: nonclick_coeff and click_coeff must be >= 0 and finite");
  }
  if (!(sc.decay > 0) || sc.decay > 1) {
    return Status::InvalidArgument("score: decay must be in (0, 1]");
  }
  if (o.admission_filter_bytes < (uint64_t{1} << o.partition_bits) ||
      o.admission_filter_bytes > (uint64_t{1} << 36)) {
    return Status::InvalidArgument("admission_filter_bytes must be in [2^partition_bits, 2^36]");
  }
  if (!(o.memory_low_watermark > 0) || !(o.memory_low_watermark < o.memory_high_watermark) ||
      o.memory_high_watermark > 1) {
    return Status::InvalidArgument("memory watermarks must satisfy 0 < low < high <= 1, got low " +
                                   std::to_string(o.memory_low_watermark) + ", high " +
                                   std::to_string(o.memory_high_watermark));
  }
  return Status::OK();
}

Status ParseTableConfig(const std::string& text, const std::string& source, TableOptions* out) {
  proto::TableConfig config;
  PEPNET_RETURN_IF_ERROR(ParseTextProto(text, source, &config));
  TableOptions o;
  o.slot_bits = config.slot_bits();
  o.partition_bits = config.partition_bits();
  o.seed = config.seed();
  o.score = FeatureScoreFromProto(config.score());
  o.admission_filter_bytes = config.admission_filter_bytes();
  o.admission_halving_passes = config.admission_halving_passes();
  for (const proto::SlotConfig& sc : config.slot()) {
    SlotOptions s;
    s.id = sc.id();
    s.dim = sc.dim();
    s.name = sc.name();
    s.adagrad.per_dim = sc.accumulator() == proto::PER_DIM;
    s.adagrad.learning_rate = sc.learning_rate();
    s.adagrad.initial_accumulator = sc.initial_accumulator();
    s.adagrad.epsilon = sc.epsilon();
    s.adagrad.weight_bound = sc.weight_bound();
    s.adagrad.init_range = sc.init_range();
    s.eviction = SlotEvictionFromProto(sc.eviction());
    o.slots.push_back(s);
  }
  Status st = ValidateTableOptions(o);
  if (!st.ok()) return st.WithContext(source);
  *out = std::move(o);
  return Status::OK();
}

std::string FormatTableConfig(const TableOptions& o) {
  proto::TableConfig config;
  config.set_slot_bits(o.slot_bits);
  config.set_partition_bits(o.partition_bits);
  config.set_seed(o.seed);
  for (const SlotOptions& s : o.slots) {
    proto::SlotConfig* sc = config.add_slot();
    sc->set_id(s.id);
    sc->set_dim(s.dim);
    if (!s.name.empty()) sc->set_name(s.name);
    sc->set_accumulator(s.adagrad.per_dim ? proto::PER_DIM : proto::PER_ROW);
    sc->set_learning_rate(s.adagrad.learning_rate);
    sc->set_initial_accumulator(s.adagrad.initial_accumulator);
    sc->set_epsilon(s.adagrad.epsilon);
    sc->set_weight_bound(s.adagrad.weight_bound);
    sc->set_init_range(s.adagrad.init_range);
    SlotEvictionToProto(s.eviction, sc->mutable_eviction());
  }
  FeatureScoreToProto(o.score, config.mutable_score());
  config.set_admission_filter_bytes(o.admission_filter_bytes);
  config.set_admission_halving_passes(o.admission_halving_passes);
  std::string text;
  google::protobuf::TextFormat::PrintToString(config, &text);
  return text;
}

Status CheckConfigFile(const std::string& path, const std::string& what) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return Status::NotFound("cannot open " + what + " " + path + ": " + strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(what + " " + path + " is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxConfigFileBytes) {
    return Status::InvalidArgument(what + " " + path + " has " + std::to_string(st.st_size) +
                                   " bytes, over the limit of " +
                                   std::to_string(kMaxConfigFileBytes));
  }
  return Status::OK();
}

Status LoadTableConfigFile(const std::string& path, TableOptions* out) {
  PEPNET_RETURN_IF_ERROR(CheckConfigFile(path, "table config"));
  std::string text;
  PEPNET_RETURN_IF_ERROR(ReadFileToString(path, "table config", &text));
  return ParseTableConfig(text, path, out);
}

TableOptions TableOptionsFor(const proto::ModelConfig& config, uint64_t seed) {
  TableOptions o;
  o.slot_bits = config.slot_bits();
  o.seed = seed;
  for (const proto::SlotSpec& s : config.slot()) {
    SlotOptions so;
    so.id = s.id();
    so.dim = s.dim();
    so.name = s.name();
    so.adagrad.learning_rate =
        s.has_learning_rate() ? s.learning_rate() : config.embedding_learning_rate();
    so.adagrad.per_dim = s.has_accumulator() && s.accumulator() == proto::PER_DIM;
    so.eviction = SlotEvictionFromProto(s.eviction());
    o.slots.push_back(so);
  }
  o.score = FeatureScoreFromProto(config.score());
  o.admission_filter_bytes = config.admission_filter_bytes();
  o.admission_halving_passes = config.admission_halving_passes();
  return o;
}

}  // namespace pepnet
