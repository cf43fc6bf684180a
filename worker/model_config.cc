#include "worker/model_config.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <cmath>
#include <limits>
#include <set>

#include "common/checksum.h"
#include "common/text_proto.h"
#include "proto/model_config.pb.h"
#include "proto/publish.pb.h"
#include "ps/table_config.h"

namespace pepnet {
namespace {

Status Invalid(const std::string& what) { return Status::InvalidArgument(what); }

// Saturating arithmetic: ModelSizeOf may see unvalidated widths.
uint64_t SatAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}
uint64_t SatMul(uint64_t a, uint64_t b) {
  return b != 0 && a > std::numeric_limits<uint64_t>::max() / b
             ? std::numeric_limits<uint64_t>::max()
             : a * b;
}

bool Finite(double x) { return std::isfinite(x); }
// Positive and finite: false for NaN too.
bool PositiveFinite(double x) { return x > 0 && std::isfinite(x); }

Status ValidateBucketing(const std::string& where, const proto::Bucketing& b) {
  const bool has_log = b.has_log_base();
  if (has_log == (b.boundary_size() > 0)) {
    return Invalid(where + ".bucketing: set exactly one of boundary and log_base");
  }
  if (has_log && !(b.log_base() > 1.0 && Finite(b.log_base()))) {
    return Invalid(where + ".bucketing.log_base must be > 1 and finite");
  }
  for (int i = 0; i < b.boundary_size(); ++i) {
    if (!Finite(b.boundary(i))) {
      return Invalid(where + ".bucketing.boundary entry " + std::to_string(i) + " is not finite");
    }
    if (i > 0 && !(b.boundary(i) > b.boundary(i - 1))) {
      return Invalid(where + ".bucketing.boundary must be strictly ascending (entry " +
                     std::to_string(i) + ")");
    }
  }
  return Status::OK();
}

// The fields that size the network, each against its bound. Checked before the model
// size, so that the size's arithmetic only ever sees bounded widths.
Status ValidateShape(const proto::ModelConfig& c) {
  if (c.task_size() > static_cast<int>(kMaxTasks)) {
    return Invalid("task: " + std::to_string(c.task_size()) + " tasks, over the limit of " +
                   std::to_string(kMaxTasks));
  }
  if (c.num_domains() < 1 || c.num_domains() > kMaxDomains) {
    return Invalid("num_domains must be in [1, " + std::to_string(kMaxDomains) + "], got " +
                   std::to_string(c.num_domains()));
  }
  if (c.tower_size() == 0) return Invalid("tower: at least one hidden width is needed");
  if (c.tower_size() > static_cast<int>(kMaxTowerLayers)) {
    return Invalid("tower: " + std::to_string(c.tower_size()) + " layers, over the limit of " +
                   std::to_string(kMaxTowerLayers));
  }
  for (int i = 0; i < c.tower_size(); ++i) {
    if (c.tower(i) < 1 || c.tower(i) > kMaxLayerWidth) {
      return Invalid("tower[" + std::to_string(i) + "] must be in [1, " +
                     std::to_string(kMaxLayerWidth) + "], got " + std::to_string(c.tower(i)));
    }
  }
  if (c.gate().hidden() > kMaxLayerWidth) {
    return Invalid("gate.hidden must be at most " + std::to_string(kMaxLayerWidth) + ", got " +
                   std::to_string(c.gate().hidden()));
  }
  // 0 would make every reader loop spin without consuming a line.
  if (c.batch_size() < 1 || c.batch_size() > kMaxBatchSize) {
    return Invalid("batch_size must be in [1, " + std::to_string(kMaxBatchSize) + "], got " +
                   std::to_string(c.batch_size()));
  }
  return Status::OK();
}

Status ValidateNumbers(const proto::ModelConfig& c) {
  if (!PositiveFinite(c.gate().gamma())) return Invalid("gate.gamma must be > 0 and finite");
  const proto::AdamSpec& a = c.adam();
  if (!PositiveFinite(a.learning_rate())) {
    return Invalid("adam.learning_rate must be > 0 and finite");
  }
  if (!(a.beta1() >= 0 && a.beta1() < 1) || !(a.beta2() >= 0 && a.beta2() < 1)) {
    return Invalid("adam.beta1 and adam.beta2 must be in [0, 1)");
  }
  if (!PositiveFinite(a.epsilon())) return Invalid("adam.epsilon must be > 0 and finite");
  if (!PositiveFinite(c.embedding_learning_rate())) {
    return Invalid("embedding_learning_rate must be > 0 and finite");
  }
  return Status::OK();
}

Status ValidateSize(const proto::ModelConfig& c) {
  const ModelSize size = ModelSizeOf(c);
  if (size.dense_floats > kMaxDenseFloats) {
    return Invalid("the model has " + std::to_string(size.dense_floats) +
                   " dense parameters, over the limit of " + std::to_string(kMaxDenseFloats) +
                   " (tower, gate.hidden and the slots' dims size it)");
  }
  if (SatMul(c.batch_size(), size.activation_floats_per_sample) > kMaxBatchActivationFloats) {
    return Invalid("batch_size " + std::to_string(c.batch_size()) + " times " +
                   std::to_string(size.activation_floats_per_sample) +
                   " activation floats per sample is over the limit of " +
                   std::to_string(kMaxBatchActivationFloats));
  }
  return Status::OK();
}

}  // namespace

