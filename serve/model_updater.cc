#include "serve/model_updater.h"

#include <glog/logging.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>

#include "common/stats.h"
#include "proto/model_config.pb.h"
#include "proto/publish.pb.h"
#include "publish/manifest.h"
#include "publish/published_model.h"
#include "serve/live_model.h"
#include "serve/serving_table.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

namespace pepnet {
namespace {

constexpr char kCorrupt[] = "corrupt";
constexpr char kModel[] = "model";
constexpr char kSequence[] = "sequence";

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The version a folder name gives ("v-00000005"), 0 if none.
uint64_t VersionOfFolder(const std::string& name) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(name.c_str() + 2, &end, 10);
  return end != nullptr && *end == '\0' ? v : 0;
}

// When the version folder was renamed into place: a rename changes the folder's ctime.
double RenameTime(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return 0;
  return st.st_ctim.tv_sec + st.st_ctim.tv_nsec / 1e9;
}

Status ReadDense(const std::string& dir, const proto::ModelManifest& m,
                 std::shared_ptr<const PepNetParams<float>>* out) {
  std::vector<float> flat;
  PEPNET_RETURN_IF_ERROR(
      ReadDenseFile(dir + "/" + kDenseFile, m.dense_floats(), m.dense_checksum(), &flat));
  auto params =
      std::make_shared<PepNetParams<float>>(PepNet<float>(ShapeOf(m.model())).ZeroParams());
  UnflattenParams(flat.data(), params.get());
  *out = std::move(params);
  return Status::OK();
}

std::shared_ptr<ServedVersion> DescribeVersion(const std::string& dir,
                                               const proto::ModelManifest& m) {
  auto v = std::make_shared<ServedVersion>();
  v->version = m.version();
  v->base_version = m.base_version();
  v->pass = m.pass();
  v->pass_name = m.pass_name();
  v->is_base = m.is_base();
  v->table_seed = m.table_seed();
  v->rows_changed = m.total_rows();
  v->keys_deleted = m.total_deleted();
  v->published_unix_s = RenameTime(dir);
  v->model = std::make_shared<proto::ModelConfig>(m.model());
  return v;
}

void LogLive(const ServedVersion& v) {
  LOG(INFO) << "serving version " << v.version << " (" << (v.is_base ? "base" : "delta")
            << " of pass " << v.pass << " '" << v.pass_name << "': " << v.rows_changed << " rows, "
            << v.keys_deleted << " deleted keys; read in " << v.read_seconds << " s, switched in "
            << v.switch_seconds << " s, " << (v.live_unix_s - v.published_unix_s)
            << " s after its publish)";
}

// The reason a chain that would not load is refused for: another model (the chain's own
// versions disagree), or else what it is, corrupt (a file or manifest that fails its
// checks, or a chain with a version missing).
const char* ReasonOf(const Status& st) {
  return st.code() == Status::kInvalidArgument ? kModel : kCorrupt;
}

}  // namespace

struct ModelUpdater::Candidate {
  uint64_t version = 0;
  std::string dir;
  proto::ModelManifest manifest;
};

ModelUpdater::ModelUpdater(ModelUpdaterOptions options, LiveModel* live)
    : options_(std::move(options)), live_(live) {}

ModelUpdater::~ModelUpdater() { Stop(); }

void ModelUpdater::Start() {
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(wake_mu_);
    while (!stop_) {
      lock.unlock();
      const Status st = PollOnce();
      if (!st.ok()) NoteNotReady(st.message());
      lock.lock();
      wake_.wait_for(lock, std::chrono::milliseconds(options_.poll_ms), [this] { return stop_; });
    }
  });
}

void ModelUpdater::Stop() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ModelUpdater::NoteNotReady(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (why != not_ready_) LOG(WARNING) << "no model to serve yet: " << why;
  not_ready_ = why;
}

std::string ModelUpdater::not_ready_reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return not_ready_;
}

uint64_t ModelUpdater::refused(const std::string& reason) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = refused_by_reason_.find(reason);
  return it == refused_by_reason_.end() ? 0 : it->second;
}

std::string ModelUpdater::last_refusal() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_refusal_;
}

void ModelUpdater::Refuse(uint64_t version, const std::string& reason, const Status& why) {
  refused_versions_.insert(version);
  LOG(WARNING) << "refused model version " << version << " (" << reason
               << "); the live version keeps serving: " << why.ToString();
  std::lock_guard<std::mutex> lock(mu_);
  ++refused_by_reason_[reason];
  last_refusal_ = "version " + std::to_string(version) + " (" + reason + "): " + why.ToString();
}

