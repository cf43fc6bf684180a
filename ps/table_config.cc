#include "ps/table_config.h"

#include <set>

#include <google/protobuf/text_format.h>

#include "common/text_proto.h"
#include "proto/table_config.pb.h"

namespace pepnet {
namespace {

std::string SlotName(const SlotOptions& s) {
  return "slot " + std::to_string(s.id) + (s.name.empty() ? "" : " (" + s.name + ")");
}

}  // namespace

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
  }
  std::string text;
  google::protobuf::TextFormat::PrintToString(config, &text);
  return text;
}

Status LoadTableConfigFile(const std::string& path, TableOptions* out) {
  std::string text;
  PEPNET_RETURN_IF_ERROR(ReadFileToString(path, "table config", &text));
  return ParseTableConfig(text, path, out);
}

}  // namespace pepnet
