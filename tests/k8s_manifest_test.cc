// deploy/k8s as `kubectl apply -k` would send it: the default deployment and the overlay
// that scales it, rendered by `kubectl kustomize` (whichever kubectl is on PATH: the
// manifests must render with kustomize v2.0.3 and v5 alike), then checked for what a user
// relies on before applying them: the objects and their counts, the headless Service, the
// shard id and worker index wiring (the containers' scripts run here, with stand-ins for
// the binaries that print their arguments), the probes and scrape annotations on the admin
// port, the volume claims under the data dirs, the ConfigMap's files, and every flag each
// binary needs, spelled as the binaries of this build define it: gflags ignores an unknown
// flag in a flag file, so a misspelled one would go unnoticed in a cluster.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace pepnet {
namespace {

using nlohmann::json;

// The names the manifests give their objects; the flags and scripts refer to them.
constexpr char kService[] = "pepnet";
constexpr char kShards[] = "pepnet-ps";
constexpr char kCoordinator[] = "pepnet-coord";
constexpr char kWorkers[] = "pepnet-worker";
constexpr char kConfigMap[] = "pepnet-config";
constexpr char kSecret[] = "pepnet-secret";
constexpr char kModelVolume[] = "pepnet-model";
constexpr char kPassesVolume[] = "pepnet-passes";

std::string FindOnPath(const std::string& name) {
  const char* path = getenv("PATH");
  std::string dirs = path ? path : "";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    const std::string candidate = dirs.substr(start, colon - start) + "/" + name;
    struct stat st;
    if (colon > start && stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = colon + 1;
  }
  return "";
}

struct Output {
  int code = -1;  // -1: it did not start or did not finish
  std::string out;
  std::string err;
};

// Runs argv with its stdout and stderr apart: kustomize v5 warns on stderr about the
// fields that v2.0.3 needs, and the objects are on stdout.
Output Capture(const std::vector<std::string>& argv, const testing::TempDir& dir) {
  static int runs = 0;
  const std::string tag = dir.File("run" + std::to_string(runs++));
  std::vector<std::string> sh = {
      "/bin/sh", "-c",         "out=$1 err=$2; shift 2; exec \"$@\" > \"$out\" 2> \"$err\"",
      "sh",      tag + ".out", tag + ".err"};
  sh.insert(sh.end(), argv.begin(), argv.end());
  Output o;
  Subprocess p;
  Status st = p.Start(sh, tag + ".log");
  if (!st.ok()) {
    o.err = st.ToString();
    return o;
  }
  int code = -1;
  st = p.Wait(120000, &code);
  o.out = testing::ReadFile(tag + ".out");
  o.err = testing::ReadFile(tag + ".err") + testing::ReadFile(tag + ".log");
  if (st.ok()) o.code = code;
  return o;
}

// `kubectl annotate --local -o json` prints one JSON object after the other.
std::vector<json> ParseJsonStream(const std::string& text, std::string* error) {
  std::vector<json> values;
  size_t i = 0;
  while (i < text.size()) {
    if (isspace(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    const size_t start = i;
    int depth = 0;
    bool in_string = false;
    for (; i < text.size(); ++i) {
      const char c = text[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if ((c == '}' || c == ']') && --depth == 0) {
        ++i;
        break;
      }
    }
    json value = json::parse(text.substr(start, i - start), nullptr, false);
    if (value.is_discarded()) {
      *error = "kubectl printed something that is not JSON at byte " + std::to_string(start);
      return {};
    }
    if (value.value("kind", "") == "List") {
      for (const json& item : value["items"]) values.push_back(item);
    } else {
      values.push_back(std::move(value));
    }
  }
  return values;
}

json Get(const json& j, const std::string& pointer) {
  const json::json_pointer p(pointer);
  return j.contains(p) ? j.at(p) : json();
}

// "4Gi" and the like, in bytes; -1 if it is not a quantity.
double Quantity(const std::string& q) {
  static const std::map<std::string, double> units = {
      {"", 1},           {"k", 1e3},           {"M", 1e6},
      {"G", 1e9},        {"T", 1e12},          {"Ki", 1024.0},
      {"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0}};
  size_t digits = 0;
  while (digits < q.size() &&
         (isdigit(static_cast<unsigned char>(q[digits])) || q[digits] == '.')) {
    ++digits;
  }
  auto unit = units.find(q.substr(digits));
  if (digits == 0 || unit == units.end()) return -1;
  return std::stod(q.substr(0, digits)) * unit->second;
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// `path` is `dir` or inside it.
bool Under(const std::string& path, const std::string& dir) {
  return path == dir || path.rfind(dir + "/", 0) == 0;
}

// The deployment as rendered, by kind and name.
struct Rendered {
  std::string error;  // why it could not be rendered; empty if it was
  std::vector<json> objects;

  const json* Find(const std::string& kind, const std::string& name) const {
    for (const json& o : objects) {
      if (o.value("kind", "") == kind && Get(o, "/metadata/name") == name) return &o;
    }
    return nullptr;
  }
  std::vector<const json*> OfKind(const std::string& kind) const {
    std::vector<const json*> out;
    for (const json& o : objects) {
      if (o.value("kind", "") == kind) out.push_back(&o);
    }
    return out;
  }
};

// kubectl on PATH; empty (and the reason in *why) if there is none.
std::string Kubectl(std::string* why) {
  const std::string kubectl = FindOnPath("kubectl");
  if (kubectl.empty()) {
    *why =
        "kubectl is not on PATH: this test renders deploy/k8s with `kubectl kustomize`. "
        "Install it (deploy/install_deps.sh --test installs Debian's kubernetes-client) "
        "and run the test again.";
  }
  return kubectl;
}

const Rendered& Render(const std::string& relative) {
  static std::map<std::string, Rendered> cache;
  auto it = cache.find(relative);
  if (it != cache.end()) return it->second;
  Rendered& r = cache[relative];
  if (testing::SourceDir().empty()) {
    r.error = "PEPNET_SOURCE_DIR is not set (ctest sets it to the source tree)";
    return r;
  }
  const std::string kubectl = Kubectl(&r.error);
  if (kubectl.empty()) return r;
  static testing::TempDir dir;
  static bool said = false;
  if (!said) {
    said = true;
    const Output version = Capture({kubectl, "version", "--client"}, dir);
    fprintf(stderr, "rendering with %s: %s\n", kubectl.c_str(),
            version.out.substr(0, version.out.find('\n')).c_str());
  }
  const std::string source = testing::SourceDir() + "/" + relative;
  const Output yaml = Capture({kubectl, "kustomize", source}, dir);
  if (yaml.code != 0) {
    r.error = "kubectl kustomize " + source + " failed (exit " + std::to_string(yaml.code) +
              "):\n" + yaml.err;
    return r;
  }
  const std::string file = dir.File("rendered" + std::to_string(cache.size()) + ".yaml");
  testing::WriteFile(file, yaml.out);
  // A change that needs no cluster: the only offline way both kubectl 1.20 and 1.32 have to
  // turn the YAML stream into JSON objects.
  const Output objects = Capture(
      {kubectl, "annotate", "--local", "-f", file, "-o", "json", "pepnet-test=rendered"}, dir);
  if (objects.code != 0) {
    r.error =
        "kubectl annotate --local -o json of the rendered " + relative + " failed:\n" + objects.err;
    return r;
  }
  r.objects = ParseJsonStream(objects.out, &r.error);
  return r;
}

// One of the three workloads, with its main container and the command line that container
// gives its binary.
struct Workload {
  const json* object = nullptr;  // the StatefulSet or the Job
  json pod;                      // spec.template
  json container;                // the main container (named after the object)
  std::vector<std::string> argv;
  std::map<std::string, std::string> flags;  // after every --flagfile, the last value wins
  std::string config_mount;                  // where the ConfigMap is mounted
};

// The pod's volume named `name`, or null.
json Volume(const Workload& w, const std::string& name) {
  for (const json& v : Get(w.pod, "/spec/volumes")) {
    if (v.value("name", "") == name) return v;
  }
  return json();
}

// The name of the volume mounted in `container` where `path` is (the deepest mount), or "".
std::string VolumeAt(const json& container, const std::string& path) {
  std::string best, best_mount;
  for (const json& m : Get(container, "/volumeMounts")) {
    const std::string mount = m.value("mountPath", "");
    if (Under(path, mount) && mount.size() > best_mount.size()) {
      best = m.value("name", "");
      best_mount = mount;
    }
  }
  return best;
}

std::string MountPath(const json& container, const std::string& volume) {
  for (const json& m : Get(container, "/volumeMounts")) {
    if (m.value("name", "") == volume) return m.value("mountPath", "");
  }
  return "";
}

bool MountedReadOnly(const json& container, const std::string& volume) {
  for (const json& m : Get(container, "/volumeMounts")) {
    if (m.value("name", "") == volume) return m.value("readOnly", false);
  }
  return false;
}

// The container port named `name` (0 if none).
int ContainerPort(const json& container, const std::string& name) {
  for (const json& p : Get(container, "/ports")) {
    if (p.value("name", "") == name) return p.value("containerPort", 0);
  }
  return 0;
}

// A probe's or an annotation's port: a number, or the name of a container port.
int ResolvePort(const json& container, const json& port) {
  if (port.is_number()) return port.get<int>();
  if (port.is_string()) {
    const std::string s = port.get<std::string>();
    if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) return std::stoi(s);
    return ContainerPort(container, s);
  }
  return 0;
}

std::vector<std::string> Strings(const json& list) {
  std::vector<std::string> out;
  for (const json& s : list) out.push_back(s.is_string() ? s.get<std::string>() : s.dump());
  return out;
}

// The container's command and args, as the runtime would start them.
std::vector<std::string> Command(const json& container) {
  std::vector<std::string> command = Strings(Get(container, "/command"));
  for (const std::string& a : Strings(Get(container, "/args"))) command.push_back(a);
  return command;
}

// The shell script of a `/bin/sh -c SCRIPT` container (after tini), or "".
std::string Script(const json& container) {
  std::vector<std::string> command = Command(container);
  size_t i = 0;
  if (command.size() > 1 && command[0] == "/usr/bin/tini" && command[1] == "--") i = 2;
  if (command.size() == i + 3 && command[i] == "/bin/sh" && command[i + 1] == "-c") {
    return command[i + 2];
  }
  return "";
}

// What the stand-in binaries print: their name, then one argument per line.
const std::string& StubDir() {
  static testing::TempDir dir;
  static bool made = false;
  if (!made) {
    made = true;
    for (const char* name : {"pepnet_ps", "pepnet_coord", "pepnet_worker", "pepnet_ctl"}) {
      const std::string path = dir.File(name);
      testing::WriteFile(path, "#!/bin/sh\nprintf '%s\\n' \"${0##*/}\" \"$@\"\n");
      chmod(path.c_str(), 0755);
    }
  }
  return dir.path();
}

// The binary's command line: a shell script is run with the stand-ins first on PATH, in
// the environment the pod would give it (`env`: NAME=VALUE). Failures are test failures.
std::vector<std::string> CommandLine(const json& container, const std::vector<std::string>& env) {
  std::vector<std::string> command = Command(container);
  const std::string script = Script(container);
  if (script.empty()) {
    if (command.size() > 1 && command[0] == "/usr/bin/tini" && command[1] == "--") {
      command.erase(command.begin(), command.begin() + 2);
    }
    return command;
  }
  static testing::TempDir dir;
  std::vector<std::string> argv = {"/usr/bin/env", "-i", "PATH=" + StubDir() + ":/usr/bin:/bin"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.insert(argv.end(), {"/bin/sh", "-c", script});
  const Output o = Capture(argv, dir);
  EXPECT_EQ(o.code, 0) << "the script of container " << container.value("name", "") << " failed:\n"
                       << script << "\n"
                       << o.err;
  std::vector<std::string> lines;
  std::stringstream in(o.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The flags of one flag file: --name=value lines, comments and blank lines. Any other line
// would be a gflags program-name filter: a mistake here.
void ReadFlagFile(const std::string& name, const std::string& text,
                  std::map<std::string, std::string>* flags) {
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    line = line.substr(first);
    const size_t eq = line.find('=');
    if (line.rfind("--", 0) != 0 || eq == std::string::npos) {
      ADD_FAILURE() << name << ": '" << line << "' is not a --flag=value line";
      continue;
    }
    (*flags)[line.substr(2, eq - 2)] = line.substr(eq + 1);
  }
}

struct Deployment {
  const char* dir;  // under the source tree
  int shards;
  int workers;
};

void PrintTo(const Deployment& d, std::ostream* os) { *os << d.dir; }

class K8sManifestTest : public ::testing::TestWithParam<Deployment> {
 protected:
  void SetUp() override {
    const Rendered& r = Render(GetParam().dir);
    ASSERT_TRUE(r.error.empty()) << r.error;
    rendered_ = &r;
    const std::vector<const json*> maps = r.OfKind("ConfigMap");
    ASSERT_EQ(maps.size(), 1u) << "one ConfigMap, " << kConfigMap;
    config_map_ = maps[0];
    ASSERT_EQ(Get(*config_map_, "/metadata/name").get<std::string>().rfind(kConfigMap, 0), 0u);
    for (const auto& [kind, name] : {std::pair<const char*, const char*>{"StatefulSet", kShards},
                                     {"StatefulSet", kCoordinator},
                                     {"Job", kWorkers}}) {
      const json* object = r.Find(kind, name);
      ASSERT_NE(object, nullptr) << "no " << kind << " " << name;
      ASSERT_NO_FATAL_FAILURE(Load(object, &workloads_[name]));
    }
    // The pods the shell scripts see: the last shard, the last worker.
    const int last_shard = Get(*workloads_[kShards].object, "/spec/replicas").get<int>() - 1;
    const int last_worker = Get(*workloads_[kWorkers].object, "/spec/completions").get<int>() - 1;
    const std::map<std::string, std::vector<std::string>> env = {
        {kShards, {"HOSTNAME=" + std::string(kShards) + "-" + std::to_string(last_shard)}},
        {kCoordinator, {"HOSTNAME=" + std::string(kCoordinator) + "-0"}},
        {kWorkers,
         {"HOSTNAME=pepnet-worker-" + std::to_string(last_worker) + "-x7k2p",
          "JOB_COMPLETION_INDEX=" + std::to_string(last_worker)}}};
    for (auto& [name, w] : workloads_) {
      w.argv = CommandLine(w.container, env.at(name));
      ASSERT_FALSE(w.argv.empty()) << name << " starts no binary";
      for (size_t i = 1; i < w.argv.size(); ++i) {
        const std::string& arg = w.argv[i];
        const size_t eq = arg.find('=');
        ASSERT_TRUE(arg.rfind("--", 0) == 0 && eq != std::string::npos)
            << name << ": argument '" << arg << "' is not --flag=value";
        const std::string flag = arg.substr(2, eq - 2), value = arg.substr(eq + 1);
        if (flag != "flagfile") {
          w.flags[flag] = value;
          continue;
        }
        ASSERT_TRUE(Under(value, w.config_mount))
            << name << ": --flagfile=" << value << " is not in the ConfigMap (mounted at "
            << w.config_mount << ")";
        const std::string key = value.substr(w.config_mount.size() + 1);
        const json text = Get(*config_map_, "/data/" + key);
        ASSERT_TRUE(text.is_string())
            << name << ": --flagfile=" << value << ": the ConfigMap has no " << key;
        ReadFlagFile(key, text.get<std::string>(), &w.flags);
      }
    }
  }

  // The object's pod template, its main container and where it mounts the ConfigMap.
  void Load(const json* object, Workload* w) {
    w->object = object;
    w->pod = Get(*object, "/spec/template");
    const std::string name = Get(*object, "/metadata/name");
    for (const json& c : Get(w->pod, "/spec/containers")) {
      if (c.value("name", "") == name) w->container = c;
    }
    ASSERT_TRUE(w->container.is_object()) << name << " has no container named " << name;
    for (const json& v : Get(w->pod, "/spec/volumes")) {
      if (Get(v, "/configMap/name") == Get(*config_map_, "/metadata/name")) {
        w->config_mount = MountPath(w->container, v.value("name", ""));
      }
    }
    ASSERT_FALSE(w->config_mount.empty())
        << name << " does not mount the ConfigMap " << Get(*config_map_, "/metadata/name");
  }

  const Workload& W(const std::string& name) { return workloads_.at(name); }

  // The flag `flag` of workload `name` (a failure if it has none).
  std::string Flag(const std::string& name, const std::string& flag) {
    const auto& flags = W(name).flags;
    auto it = flags.find(flag);
    if (it == flags.end()) {
      ADD_FAILURE() << name << " is started without --" << flag;
      return "";
    }
    return it->second;
  }

  // The init container of workload `name` called `init`, or null.
  json Init(const std::string& name, const std::string& init) {
    for (const json& c : Get(W(name).pod, "/spec/initContainers")) {
      if (c.value("name", "") == init) return c;
    }
    return json();
  }

  const Rendered* rendered_ = nullptr;
  const json* config_map_ = nullptr;
  std::map<std::string, Workload> workloads_;
};

TEST_P(K8sManifestTest, RendersTheServiceTheWorkloadsTheConfigAndTheSharedVolumes) {
  std::map<std::string, int> kinds;
  for (const json& o : rendered_->objects) ++kinds[o.value("kind", "")];
  EXPECT_EQ(kinds, (std::map<std::string, int>{{"ConfigMap", 1},
                                               {"Job", 1},
                                               {"PersistentVolumeClaim", 2},
                                               {"Service", 1},
                                               {"StatefulSet", 2}}));
  // The secret is the user's to create: none may ship in the repository.
  EXPECT_EQ(kinds.count("Secret"), 0u);
  for (const char* claim : {kModelVolume, kPassesVolume}) {
    const json* pvc = rendered_->Find("PersistentVolumeClaim", claim);
    ASSERT_NE(pvc, nullptr) << claim;
    // Mounted by several pods, on several nodes.
    EXPECT_EQ(Get(*pvc, "/spec/accessModes"), json::array({"ReadWriteMany"})) << claim;
  }
}

TEST_P(K8sManifestTest, AHeadlessServiceNamesTheShardsAndTheCoordinator) {
  const json* service = rendered_->Find("Service", kService);
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(Get(*service, "/spec/clusterIP"), "None");
  // The processes stop at a name that does not resolve, and wait for a peer that is not
  // ready yet: the names must exist before readiness.
  EXPECT_EQ(Get(*service, "/spec/publishNotReadyAddresses"), true);
  std::map<std::string, int> ports;
  for (const json& p : Get(*service, "/spec/ports"))
    ports[p.value("name", "")] = p.value("port", 0);
  const int shard_port = ContainerPort(W(kShards).container, "shard");
  const int coord_port = ContainerPort(W(kCoordinator).container, "coordinator");
  const int admin_port = ContainerPort(W(kShards).container, "admin");
  EXPECT_EQ(ports, (std::map<std::string, int>{
                       {"shard", shard_port}, {"coordinator", coord_port}, {"admin", admin_port}}));
  EXPECT_EQ(std::to_string(shard_port), Flag(kShards, "port"));
  EXPECT_EQ(std::to_string(coord_port), Flag(kCoordinator, "port"));

  // Selects the shards' and the coordinator's pods, not the workers' (who listen for no one).
  const json selector = Get(*service, "/spec/selector");
  ASSERT_TRUE(selector.is_object() && !selector.empty());
  for (const auto& [name, w] : workloads_) {
    bool selected = true;
    for (const auto& [key, value] : selector.items()) {
      selected &= Get(w.pod, "/metadata/labels").value(key, "") == value.get<std::string>();
    }
    EXPECT_EQ(selected, name != kWorkers) << name;
  }
  for (const char* set : {kShards, kCoordinator}) {
    EXPECT_EQ(Get(*W(set).object, "/spec/serviceName"), kService) << set;
  }
}

TEST_P(K8sManifestTest, ShardAndWorkerCountsAgreeEverywhere) {
  const int shards = GetParam().shards, workers = GetParam().workers;
  EXPECT_EQ(Get(*W(kShards).object, "/spec/replicas"), shards);
  EXPECT_EQ(Flag(kShards, "num_shards"), std::to_string(shards));
  EXPECT_EQ(Get(*W(kCoordinator).object, "/spec/replicas"), 1);

  // Every shard in shard order, by its name under the headless Service.
  std::string servers;
  for (int i = 0; i < shards; ++i) {
    servers += (i ? "," : "") + std::string(kShards) + "-" + std::to_string(i) + "." + kService +
               ":" + Flag(kShards, "port");
  }
  EXPECT_EQ(Flag(kCoordinator, "servers"), servers);
  EXPECT_EQ(Flag(kWorkers, "servers"), servers);
  EXPECT_EQ(Flag(kWorkers, "coordinator"),
            std::string(kCoordinator) + "-0." + kService + ":" + Flag(kCoordinator, "port"));

  const json& job = *W(kWorkers).object;
  EXPECT_EQ(Get(job, "/spec/completionMode"), "Indexed");
  EXPECT_EQ(Get(job, "/spec/completions"), workers);
  // The coordinator waits for every worker before the first pass.
  EXPECT_EQ(Get(job, "/spec/parallelism"), workers);
  EXPECT_EQ(Flag(kCoordinator, "num_workers"), std::to_string(workers));
  EXPECT_EQ(Flag(kWorkers, "num_workers"), std::to_string(workers));
}

TEST_P(K8sManifestTest, TheShardIdIsTheOrdinalAndTheWorkerIndexTheCompletionIndex) {
  // SetUp ran the scripts as the last shard's and the last worker's pods.
  EXPECT_EQ(Flag(kShards, "shard_id"), std::to_string(GetParam().shards - 1));
  EXPECT_EQ(Flag(kWorkers, "worker_index"), std::to_string(GetParam().workers - 1));
  EXPECT_EQ(W(kShards).argv[0], "pepnet_ps");
  EXPECT_EQ(W(kCoordinator).argv[0], "pepnet_coord");
  EXPECT_EQ(W(kWorkers).argv[0], "pepnet_worker");

  // Outside an Indexed Job a worker must not start as worker 0 of a run.
  const std::string script = Script(W(kWorkers).container);
  ASSERT_FALSE(script.empty());
  testing::TempDir dir;
  const Output o = Capture(
      {"/usr/bin/env", "-i", "PATH=" + StubDir() + ":/usr/bin:/bin", "/bin/sh", "-c", script}, dir);
  EXPECT_NE(o.code, 0) << o.out;
}

TEST_P(K8sManifestTest, ProbesAndScrapeAnnotationsUseTheAdminPort) {
  for (const auto& [name, w] : workloads_) {
    const int admin = ContainerPort(w.container, "admin");
    EXPECT_NE(admin, 0) << name << " has no port named admin";
    EXPECT_EQ(Flag(name, "admin_port"), std::to_string(admin)) << name;
    EXPECT_EQ(Get(w.container, "/readinessProbe/httpGet/path"), "/readyz") << name;
    EXPECT_EQ(ResolvePort(w.container, Get(w.container, "/readinessProbe/httpGet/port")), admin)
        << name;
    EXPECT_EQ(Get(w.container, "/livenessProbe/httpGet/path"), "/healthz") << name;
    EXPECT_EQ(ResolvePort(w.container, Get(w.container, "/livenessProbe/httpGet/port")), admin)
        << name;
    const json annotations = Get(w.pod, "/metadata/annotations");
    EXPECT_EQ(annotations.value("prometheus.io/scrape", ""), "true") << name;
    EXPECT_EQ(annotations.value("prometheus.io/port", ""), std::to_string(admin)) << name;
    EXPECT_EQ(annotations.value("prometheus.io/path", ""), "/metrics") << name;
  }
  // The kubelet and Prometheus come from outside the pod.
  EXPECT_FALSE(IsLoopback(Flag(kShards, "host")));
  EXPECT_FALSE(IsLoopback(Flag(kCoordinator, "host")));
  EXPECT_FALSE(IsLoopback(Flag(kWorkers, "admin_host")));
  for (const char* name : {kShards, kCoordinator}) {
    if (W(name).flags.count("admin_host")) {
      EXPECT_FALSE(IsLoopback(Flag(name, "admin_host")));
    }
  }
}

TEST_P(K8sManifestTest, DataDirsAreOnVolumeClaimsAndTheModelFolderIsShared) {
  for (const char* name : {kShards, kCoordinator}) {
    const json templates = Get(*W(name).object, "/spec/volumeClaimTemplates");
    ASSERT_EQ(templates.size(), 1u) << name;
    const std::string claim = Get(templates[0], "/metadata/name");
    EXPECT_EQ(Get(templates[0], "/spec/accessModes"), json::array({"ReadWriteOnce"})) << name;
    EXPECT_TRUE(Get(templates[0], "/spec/resources/requests/storage").is_string()) << name;
    const std::string data_dir = Flag(name, "data_dir");
    EXPECT_EQ(VolumeAt(W(name).container, data_dir), claim)
        << name << ": --data_dir=" << data_dir << " is not on its volume claim";
    // A data dir that is the mount itself would share it with the volume's lost+found.
    EXPECT_NE(data_dir, MountPath(W(name).container, claim)) << name;
  }
  EXPECT_EQ(VolumeAt(W(kCoordinator).container, Flag(kCoordinator, "metrics_out")),
            Get(*W(kCoordinator).object, "/spec/volumeClaimTemplates/0/metadata/name"));

  // The shards write their row files into the coordinator's version folders.
  const std::string publish = Flag(kCoordinator, "publish_dir");
  EXPECT_EQ(Flag(kShards, "export_dir"), publish);
  for (const char* name : {kShards, kCoordinator}) {
    const std::string volume = VolumeAt(W(name).container, publish);
    EXPECT_EQ(Get(Volume(W(name), volume), "/persistentVolumeClaim/claimName"), kModelVolume)
        << name << ": " << publish << " is not on the shared claim " << kModelVolume;
  }
  const std::string passes = VolumeAt(W(kWorkers).container, Flag(kWorkers, "pass_root"));
  EXPECT_EQ(Get(Volume(W(kWorkers), passes), "/persistentVolumeClaim/claimName"), kPassesVolume);
  EXPECT_TRUE(MountedReadOnly(W(kWorkers).container, passes));
}

TEST_P(K8sManifestTest, TheConfigMapHoldsTheModelConfigAndEveryFlagFile) {
  const json data = Get(*config_map_, "/data");
  // The demo's model, for the data pepnet_datagen writes: a copy, since kustomize reads no
  // file outside the kustomization.
  EXPECT_EQ(data.value("model.pbtxt", ""),
            testing::ReadFile(testing::SourceDir() + "/configs/demo.pbtxt"))
      << "deploy/k8s/base/model.pbtxt differs from configs/demo.pbtxt";
  std::set<std::string> keys;
  for (const auto& [key, value] : data.items()) keys.insert(key);
  EXPECT_EQ(keys, (std::set<std::string>{"model.pbtxt", "table.flags", "ps.flags", "coord.flags",
                                         "worker.flags", "num_shards.flags", "servers.flags",
                                         "num_workers.flags"}));
  for (const auto& [key, value] : data.items()) {
    if (key.size() > 6 && key.substr(key.size() - 6) == ".flags") {
      std::map<std::string, std::string> flags;
      ReadFlagFile(key, value.get<std::string>(), &flags);
      EXPECT_FALSE(flags.empty()) << key;
    }
  }
  // The model config every process reads is the ConfigMap's.
  for (const char* name : {kCoordinator, kWorkers}) {
    EXPECT_EQ(Flag(name, "config"), W(name).config_mount + "/model.pbtxt") << name;
  }
  const std::string setup = Script(Init(kShards, "setup"));
  EXPECT_NE(setup.find("--model_config=" + W(kShards).config_mount + "/model.pbtxt"),
            std::string::npos)
      << setup;
  EXPECT_NE(setup.find("--flagfile=" + W(kShards).config_mount + "/table.flags"), std::string::npos)
      << setup;
}

TEST_P(K8sManifestTest, EveryBinaryHasTheFlagsItNeeds) {
  const std::map<std::string, std::vector<std::string>> needed = {
      {kShards,
       {"host", "port", "admin_port", "secret_file", "table_config", "shard_id", "num_shards",
        "data_dir", "export_dir", "memory_limit_bytes"}},
      {kCoordinator,
       {"host", "port", "admin_port", "secret_file", "config", "servers", "num_workers", "data_dir",
        "publish_dir"}},
      {kWorkers,
       {"admin_host", "admin_port", "secret_file", "config", "servers", "coordinator",
        "worker_index", "num_workers", "pass_root"}}};
  for (const auto& [name, flags] : needed) {
    for (const std::string& flag : flags) {
      EXPECT_FALSE(Flag(name, flag).empty()) << name << " --" << flag;
    }
  }
  // Without a limit a shard takes half of the node's memory, not of its container's.
  const double limit =
      Quantity(Get(W(kShards).container, "/resources/limits/memory").get<std::string>());
  ASSERT_GT(limit, 0);
  EXPECT_LT(std::stod(Flag(kShards, "memory_limit_bytes")), limit);

  // The table config is made from the ConfigMap's model by the shard's init container, into
  // the folder the shard reads it from.
  const std::string table = Flag(kShards, "table_config");
  const std::string setup = Script(Init(kShards, "setup"));
  EXPECT_NE(setup.find("pepnet_ctl table_config"), std::string::npos) << setup;
  EXPECT_NE(setup.find("> " + table), std::string::npos) << setup;
}

TEST_P(K8sManifestTest, TheSecretIsACopyOnlyItsOwnerMayRead) {
  for (const auto& [name, w] : workloads_) {
    // Secret::Load refuses a file that group or others may read: a Secret volume is
    // group-readable under fsGroup (which the data volumes need), so the pod's init
    // container copies it, as the pod's user, into a memory-backed folder.
    const json init = Init(name, "setup");
    ASSERT_TRUE(init.is_object()) << name << " has no init container setup";
    const std::string secret_file = Flag(name, "secret_file");
    const std::string run = VolumeAt(w.container, secret_file);
    EXPECT_EQ(Get(Volume(w, run), "/emptyDir/medium"), "Memory") << name;
    EXPECT_EQ(VolumeAt(init, secret_file), run) << name;
    std::string secret_volume;
    for (const json& v : Get(w.pod, "/spec/volumes")) {
      if (v.contains("secret")) secret_volume = v.value("name", "");
    }
    const json volume = Volume(w, secret_volume);
    EXPECT_EQ(Get(volume, "/secret/secretName"), kSecret) << name;
    EXPECT_EQ(Get(volume, "/secret/defaultMode"), 0440) << name;
    EXPECT_TRUE(Get(w.pod, "/spec/securityContext/fsGroup").is_number()) << name;
    EXPECT_EQ(MountPath(w.container, secret_volume), "") << name << " mounts the Secret itself";
    const std::string copy =
        "install -m 0400 " + MountPath(init, secret_volume) + "/secret " + secret_file;
    EXPECT_NE(Script(init).find(copy), std::string::npos)
        << name << ": the init container does not run '" << copy << "':\n"
        << Script(init);
    EXPECT_TRUE(Get(init, "/securityContext/runAsUser").is_null())
        << name << ": the copy must be the main container's user's";
  }
  // Each process waits for its peers' names before it starts.
  EXPECT_NE(
      Script(Init(kCoordinator, "wait-for-shards"))
          .find("pepnet_ctl stats --flagfile=" + W(kCoordinator).config_mount + "/servers.flags"),
      std::string::npos);
  EXPECT_NE(Script(Init(kWorkers, "wait-for-coordinator"))
                .find(W(kWorkers).config_mount + "/worker.flags"),
            std::string::npos);
}

TEST_P(K8sManifestTest, EveryPodRunsAsNonRootFromOneImage) {
  std::set<std::string> images;
  for (const auto& [name, w] : workloads_) {
    const json pod_security = Get(w.pod, "/spec/securityContext");
    EXPECT_EQ(pod_security.value("runAsNonRoot", false), true) << name;
    EXPECT_GT(pod_security.value("runAsUser", 0), 0) << name;
    for (const char* list : {"/spec/initContainers", "/spec/containers"}) {
      for (const json& c : Get(w.pod, list)) {
        images.insert(c.value("image", ""));
        EXPECT_NE(Get(c, "/securityContext/runAsUser"), 0) << name << "/" << c.value("name", "");
        EXPECT_EQ(Get(c, "/securityContext/allowPrivilegeEscalation"), false)
            << name << "/" << c.value("name", "");
      }
    }
  }
  EXPECT_EQ(images.size(), 1u);
  // The coordinator and the workers handle no SIGTERM, which PID 1 would then ignore: tini
  // is PID 1 and passes it on.
  for (const auto& [name, w] : workloads_) {
    EXPECT_EQ(Command(w.container)[0], "/usr/bin/tini") << name;
  }
}

// gflags reads a misspelled flag in a flag file without a word: every flag must be one the
// binary of this build defines (its --helpxml), and the model config must load.
TEST_P(K8sManifestTest, EveryFlagIsOneTheBinaryDefines) {
  testing::TempDir dir;
  std::map<std::string, std::set<std::string>> defined;
  for (const char* binary : {"pepnet_ps", "pepnet_coord", "pepnet_worker", "pepnet_ctl"}) {
    const std::string path = testing::BinDir() + "/" + binary;
    ASSERT_EQ(access(path.c_str(), X_OK), 0)
        << path << " is missing: build the binaries first (deploy/build.sh release)";
    const Output o = Capture({path, "--helpxml"}, dir);
    ASSERT_NE(o.out.find("<AllFlags>"), std::string::npos) << binary << " --helpxml:\n" << o.err;
    const std::regex name("<name>([A-Za-z0-9_]+)</name>");
    for (std::sregex_iterator it(o.out.begin(), o.out.end(), name), end; it != end; ++it) {
      defined[binary].insert((*it)[1]);
    }
  }
  for (const auto& [name, w] : workloads_) {
    for (const auto& [flag, value] : w.flags) {
      EXPECT_EQ(defined[w.argv[0]].count(flag), 1u) << w.argv[0] << " has no flag --" << flag;
    }
    for (const json& init : Get(w.pod, "/spec/initContainers")) {
      const std::string script = Script(init);
      if (script.find("pepnet_ctl") == std::string::npos) continue;
      const std::regex flag("--([a-z_]+)=");
      for (std::sregex_iterator it(script.begin(), script.end(), flag), end; it != end; ++it) {
        EXPECT_EQ(defined["pepnet_ctl"].count((*it)[1]), 1u)
            << name << "/" << init.value("name", "") << ": pepnet_ctl has no flag --" << (*it)[1];
      }
    }
  }
  // What the shard's init container runs, on the ConfigMap's files.
  const json data = Get(*config_map_, "/data");
  testing::WriteFile(dir.File("model.pbtxt"), data.value("model.pbtxt", ""));
  testing::WriteFile(dir.File("table.flags"), data.value("table.flags", ""));
  const Output table = Capture(
      {testing::BinDir() + "/pepnet_ctl", "table_config", "--flagfile=" + dir.File("table.flags"),
       "--model_config=" + dir.File("model.pbtxt")},
      dir);
  EXPECT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("slot {"), std::string::npos) << table.out;
}

INSTANTIATE_TEST_SUITE_P(Deployments, K8sManifestTest,
                         ::testing::Values(Deployment{"deploy/k8s", 2, 2},
                                           Deployment{"deploy/k8s/overlays/scale", 4, 8}),
                         [](const ::testing::TestParamInfo<Deployment>& info) {
                           return info.param.shards == 2 ? std::string("Default")
                                                         : std::string("Scaled");
                         });

// The overlay changes the counts and nothing else: what the default deployment is checked
// for holds for it too.
TEST(K8sOverlayTest, TheScaleOverlayChangesOnlyTheCounts) {
  const Rendered& base = Render("deploy/k8s");
  const Rendered& scaled = Render("deploy/k8s/overlays/scale");
  ASSERT_TRUE(base.error.empty()) << base.error;
  ASSERT_TRUE(scaled.error.empty()) << scaled.error;
  auto normalize = [](const Rendered& r) {
    std::map<std::string, json> out;
    std::string config_name;
    for (const json& o : r.objects) {
      if (o.value("kind", "") == "ConfigMap") config_name = Get(o, "/metadata/name");
    }
    for (json o : r.objects) {
      const std::string kind = o.value("kind", "");
      if (kind == "ConfigMap") {
        o["metadata"].erase("name");
        for (const char* key : {"num_shards.flags", "servers.flags", "num_workers.flags"}) {
          o["data"].erase(key);
        }
      } else if (kind == "StatefulSet" && Get(o, "/metadata/name") == kShards) {
        o["spec"].erase("replicas");
      } else if (kind == "Job") {
        o["spec"].erase("completions");
        o["spec"].erase("parallelism");
      }
      // kustomize v2.0.3 gives a merged ConfigMap an empty label map.
      if (Get(o, "/metadata/labels") == json::object()) o["metadata"].erase("labels");
      // The ConfigMap's name carries a hash of its content.
      std::string text = o.dump();
      for (size_t at; !config_name.empty() && (at = text.find(config_name)) != std::string::npos;) {
        text.replace(at, config_name.size(), kConfigMap);
      }
      json j = json::parse(text);
      out[kind + "/" + j["metadata"].value("name", std::string(kConfigMap))] = j;
    }
    return out;
  };
  const std::map<std::string, json> a = normalize(base), b = normalize(scaled);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [key, object] : a) {
    ASSERT_EQ(b.count(key), 1u) << key;
    EXPECT_TRUE(object == b.at(key)) << key << " differs beyond the counts:\n"
                                     << json::diff(object, b.at(key)).dump(2);
  }
}

}  // namespace
}  // namespace pepnet