void ModelUpdater::AddStats(StatSet* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  out->Counter("pepnet_serve_updates_total", "Versions made live, by kind.", bases_)
      .Label("kind", "base");
  out->Counter("pepnet_serve_updates_total", "Versions made live, by kind.", deltas_)
      .Label("kind", "delta");
  for (const char* reason : {kCorrupt, kModel, kSequence}) {
    auto it = refused_by_reason_.find(reason);
    out->Counter("pepnet_serve_versions_refused_total",
                 "Published versions refused (the live one kept serving), by reason.",
                 it == refused_by_reason_.end() ? 0 : it->second)
        .Label("reason", reason);
  }
  out->Counter("pepnet_serve_poll_errors_total", "Polls of --model_dir that could not read it.",
               poll_errors_);
}

Status ModelUpdater::LoadChain(uint64_t version) {
  const auto start = std::chrono::steady_clock::now();
  PublishedVersion chain;
  PEPNET_RETURN_IF_ERROR(FindPublishedVersion(options_.model_dir, version, &chain));
  const proto::ModelManifest& top = chain.top();
  PEPNET_RETURN_IF_ERROR(CheckManifestModel(top, chain.top_manifest_path()));
  const uint64_t fingerprint = ModelConfigFingerprint(top.model());
  std::unique_ptr<ServingTable> table;
  PEPNET_RETURN_IF_ERROR(ServingTable::Create(top.model(), top.table_seed(), &table));
  for (size_t i = 0; i < chain.manifests.size(); ++i) {
    const proto::ModelManifest& m = chain.manifests[i];
    const std::string dir = chain.publish_dir + "/" + chain.folders[i];
    if (ModelConfigFingerprint(m.model()) != fingerprint || m.table_seed() != top.table_seed()) {
      return Status::InvalidArgument(dir + ": another model config or table seed than version " +
                                     std::to_string(top.version()) + " it leads to");
    }
    PEPNET_RETURN_IF_ERROR(ReadVersionRows(
        dir, m,
        [&](uint64_t key, const std::string&) {
          table->Erase(key);
          return Status::OK();
        },
        [&](uint64_t key, const float* w, uint32_t dim, const std::string& path) {
          return table->Set(key, w, dim).WithContext(path);
        }));
  }
  const std::string top_dir = chain.publish_dir + "/" + chain.folders.back();
  std::shared_ptr<const PepNetParams<float>> dense;
  PEPNET_RETURN_IF_ERROR(ReadDense(top_dir, top, &dense));
  std::shared_ptr<ServedVersion> v = DescribeVersion(top_dir, top);
  table->Fit();
  v->rows_changed = table->rows();
  v->read_seconds = SecondsSince(start);
  live_->Install(std::move(table), std::move(dense), v);
  LogLive(*v);
  std::lock_guard<std::mutex> lock(mu_);
  ++bases_;
  not_ready_.clear();
  return Status::OK();
}

Status ModelUpdater::ApplyDelta(const Candidate& c) {
  const auto start = std::chrono::steady_clock::now();
  const ServingTable& table = *live_->table_for_updater();
  StagedDelta delta;
  PEPNET_RETURN_IF_ERROR(ReadVersionRows(
      c.dir, c.manifest,
      [&](uint64_t key, const std::string&) {
        delta.deleted.push_back(key);
        return Status::OK();
      },
      [&](uint64_t key, const float* w, uint32_t dim, const std::string& path) {
        if (table.DimOf(key) != dim) {
          return Status::Corruption(path + ": key " + FormatKey(key) + " has a row of dim " +
                                    std::to_string(dim) + ", its slot's is " +
                                    std::to_string(table.DimOf(key)));
        }
        delta.keys.push_back(key);
        delta.weights.insert(delta.weights.end(), w, w + dim);
        delta.offset.push_back(delta.weights.size());
        return Status::OK();
      }));
  std::shared_ptr<const PepNetParams<float>> dense;
  PEPNET_RETURN_IF_ERROR(ReadDense(c.dir, c.manifest, &dense));
  std::shared_ptr<ServedVersion> v = DescribeVersion(c.dir, c.manifest);
  v->read_seconds = SecondsSince(start);
  live_->Apply(delta, std::move(dense), v);
  LogLive(*v);
  std::lock_guard<std::mutex> lock(mu_);
  ++deltas_;
  return Status::OK();
}

