// The admin HTTP endpoints of every long-running process (pepnet_ps, pepnet_coord,
// pepnet_worker; docs/operations.md, "Admin HTTP"), on --admin_port of the process's own
// host:
//
//   /healthz  200 "ok" while the process runs
//   /readyz   200 "ready", or 503 with the reason (the process's own check)
//   /statusz  a small HTML page: role, version, uptime, what the process reports (its
//             pass, its shard), and its flags
//   /metrics  the process's stats registry in Prometheus text format 0.0.4
//
// --admin_port=0 (the default) takes a free port, logged and written to
// --admin_port_file; -1 serves none. The endpoints only read, so they ask no proof of the
// secret; like every listener they stay on loopback unless the process has one.
// Hooks run on the admin server's thread, concurrently with the process: thread-safe.
#ifndef PEPNET_COMMON_ADMIN_H_
#define PEPNET_COMMON_ADMIN_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/http_server.h"
#include "common/process_status.h"
#include "common/status.h"

namespace pepnet {

class Secret;
class StatSet;

struct AdminHooks {
  std::string role;               // e.g. "shard 0/2", "coordinator", "worker 1/4"
  std::function<Status()> ready;  // OK: ready; otherwise why not (null: always ready)
  // Rows of /statusz's "Now" table (null: none).
  std::function<std::vector<std::pair<std::string, std::string>>()> status;
  // /metrics in Prometheus text format: the process's figures (null: only the build info
  // and the uptime every process has).
  std::function<void(StatSet*)> metrics;
  std::map<std::string, HttpHandler> more;  // further paths
};

// Hooks that read `status` (borrowed; it must outlive the endpoints).
AdminHooks HooksFor(std::string role, const ProcessStatus* status);

// Installs /healthz, /readyz, /statusz, /metrics and hooks.more on `server` (before its
// Start): for a process whose own port serves them (pepnet_serve).
void AddAdminHandlers(const std::string& program, AdminHooks hooks, HttpServer* server);

class AdminEndpoints {
 public:
  // Serves the endpoints on --admin_host (empty: `process_host`) as --admin_port and
  // --admin_port_file say; *out stays null with --admin_port=-1. Errors name the flag (a
  // port in use: Unavailable; a non-loopback host without `secret`: InvalidArgument).
  static Status StartFromFlags(const std::string& program, const std::string& process_host,
                               const Secret& secret, AdminHooks hooks,
                               std::unique_ptr<AdminEndpoints>* out);
  ~AdminEndpoints();
  uint16_t port() const { return server_->port(); }
  // Logs where the endpoints are. Separate from the start, so that a process that refuses
  // to start after its admin port opened still says only why, in one line.
  void LogAddress() const;

 private:
  AdminEndpoints() = default;
  std::unique_ptr<HttpServer> server_;
  std::string where_, host_;
  bool more_ = false;
};

// The project's version, as /statusz shows it.
const char* PepnetVersion();

}  // namespace pepnet

#endif  // PEPNET_COMMON_ADMIN_H_
