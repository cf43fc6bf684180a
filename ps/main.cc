// pepnet_ps: one shard server of the Global Shared Embedding Table.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include "common/admin.h"
#include "common/auth.h"
#include "common/env.h"
#include "common/tls_flags.h"
#include "proto/ps.pb.h"
#include "ps/embedding_table.h"
#include "ps/request_handler.h"
#include "ps/server.h"
#include "ps/shard_store.h"
#include "ps/table_config.h"

DEFINE_string(host, "127.0.0.1",
              "Address to listen on. Anything but loopback needs --secret_file.");
DEFINE_string(secret_file, "",
              "The cluster's shared secret (a file only its owner may read): every peer must "
              "prove it holds it before its first request (docs/security.md). Without it the "
              "shard serves loopback only.");
DEFINE_string(export_dir, "",
              "EXPORT_ROWS writes row files only inside this folder (the coordinator's "
              "--publish_dir, on a shared filesystem); empty = exports are refused.");
DEFINE_int32(port, 0, "TCP port; 0 picks a free one (see --port_file).");
DEFINE_string(port_file, "", "If set, the listening port is written here once serving.");
DEFINE_int32(shard_id, 0, "This server's shard, in [0, num_shards).");
DEFINE_int32(num_shards, 1, "Number of shard servers in the cluster.");
DEFINE_int32(threads, 2, "Network/handler threads (one io_context each).");
DEFINE_string(table_config, "", "Table config in protobuf text format (required).");
DEFINE_uint64(max_frame_bytes, 256ull << 20, "Largest accepted request frame.");
DEFINE_int32(max_connections, 1024,
             "Authenticated connections beyond this are refused; the last "
             "--reserved_tool_connections of them only take tools (pepnet_ctl).");
DEFINE_int32(reserved_tool_connections, 8, "Connections kept for operators' tools.");
DEFINE_int32(max_connections_per_peer, 256,
             "Authenticated worker and coordinator connections from one IP address (tools are "
             "held to --max_connections only).");
DEFINE_int32(max_pending_handshakes, 64,
             "Connections still in their handshake; a new one beyond this closes the oldest.");
DEFINE_uint64(buffer_budget_bytes, 1ull << 30,
              "Request and reply buffers of all connections together; a frame that does not "
              "fit is refused.");
DEFINE_int32(handshake_timeout_ms, 10000, "A peer must finish its handshake within this.");
DEFINE_int32(frame_timeout_ms, 30000, "The rest of a frame must arrive within this of its start.");
DEFINE_int32(write_timeout_ms, 30000, "A reply must be taken by the client within this.");
DEFINE_int32(idle_timeout_ms, 300000, "A connection silent this long between requests closes.");
DEFINE_double(max_abs_gradient, 1e6,
              "A push with a gradient beyond this magnitude, or not finite, is refused.");
DEFINE_int32(dense_sum_timeout_ms, 60000,
             "A dense step still missing a worker's gradient slice this long after its first "
             "slice arrived fails for every worker of the step, naming the missing ones.");
DEFINE_int32(shutdown_grace_ms, 5000, "Time requests in progress get to finish on shutdown.");
DEFINE_uint64(memory_limit_bytes, 0,
              "Hard limit on the bytes the table owns, rows created by pulls included: past "
              "the high watermark the lowest-score rows are evicted down to the low "
              "watermark. Not given: half the host's physical memory; 0 = no limit.");
DEFINE_double(memory_high_watermark, 0.99, "Eviction starts at this fraction of the limit.");
DEFINE_double(memory_low_watermark, 0.95, "Eviction stops at this fraction of the limit.");
DEFINE_string(data_dir, "",
              "Keep the shard's state in a RocksDB database here (created if absent): every "
              "committed pass survives a restart, which loads it. Empty = memory only.");
DEFINE_uint64(hash_salt, 0,
              "The table's hash salt (0 = random). Only for reproducible runs: a peer that "
              "knows it can choose keys that collide. A data dir keeps its own.");
DEFINE_string(crash_at, "",
              "For tests: stop the process (SIGKILL) at the named step of a durable "
              "operation, NAME or NAME:COUNT (docs/architecture.md, \"Crash points\").");

namespace {

uint64_t HalfOfPhysicalMemory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * page / 2 : 0;
}