std::string SlotColumn(const proto::ModelConfig& config, int i) {
  const auto& s = config.slot(i);
  return s.has_column() ? s.column() : s.name();
}

std::string TaskColumn(const proto::ModelConfig& config, int i) {
  const auto& t = config.task(i);
  return t.has_column() ? t.column() : t.name();
}

ModelSize ModelSizeOf(const proto::ModelConfig& c) {
  // The layout of PepNet<T>::ZeroParams (worker/pepnet_model.cc); model_config_test
  // compares the two on every shipped config and every gate variant.
  uint64_t domain = 0, e = 0, prior_emb = 0;
  for (const proto::SlotSpec& s : c.slot()) {
    if (s.role() == proto::DOMAIN) {
      domain = SatAdd(domain, s.dim());
    } else {
      e = SatAdd(e, s.dim());
      if (s.role() != proto::GENERAL) prior_emb = SatAdd(prior_emb, s.dim());
    }
  }
  const uint64_t prior = SatAdd(prior_emb, e);
  const uint64_t tasks = c.task_size();
  const uint64_t layers = c.tower_size();
  auto input = [&](uint64_t l) -> uint64_t { return l == 0 ? e : c.tower(l - 1); };
  auto output = [&](uint64_t l) -> uint64_t { return l < layers ? c.tower(l) : 1; };
  ModelSize size;
  auto linear = [&](uint64_t in, uint64_t out, uint64_t copies) {
    size.dense_floats = SatAdd(size.dense_floats, SatMul(copies, SatAdd(SatMul(in, out), out)));
    size.activation_floats_per_sample =
        SatAdd(size.activation_floats_per_sample, SatMul(copies, SatAdd(in, out)));
  };
  auto gate = [&](uint64_t in, uint64_t out, uint64_t copies) {
    const uint64_t hidden = c.gate().hidden() > 0 ? c.gate().hidden() : out;
    linear(in, hidden, copies);
    linear(hidden, out, copies);
  };
  if (!c.disable_gates()) {
    gate(SatAdd(domain, c.epnet_gate_sees_e() ? e : 0), e, 1);
    const bool shared = c.ppnet_shared_gate_per_layer();
    const uint64_t gated_layers = layers + (c.ppnet_gate_outputs() ? 0 : 1);
    for (uint64_t l = 0; l < gated_layers; ++l) {
      const uint64_t width = c.ppnet_gate_outputs() ? output(l) : input(l);
      gate(prior, shared ? SatMul(tasks, width) : width, shared ? 1 : tasks);
    }
  }
  for (uint64_t l = 0; l <= layers; ++l) linear(input(l), output(l), tasks);
  return size;
}

