// pepnet_train: trains PEPNet on data files, in process (--local) or against shard
// servers (--servers), printing per-pass metrics and writing them as JSON lines.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include "common/progress_line.h"
#include "common/ps_client.h"
#include "common/tls_flags.h"
#include "proto/model_config.pb.h"
#include "worker/batch_prefetcher.h"
#include "worker/data_reader.h"
#include "worker/model_config.h"
#include "worker/trainer.h"

DEFINE_string(config, "", "Model config (protobuf text format).");
DEFINE_string(data, "", "Data files, comma-separated, read in order.");
DEFINE_bool(local, false, "Keep the embedding table in this process.");
DEFINE_string(servers, "", "Shard servers host:port,... (without --local).");
DEFINE_string(secret_file, "",
              "The cluster's shared secret, a file only its owner may read (docs/security.md); "
              "empty = none.");
DEFINE_int32(passes, 1, "How many times the data is streamed.");
DEFINE_uint64(seed, 1, "Seed of the dense initialization and of local embedding rows.");
DEFINE_int32(threads, 2, "Threads of the training step (the batch's rows are split over them).");
DEFINE_string(metrics_out, "", "Append one JSON line of metrics per pass to this file.");
DEFINE_double(progress_interval_s, -1,
              "Seconds between progress lines on stderr; -1: 2 on a terminal (one line "
              "redrawn), 30 otherwise; 0: none.");

namespace {

int Fail(const std::string& message) {
  fprintf(stderr, "pepnet_train: %s\n", message.c_str());
  return 1;
}

std::vector<std::string> Split(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("pepnet_train --config=FILE --data=F1,F2 (--local | --servers=h:p,..)");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_log_dir.empty()) FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  pepnet::KeepLargeAllocationsInHeap();
  if (FLAGS_config.empty()) return Fail("--config is required");
  const std::vector<std::string> files = Split(FLAGS_data);
  if (files.empty()) return Fail("--data is required");
  if (FLAGS_local == !FLAGS_servers.empty())
    return Fail("give exactly one of --local and --servers");
  if (FLAGS_passes < 1) return Fail("--passes must be >= 1");
  if (FLAGS_threads < 1 || FLAGS_threads > 256) return Fail("--threads must be in [1, 256]");

  pepnet::proto::ModelConfig config;
  pepnet::Status st = pepnet::LoadModelConfigFile(FLAGS_config, &config);
  if (!st.ok()) return Fail(st.ToString());

  std::unique_ptr<pepnet::PsClient> client;
  std::unique_ptr<pepnet::EmbeddingStore> store;
  if (FLAGS_local) {
    st = pepnet::MakeLocalStore(config, FLAGS_seed, &store);
  } else {
    pepnet::ClientOptions options;
    options.role = pepnet::PeerRole::kWorker;
    st = pepnet::LoadSecretAndTls(FLAGS_secret_file, &options.secret);
    if (st.ok()) st = pepnet::ParseServerList(FLAGS_servers, &options.servers);
    if (st.ok()) st = pepnet::PsClient::Connect(options, &client);
    if (st.ok()) store = pepnet::MakeRemoteStore(client.get());
  }
  if (!st.ok()) return Fail(st.ToString());

  pepnet::Trainer trainer(config, store.get(), FLAGS_seed, FLAGS_threads);
  std::vector<std::string> task_names;
  for (const auto& t : config.task()) task_names.push_back(t.name());
  pepnet::ProgressLine progress(stderr, FLAGS_progress_interval_s);
  uint64_t pass_samples = 0;  // every pass streams the same files: known after the first
  for (int pass = 0; pass < FLAGS_passes; ++pass) {
    pepnet::PassMetrics metrics(task_names, config.num_domains());
    pepnet::DataReader reader(&config, files);
    progress.BeginPass(pass, FLAGS_data, pass_samples, /*exact=*/true);
    uint64_t samples = 0;
    {
      // Parsing runs ahead on its own thread.
      pepnet::BatchPrefetcher prefetcher(&reader, config.batch_size());
      pepnet::Batch batch;
      bool done = false;
      while (!done) {
        st = prefetcher.Next(&batch, &done);
        if (st.ok()) st = trainer.TrainBatch(batch, &metrics);
        if (!st.ok()) {
          progress.Clear();
          return Fail("pass " + std::to_string(pass) + ": " + st.ToString());
        }
        samples += batch.size;
        progress.Update(samples, metrics.running_loss());
      }
    }
    pass_samples = samples;
    progress.Clear();
    printf("%s", metrics.ToText(pass).c_str());
    if (reader.stats().malformed > 0) {
      printf("pass %d: %llu malformed lines skipped (first: %s)\n", pass,
             static_cast<unsigned long long>(reader.stats().malformed),
             reader.stats().first_error.c_str());
    }
    fflush(stdout);
    if (!FLAGS_metrics_out.empty()) {
      std::ofstream(FLAGS_metrics_out, std::ios::app) << metrics.ToJson(pass) << "\n";
    }
  }
  return 0;
}