[[noreturn]] void Die(const std::string& message) {
  fprintf(stderr, "pepnet_ps: %s\n", message.c_str());
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("pepnet_ps --table_config=FILE [--port=N --shard_id=I --num_shards=N]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (FLAGS_log_dir.empty()) FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);

  if (argc > 1) Die(std::string("unexpected argument '") + argv[1] + "'");
  if (FLAGS_num_shards < 1) Die("--num_shards must be >= 1");
  if (FLAGS_shard_id < 0 || FLAGS_shard_id >= FLAGS_num_shards) {
    Die("--shard_id=" + std::to_string(FLAGS_shard_id) +
        " must be in [0, --num_shards=" + std::to_string(FLAGS_num_shards) + ")");
  }
  if (FLAGS_port < 0 || FLAGS_port > 65535) Die("--port must be in [0, 65535]");
  if (FLAGS_threads < 1 || FLAGS_threads > 256) Die("--threads must be in [1, 256]");
  if (FLAGS_max_frame_bytes < (64u << 10) || FLAGS_max_frame_bytes > 0xFFFFFFFFull) {
    Die("--max_frame_bytes must be in [65536, 4294967295]");
  }
  if (FLAGS_max_connections < 1) Die("--max_connections must be >= 1");
  if (FLAGS_reserved_tool_connections < 0 ||
      FLAGS_reserved_tool_connections >= FLAGS_max_connections) {
    Die("--reserved_tool_connections must be in [0, --max_connections)");
  }
  if (FLAGS_max_connections_per_peer < 1) Die("--max_connections_per_peer must be >= 1");
  if (FLAGS_max_pending_handshakes < 1) Die("--max_pending_handshakes must be >= 1");
  // Frames over 1 MiB may fill only three quarters of the budget (ps/connection.h).
  if (FLAGS_buffer_budget_bytes / 4 * 3 < FLAGS_max_frame_bytes) {
    Die("--buffer_budget_bytes must be at least 4/3 of --max_frame_bytes (big frames may use "
        "three quarters of it)");
  }
  for (const auto& [name, value] :
       {std::pair<const char*, int>{"handshake_timeout_ms", FLAGS_handshake_timeout_ms},
        {"frame_timeout_ms", FLAGS_frame_timeout_ms},
        {"write_timeout_ms", FLAGS_write_timeout_ms},
        {"idle_timeout_ms", FLAGS_idle_timeout_ms},
        {"dense_sum_timeout_ms", FLAGS_dense_sum_timeout_ms}}) {
    if (value < 1) Die(std::string("--") + name + " must be >= 1");
  }
  if (!(FLAGS_max_abs_gradient > 0) || !std::isfinite(FLAGS_max_abs_gradient)) {
    Die("--max_abs_gradient must be a positive finite number");
  }
  pepnet::Secret secret;
  pepnet::Status secret_status = pepnet::LoadSecretAndTls(FLAGS_secret_file, &secret);
  if (!secret_status.ok()) Die(secret_status.message());
  secret_status = pepnet::CheckListenSecurity(FLAGS_host, secret, "--host");
  if (!secret_status.ok()) Die(secret_status.message());
  if (FLAGS_table_config.empty()) Die("--table_config is required");

  pepnet::TableOptions table_options;
  pepnet::Status st = pepnet::LoadTableConfigFile(FLAGS_table_config, &table_options);
  if (!st.ok()) Die(st.ToString());
  table_options.memory_limit_bytes = FLAGS_memory_limit_bytes;
  if (gflags::GetCommandLineFlagInfoOrDie("memory_limit_bytes").is_default) {
    table_options.memory_limit_bytes = HalfOfPhysicalMemory();
  }
  table_options.memory_high_watermark = FLAGS_memory_high_watermark;
  table_options.memory_low_watermark = FLAGS_memory_low_watermark;
  table_options.durable = !FLAGS_data_dir.empty();
  pepnet::Env* env = pepnet::Env::Default();
  std::unique_ptr<pepnet::Env> crash_env;
  if (!FLAGS_crash_at.empty()) {
    crash_env = pepnet::NewCrashAtEnv(env, FLAGS_crash_at, &st);
    if (!crash_env) Die(st.ToString());
    env = crash_env.get();
  }
  // The admin endpoints answer from the start: /healthz while a big table loads, /readyz
  // once the shard serves.
  enum Phase { kLoading, kServing, kStopping };
  std::atomic<int> phase{kLoading};
  pepnet::AdminHooks admin_hooks;
  admin_hooks.role =
      "shard " + std::to_string(FLAGS_shard_id) + "/" + std::to_string(FLAGS_num_shards);
  admin_hooks.ready = [&phase] {
    switch (phase.load()) {
      case kServing:
        return pepnet::Status::OK();
      case kLoading:
        return pepnet::Status::Unavailable("the table is loading; the shard does not serve yet");
      default:
        return pepnet::Status::Unavailable("the shard is stopping");
    }
  };
  std::unique_ptr<pepnet::AdminEndpoints> admin;
  std::unique_ptr<pepnet::EmbeddingTable> table;
  std::unique_ptr<pepnet::ShardStore> store;
  // Cheap reads only: an admin request must never wait on the table's locks.
  admin_hooks.status = [&phase, &table] {
    std::vector<std::pair<std::string, std::string>> rows;
    // Read once serving began: `table` is set before, and never reset while admin runs.
    if (phase.load() != kLoading) rows.push_back({"pass", std::to_string(table->pass())});
    return rows;
  };
  // Set once the shard serves; /metrics has only the process's figures before.
  std::atomic<const pepnet::RequestHandler*> serving_handler{nullptr};
  admin_hooks.metrics = [&serving_handler](pepnet::StatSet* out) {
    if (const pepnet::RequestHandler* h = serving_handler.load()) h->CollectStats(out);
  };
  st = pepnet::AdminEndpoints::StartFromFlags("pepnet_ps", FLAGS_host, secret, admin_hooks, &admin);
  if (!st.ok()) Die(st.message());
  if (FLAGS_data_dir.empty()) {
    st = pepnet::EmbeddingTable::Create(table_options, &table, FLAGS_hash_salt);
  } else {
    // The table is loaded before the port opens: a shard that answers holds its state.
    pepnet::ShardStoreOptions store_options;
    store_options.dir = FLAGS_data_dir;
    store_options.shard_id = static_cast<uint32_t>(FLAGS_shard_id);
    store_options.num_shards = static_cast<uint32_t>(FLAGS_num_shards);
    store_options.new_hash_salt = FLAGS_hash_salt;
    store_options.env = env;
    st = pepnet::ShardStore::Open(store_options, table_options, &store, &table);
  }
  if (!st.ok()) Die(st.ToString());
  if (store) {
    pepnet::proto::StorageStats s;
    store->Stats(&s);
    LOG(INFO) << "pepnet_ps shard " << FLAGS_shard_id << ": committed pass " << s.committed_pass()
              << (s.prepared_pass() ? ", pass " + std::to_string(s.prepared_pass()) + " prepared"
                                    : std::string())
              << "; " << s.rows_loaded() << " rows loaded from " << FLAGS_data_dir << " in "
              << s.load_seconds() << " s";
  }

  pepnet::HandlerOptions handler_options;
  handler_options.shard_id = static_cast<uint32_t>(FLAGS_shard_id);
  handler_options.num_shards = static_cast<uint32_t>(FLAGS_num_shards);
  handler_options.max_reply_bytes = FLAGS_max_frame_bytes;
  handler_options.export_dir = FLAGS_export_dir;
  handler_options.max_abs_gradient = static_cast<float>(FLAGS_max_abs_gradient);
  handler_options.dense_sum_timeout_ms = FLAGS_dense_sum_timeout_ms;
  pepnet::RequestHandler handler(table.get(), store.get(), env, handler_options);
  pepnet::ServerOptions options;
  options.host = FLAGS_host;
  options.secret = &secret;
  options.reserved_for_tools = static_cast<size_t>(FLAGS_reserved_tool_connections);
  options.max_connections_per_peer = static_cast<size_t>(FLAGS_max_connections_per_peer);
  options.max_pending = static_cast<size_t>(FLAGS_max_pending_handshakes);
  options.buffer_budget_bytes = FLAGS_buffer_budget_bytes;
  options.handshake_timeout_ms = FLAGS_handshake_timeout_ms;
  options.frame_timeout_ms = FLAGS_frame_timeout_ms;
  options.write_timeout_ms = FLAGS_write_timeout_ms;
  options.idle_timeout_ms = FLAGS_idle_timeout_ms;
  options.port = static_cast<uint16_t>(FLAGS_port);
  options.threads = FLAGS_threads;
  options.max_frame_bytes = FLAGS_max_frame_bytes;
  options.shutdown_grace_ms = FLAGS_shutdown_grace_ms;
  options.max_connections = static_cast<size_t>(FLAGS_max_connections);
  options.on_stopping = [&phase] { phase = kStopping; };
  pepnet::Server server(options, &handler);
  std::atomic<bool> fatal{false};
  handler.set_on_fatal([&](const pepnet::Status&) {
    fatal = true;
    server.Stop();
  });
  st = server.Start();
  if (!st.ok()) Die(st.ToString());
  serving_handler = &handler;
  phase = kServing;

  if (!FLAGS_port_file.empty()) {
    // Written whole under a temporary name, so readers never see a partial number.
    st = pepnet::WriteFileDurably(pepnet::Env::Default(), FLAGS_port_file,
                                  std::to_string(server.port()) + "\n");
    if (!st.ok()) Die("--port_file: " + st.ToString());
  }
  LOG(INFO) << "pepnet_ps shard " << FLAGS_shard_id << "/" << FLAGS_num_shards << " serving on "
            << FLAGS_host << ":" << server.port() << " with " << FLAGS_threads << " threads, "
            << table_options.slots.size() << " slots"
            << (table_options.memory_limit_bytes
                    ? ", memory limit " + std::to_string(table_options.memory_limit_bytes) +
                          " bytes"
                    : std::string(", no memory limit"))
            << (secret.empty() ? ", no secret"
                : secret.tls() ? ", peers authenticated, TLS"
                               : ", peers authenticated");
  if (admin) admin->LogAddress();
  if (secret.empty()) {
    LOG(WARNING) << "no --secret_file: serving loopback only, and any local process may talk to "
                    "this shard";
  }
  server.Run(/*handle_signals=*/true);
  phase = kStopping;
  admin.reset();  // its hooks read the table and the handler
  LOG(INFO) << "pepnet_ps shard " << FLAGS_shard_id << " stopped";
  return fatal ? 1 : 0;
}
