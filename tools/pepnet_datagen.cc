// pepnet_datagen: writes passes of synthetic training data for configs/demo.pbtxt, with a
// planted structure PEPNet can exploit:
//   - users and items come with Zipf popularity; each user has a favourite topic, an
//     activity level and a domain where they are most active; items have a topic, a
//     quality and an author; authors have a following;
//   - likes depend on topic match (much more in the user's own domain), item quality and
//     the domain; forwards are rarer and need quality; follows are rarer still and depend
//     on the author and on the user;
//   - the history cell lists the user's recent items of their favourite topic.
// Deterministic from --seed. Layout: OUT/pass-00000/part-00000.csv ... and a _SUCCESS
// marker per pass, written last.
#include <gflags/gflags.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/hash.h"

DEFINE_string(out_dir, "", "Folder to write the pass folders into (created).");
DEFINE_int32(passes, 5, "Pass folders to write.");
DEFINE_int32(first_pass, 0, "Number of the first pass folder.");
DEFINE_int32(files_per_pass, 2, "Files per pass.");
DEFINE_int32(rows_per_file, 20000, "Samples per file.");
DEFINE_int32(users, 5000, "Distinct users.");
DEFINE_int32(items, 20000, "Distinct items.");
DEFINE_int32(authors, 2000, "Distinct authors.");
DEFINE_int32(topics, 12, "Distinct item topics.");
DEFINE_double(zipf, 1.1, "Zipf exponent of user and item popularity.");
DEFINE_uint64(seed, 1, "Seed; the same seed writes the same files.");
DEFINE_string(format, "demo",
              "demo: the planted data of configs/demo.pbtxt; bench: the columns of "
              "configs/bench.pbtxt with the PyTorch reference's distributions (Zipf 1.05 "
              "user/item/author IDs, uniform others, random labels), for throughput runs.");

namespace {

constexpr int kDomains = 3;

// Samples ranks with P(r) ~ (r+1)^-s.
class Zipf {
 public:
  Zipf(int n, double s) : cdf_(n) {
    double sum = 0;
    for (int r = 0; r < n; ++r) cdf_[r] = sum += std::pow(r + 1.0, -s);
    for (double& c : cdf_) c /= sum;
  }
  int operator()(std::mt19937_64* rng) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(*rng);
    size_t lo = 0, hi = cdf_.size() - 1;
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (cdf_[mid] < u) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return static_cast<int>(lo);
  }

 private:
  std::vector<double> cdf_;
};

// A fixed attribute of an entity in [0, 1), from (seed, kind, id).
double Attribute(uint64_t kind, uint64_t id) {
  return (pepnet::Mix64(FLAGS_seed * 0x9e3779b97f4a7c15ULL ^ (kind << 48) ^ id) >> 11) * 0x1.0p-53;
}

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

bool WriteFile(const std::string& path, const std::string& text) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) return false;
  const bool ok = fwrite(text.data(), 1, text.size(), f) == text.size();
  return fclose(f) == 0 && ok;
}