Status ModelUpdater::PollOnce() {
  std::vector<std::string> folders;
  Status st = ListVersions(options_.model_dir, &folders);
  if (!st.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    ++poll_errors_;
    if (st.message() != last_poll_error_) LOG(WARNING) << "--model_dir: " << st.ToString();
    last_poll_error_ = st.message();
    if (!live_->version()) not_ready_ = st.message();
    return Status::OK();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_poll_error_.clear();
  }
  std::vector<uint64_t> versions;
  for (const std::string& f : folders) {
    if (const uint64_t v = VersionOfFolder(f)) versions.push_back(v);
  }
  std::shared_ptr<const ServedVersion> live = live_->version();
  const std::string& dir = options_.model_dir;

  if (options_.pin_version != 0) {
    if (live) return Status::OK();
    const uint64_t pin = options_.pin_version;
    if (refused_versions_.count(pin)) {
      return Status::Corruption("--model_version=" + std::to_string(pin) +
                                " was refused: " + last_refusal());
    }
    if (std::find(versions.begin(), versions.end(), pin) == versions.end()) {
      return Status::NotFound("--model_version=" + std::to_string(pin) + ": no version " +
                              std::to_string(pin) + " under " + dir);
    }
    st = LoadChain(pin);
    if (!st.ok()) {
      Refuse(pin, ReasonOf(st), st);
      return Status(st.code(), "--model_version=" + std::to_string(pin) + ": " + st.message());
    }
    return Status::OK();
  }

  if (!live) {
    // The newest version that loads; each refused one is tried once.
    for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
      if (refused_versions_.count(*it)) continue;
      st = LoadChain(*it);
      if (st.ok()) {
        seen_.insert(versions.begin(), versions.end());
        return Status::OK();
      }
      Refuse(*it, ReasonOf(st), st);
    }
    NoteNotReady(versions.empty() ? "no model version under " + dir + " yet"
                                  : "every version under " + dir + " was refused");
    return Status::OK();
  }

  std::vector<Candidate> candidates;
  for (uint64_t v : versions) {
    const bool first_look = seen_.insert(v).second;
    if (refused_versions_.count(v) || v == live->version) continue;
    if (v < live->version) {
      if (first_look) {
        Refuse(v, kSequence,
               Status::InvalidArgument("it appeared after version " +
                                       std::to_string(live->version) + " went live"));
      }
      continue;
    }
    Candidate c;
    c.version = v;
    c.dir = dir + "/" + VersionFolder(v);
    st = ReadManifest(c.dir, &c.manifest);
    if (st.ok() && c.manifest.version() != v) {
      st = Status::Corruption(c.dir + "/" + kManifestFile + ": version " +
                              std::to_string(c.manifest.version()) + " in folder " +
                              VersionFolder(v));
    }
    if (st.ok()) st = CheckManifestModel(c.manifest, c.dir + "/" + kManifestFile);
    if (!st.ok()) {
      Refuse(v, kCorrupt, st);
      continue;
    }
    if (ModelConfigFingerprint(c.manifest.model()) != ModelConfigFingerprint(*live->model)) {
      Refuse(v, kModel,
             Status::InvalidArgument(c.dir +
                                     ": trained with another model config than the "
                                     "live version " +
                                     std::to_string(live->version) +
                                     " (restart pepnet_serve to serve another model)"));
      continue;
    }
    candidates.push_back(std::move(c));
  }
  // Deltas before the newest base are superseded by it.
  size_t first = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (candidates[i].manifest.is_base()) first = i;
  }
  for (size_t i = first; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    live = live_->version();
    if (c.manifest.is_base()) {
      st = LoadChain(c.version);
      if (!st.ok()) Refuse(c.version, ReasonOf(st), st);
      continue;
    }
    if (c.manifest.parent_version() != live->version) {
      Refuse(c.version, kSequence,
             Status::InvalidArgument("a delta of version " +
                                     std::to_string(c.manifest.parent_version()) +
                                     ", the live version is " + std::to_string(live->version)));
      continue;
    }
    if (c.manifest.table_seed() != live->table_seed) {
      Refuse(c.version, kModel,
             Status::InvalidArgument(
                 c.dir + ": table seed " + std::to_string(c.manifest.table_seed()) +
                 ", the live version's is " + std::to_string(live->table_seed)));
      continue;
    }
    st = ApplyDelta(c);
    if (!st.ok()) Refuse(c.version, kCorrupt, st);
  }
  return Status::OK();
}

}  // namespace pepnet
