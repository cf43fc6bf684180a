#include "worker/model_config.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "common/checksum.h"

#include <set>

#include "common/text_proto.h"
#include "proto/model_config.pb.h"

namespace pepnet {
namespace {

Status Invalid(const std::string& what) { return Status::InvalidArgument(what); }

Status ValidateBucketing(const std::string& where, const proto::Bucketing& b) {
  const bool has_log = b.has_log_base();
  if (has_log == (b.boundary_size() > 0)) {
    return Invalid(where + ".bucketing: set exactly one of boundary and log_base");
  }
  if (has_log && !(b.log_base() > 1.0)) return Invalid(where + ".bucketing.log_base must be > 1");
  for (int i = 1; i < b.boundary_size(); ++i) {
    if (!(b.boundary(i) > b.boundary(i - 1))) {
      return Invalid(where + ".bucketing.boundary must be strictly ascending (entry " +
                     std::to_string(i) + ")");
    }
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

Status ValidateModelConfig(const proto::ModelConfig& c) {
  if (c.slot_bits() < 1 || c.slot_bits() > 16) {
    return Invalid("slot_bits must be in [1, 16], got " + std::to_string(c.slot_bits()));
  }
  if (c.slot_size() == 0) return Invalid("slot: none configured");
  if (c.task_size() == 0) return Invalid("task: none configured");
  if (c.num_domains() < 1) return Invalid("num_domains must be >= 1");
  if (c.tower_size() == 0) return Invalid("tower: at least one hidden width is needed");
  for (int i = 0; i < c.tower_size(); ++i) {
    if (c.tower(i) < 1) return Invalid("tower[" + std::to_string(i) + "] must be >= 1");
  }
  if (c.batch_size() < 1) return Invalid("batch_size must be >= 1");
  if (!(c.gate().gamma() > 0)) return Invalid("gate.gamma must be > 0");
  if (!(c.adam().learning_rate() > 0)) return Invalid("adam.learning_rate must be > 0");
  if (!(c.embedding_learning_rate() > 0)) return Invalid("embedding_learning_rate must be > 0");
  if (!c.has_data()) return Invalid("data: missing (at least data.domain_column is required)");
  const proto::DataFormat& d = c.data();
  if (d.delimiter().size() != 1) return Invalid("data.delimiter must be one character");
  if (d.multi_value_separator().size() != 1 || d.multi_value_separator() == d.delimiter()) {
    return Invalid("data.multi_value_separator must be one character other than the delimiter");
  }
  if (!(d.max_error_rate() >= 0 && d.max_error_rate() <= 1)) {
    return Invalid("data.max_error_rate must be in [0, 1]");
  }
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
    if (s.dim() < 1 || s.dim() > 4096) return Invalid(where + ": dim must be in [1, 4096]");
    if (s.has_learning_rate() && !(s.learning_rate() > 0)) {
      return Invalid(where + ": learning_rate must be > 0");
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
    PEPNET_RETURN_IF_ERROR(check_column(where, TaskColumn(c, i)));
  }
  return Status::OK();
}

Status ParseModelConfig(const std::string& text, const std::string& source,
                        proto::ModelConfig* config) {
  PEPNET_RETURN_IF_ERROR(ParseTextProto(text, source, config));
  Status st = ValidateModelConfig(*config);
  return st.ok() ? st : st.WithContext(source);
}

Status LoadModelConfigFile(const std::string& path, proto::ModelConfig* config) {
  std::string text;
  PEPNET_RETURN_IF_ERROR(ReadFileToString(path, "model config", &text));
  return ParseModelConfig(text, path, config);
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