int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_datagen: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("pepnet_datagen --out_dir=DIR [--passes=5 --rows_per_file=N]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_out_dir.empty()) return Fail("--out_dir is required");
  if (FLAGS_passes < 1 || FLAGS_files_per_pass < 1 || FLAGS_rows_per_file < 1 || FLAGS_users < 1 ||
      FLAGS_items < FLAGS_topics || FLAGS_authors < 1 || FLAGS_topics < 1) {
    return Fail("sizes must be positive and --items >= --topics");
  }
  // Like mkdir -p: every missing parent of --out_dir too.
  for (size_t slash = FLAGS_out_dir.find('/', 1); slash != std::string::npos;
       slash = FLAGS_out_dir.find('/', slash + 1)) {
    mkdir(FLAGS_out_dir.substr(0, slash).c_str(), 0755);
  }
  mkdir(FLAGS_out_dir.c_str(), 0755);
  const Zipf user_rank(FLAGS_users, FLAGS_zipf), item_rank(FLAGS_items, FLAGS_zipf);
  // Attribute kinds.
  enum : uint64_t {
    kUserTopic,
    kUserDomain,
    kUserActivity,
    kUserAge,
    kItemQuality,
    kItemAuthor,
    kAuthorFollowing,
    kUserFollowy,
    kRankToId
  };
  auto item_topic = [](int item) { return item % FLAGS_topics; };
  auto user_topic = [](int user) {
    return static_cast<int>(Attribute(kUserTopic, user) * FLAGS_topics);
  };
  if (FLAGS_format != "demo" && FLAGS_format != "bench") return Fail("--format: demo or bench");
  const Zipf bench_user(100000, 1.05), bench_item(200000, 1.05), bench_author(20000, 1.05);
  for (int p = 0; p < FLAGS_passes; ++p) {
    const int pass = FLAGS_first_pass + p;
    char name[64];
    snprintf(name, sizeof(name), "/pass-%05d", pass);
    const std::string dir = FLAGS_out_dir + name;
    mkdir(dir.c_str(), 0755);
    for (int f = 0; f < FLAGS_files_per_pass; ++f) {
      std::mt19937_64 rng(pepnet::Mix64(FLAGS_seed ^ (uint64_t(pass) << 32) ^ f));
      std::uniform_real_distribution<double> uniform(0, 1);
      std::string text;
      if (FLAGS_format == "bench") {
        text = "domain_id,user_id,item_id,author_id";
        for (int k = 0; k < 20; ++k) text += ",other_" + std::to_string(k);
        text += ",like,follow,forward\n";
        for (int r = 0; r < FLAGS_rows_per_file; ++r) {
          text += std::to_string(static_cast<int>(uniform(rng) * kDomains));
          text += "," + std::to_string(pepnet::Mix64(1 ^ bench_user(&rng)) % 100000);
          text += "," + std::to_string(pepnet::Mix64(2 ^ bench_item(&rng)) % 200000);
          text += "," + std::to_string(pepnet::Mix64(3 ^ bench_author(&rng)) % 20000);
          for (int k = 0; k < 20; ++k)
            text += "," + std::to_string(static_cast<int>(uniform(rng) * 1000));
          for (double rate : {0.3, 0.05, 0.1}) text += uniform(rng) < rate ? ",1" : ",0";
          text += "\n";
        }
      } else {
        text = "domain,user,item,author,history,topic,hour,age,like,forward,follow\n";
      }
      for (int r = 0; FLAGS_format == "demo" && r < FLAGS_rows_per_file; ++r) {
        // Popular ranks scattered over the IDs.
        const int user = static_cast<int>(pepnet::Mix64(kRankToId ^ user_rank(&rng)) % FLAGS_users);
        const int item =
            static_cast<int>(pepnet::Mix64(~kRankToId ^ item_rank(&rng)) % FLAGS_items);
        const int home = static_cast<int>(Attribute(kUserDomain, user) * kDomains);
        const int domain = uniform(rng) < 0.6 ? home : static_cast<int>(uniform(rng) * kDomains);
        const int author = static_cast<int>(Attribute(kItemAuthor, item) * FLAGS_authors);
        const int topic = item_topic(item);
        const bool match = topic == user_topic(user);
        const double quality = Attribute(kItemQuality, item) * 2 - 1;
        const double activity = Attribute(kUserActivity, user) * 2 - 1;
        const int hour = static_cast<int>(uniform(rng) * 24);
        const int age = 16 + static_cast<int>(Attribute(kUserAge, user) * 50);
        // The topic match counts most on the user's home page; pages differ in base rate.
        const double domain_bias[kDomains] = {0.0, -0.8, -1.6};
        const double like_logit = -1.2 + domain_bias[domain] +
                                  (match ? (domain == home ? 3.0 : 1.2) : 0) + 1.5 * quality +
                                  0.5 * activity + (hour >= 18 ? 0.3 : 0);
        const bool like = uniform(rng) < Sigmoid(like_logit);
        const double forward_logit =
            -4.5 + 2.5 * quality + (like ? 2.0 : 0) + (domain == 0 ? 0.5 : 0);
        const bool forward = uniform(rng) < Sigmoid(forward_logit);
        const double follow_logit = -8.5 + 4.0 * Attribute(kAuthorFollowing, author) +
                                    3.0 * Attribute(kUserFollowy, user) + (like ? 1.5 : 0);
        const bool follow = uniform(rng) < Sigmoid(follow_logit);
        std::string history;
        const int favourite = user_topic(user);
        for (int h = 0; h < 4; ++h) {
          const int slot_in_topic =
              static_cast<int>(pepnet::Mix64(uint64_t(user) * 31 + h + uint64_t(pass / 2) * 7) %
                               (FLAGS_items / FLAGS_topics));
          if (h) history += '|';
          history += "i" + std::to_string(slot_in_topic * FLAGS_topics + favourite);
        }
        text += std::to_string(domain) + ",u" + std::to_string(user) + ",i" + std::to_string(item) +
                ",a" + std::to_string(author) + "," + history + ",t" + std::to_string(topic) + "," +
                std::to_string(hour) + "," + std::to_string(age) + "," + (like ? "1" : "0") + "," +
                (forward ? "1" : "0") + "," + (follow ? "1" : "0") + "\n";
      }
      char file[64];
      snprintf(file, sizeof(file), "/part-%05d.csv", f);
      if (!WriteFile(dir + file, text)) return Fail("cannot write " + dir + file);
    }
    if (!WriteFile(dir + "/_SUCCESS", "")) return Fail("cannot write " + dir + "/_SUCCESS");
    printf("%s: %d files, %d samples\n", dir.c_str(), FLAGS_files_per_pass,
           FLAGS_files_per_pass * FLAGS_rows_per_file);
  }
  return 0;
}