Status ValidateModelConfig(const proto::ModelConfig& c) {
  if (c.slot_bits() < 1 || c.slot_bits() > 16) {
    return Invalid("slot_bits must be in [1, 16], got " + std::to_string(c.slot_bits()));
  }
  if (c.slot_size() == 0) return Invalid("slot: none configured");
  if (c.task_size() == 0) return Invalid("task: none configured");
  PEPNET_RETURN_IF_ERROR(ValidateShape(c));
  PEPNET_RETURN_IF_ERROR(ValidateNumbers(c));
  if (!c.has_data()) return Invalid("data: missing (at least data.domain_column is required)");
  const proto::DataFormat& d = c.data();
  if (d.delimiter().size() != 1) return Invalid("data.delimiter must be one character");
  if (d.multi_value_separator().size() != 1 || d.multi_value_separator() == d.delimiter()) {
    return Invalid("data.multi_value_separator must be one character other than the delimiter");
  }
  if (!(d.max_error_rate() >= 0 && d.max_error_rate() <= 1)) {
    return Invalid("data.max_error_rate must be in [0, 1]");
  }
  // A data line is held whole in memory: at most this long. 0 would make every line
  // malformed, and so would a cell cap of 0 for every multi-valued cell.
  if (d.max_line_bytes() < 1 || d.max_line_bytes() > kMaxLineBytes) {
    return Invalid("data.max_line_bytes must be in [1, " + std::to_string(kMaxLineBytes) +
                   "], got " + std::to_string(d.max_line_bytes()));
  }
  if (d.max_values_per_cell() < 1) return Invalid("data.max_values_per_cell must be >= 1");
  if (!d.has_header() && d.column_size() == 0) {
    return Invalid("data.column: needed when data.has_header is false");
  }
  if (d.domain_value_size() > 0 && d.domain_value_size() != static_cast<int>(c.num_domains())) {
    return Invalid("data.domain_value lists " + std::to_string(d.domain_value_size()) +
                   " values but num_domains is " + std::to_string(c.num_domains()));
  }
  std::set<std::string> columns(d.column().begin(), d.column().end());
  auto check_column = [&](const std::string& where, const std::string& column) {
    if (!d.has_header() && !columns.count(column)) {
      return Invalid(where + ": column '" + column + "' is not in data.column");
    }
    return Status::OK();
  };
  PEPNET_RETURN_IF_ERROR(check_column("data.domain_column", d.domain_column()));
  if (d.has_user_column())
    PEPNET_RETURN_IF_ERROR(check_column("data.user_column", d.user_column()));

  std::set<uint32_t> ids;
  std::set<std::string> names;
  int domain_slots = 0;
  for (int i = 0; i < c.slot_size(); ++i) {
    const proto::SlotSpec& s = c.slot(i);
    const std::string where = "slot '" + s.name() + "'";
    if (!names.insert(s.name()).second) return Invalid(where + ": name used twice");
    if (s.id() >= (1u << c.slot_bits())) {
      return Invalid(where + ": id " + std::to_string(s.id()) +
                     " does not fit in slot_bits=" + std::to_string(c.slot_bits()));
    }
    if (!ids.insert(s.id()).second) {
      return Invalid(where + ": id " + std::to_string(s.id()) + " used by another slot");
    }
    if (s.dim() < 1 || s.dim() > kMaxSlotDim) {
      return Invalid(where + ": dim must be in [1, " + std::to_string(kMaxSlotDim) + "]");
    }
    if (s.has_learning_rate() && !PositiveFinite(s.learning_rate())) {
      return Invalid(where + ": learning_rate must be > 0 and finite");
    }
    if (s.has_bucketing()) {
      if (s.multi_valued()) return Invalid(where + ": a bucketed slot cannot be multi_valued");
      PEPNET_RETURN_IF_ERROR(ValidateBucketing(where, s.bucketing()));
    }
    PEPNET_RETURN_IF_ERROR(check_column(where, SlotColumn(c, i)));
    domain_slots += s.role() == proto::DOMAIN;
  }
  if (domain_slots == 0) return Invalid("slot: no slot has role DOMAIN (EPNet needs one)");
  if (domain_slots == c.slot_size()) return Invalid("slot: every slot has role DOMAIN, E is empty");
  std::set<std::string> task_names;
  for (int i = 0; i < c.task_size(); ++i) {
    const std::string where = "task '" + c.task(i).name() + "'";
    if (!task_names.insert(c.task(i).name()).second) return Invalid(where + ": name used twice");
    // Pushed as click counts, which the servers refuse when negative or not finite.
    if (!(c.task(i).click_weight() >= 0 && Finite(c.task(i).click_weight()))) {
      return Invalid(where + ": click_weight must be >= 0 and finite");
    }
    PEPNET_RETURN_IF_ERROR(check_column(where, TaskColumn(c, i)));
  }
  PEPNET_RETURN_IF_ERROR(ValidateSize(c));
  // The servers' settings the model carries (score, admission filter, slot eviction):
  // refused here, not when the first shard starts with them.
  Status st = ValidateTableOptions(TableOptionsFor(c, 0));
  return st.ok() ? st : st.WithContext("the table settings of the model");
}

Status ParseModelConfig(const std::string& text, const std::string& source,
                        proto::ModelConfig* config) {
  PEPNET_RETURN_IF_ERROR(ParseTextProto(text, source, config));
  Status st = ValidateModelConfig(*config);
  return st.ok() ? st : st.WithContext(source);
}

Status LoadModelConfigFile(const std::string& path, proto::ModelConfig* config) {
  PEPNET_RETURN_IF_ERROR(CheckConfigFile(path, "model config"));
  std::string text;
  PEPNET_RETURN_IF_ERROR(ReadFileToString(path, "model config", &text));
  return ParseModelConfig(text, path, config);
}

Status CheckManifestModel(const proto::ModelManifest& manifest, const std::string& path) {
  if (!manifest.has_model()) return Status::Corruption(path + ": no model");
  Status st = ValidateModelConfig(manifest.model());
  if (!st.ok()) return st.WithContext(path + ": model");
  const uint64_t implied = ModelSizeOf(manifest.model()).dense_floats;
  if (manifest.dense_floats() != implied) {
    return Status::Corruption(path + ": dense_floats " + std::to_string(manifest.dense_floats()) +
                              " is not what the model config implies (" + std::to_string(implied) +
                              ")");
  }
  return Status::OK();
}

uint64_t ModelConfigFingerprint(const proto::ModelConfig& config) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    config.SerializeToCodedStream(&coded);
  }
  FileChecksum sum;
  sum.Update(bytes.data(), bytes.size());
  return sum.Final();
}

}  // namespace pepnet
