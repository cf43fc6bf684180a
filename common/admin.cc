#include "common/admin.h"

#include <gflags/gflags.h>
#include <glog/logging.h>

#include <chrono>
#include <cstdio>

#include "common/auth.h"
#include "common/env.h"
#include "common/prometheus.h"
#include "common/stats.h"

DEFINE_int32(admin_port, 0,
             "Admin HTTP port (/healthz, /readyz, /statusz; docs/operations.md) on --host; 0 "
             "picks a free one (logged, see --admin_port_file); -1 serves none.");
DEFINE_string(admin_port_file, "", "If set, the admin port is written here once serving.");
DEFINE_string(admin_host, "",
              "Address of the admin port; empty: the process's --host (127.0.0.1 for a "
              "worker, which listens nowhere else). Anything but loopback needs --secret_file.");
DEFINE_int32(admin_timeout_ms, 10000,
             "An admin HTTP request must arrive whole, and its reply be written, within this "
             "long.");

#ifndef PEPNET_VERSION
#define PEPNET_VERSION "unknown"
#endif

namespace pepnet {
namespace {

std::string FormatUptime(double seconds) {
  char buf[64];
  const long s = static_cast<long>(seconds);
  snprintf(buf, sizeof(buf), "%ldd %02ld:%02ld:%02ld (%.0f s)", s / 86400, s / 3600 % 24,
           s / 60 % 60, s % 60, seconds);
  return buf;
}

// Flags whose value must not be shown to whoever can reach the admin port: the hash salt
// lets a peer choose colliding keys.
bool Hidden(const std::string& name) { return name == "hash_salt"; }

// The flags this project defines (not glog's or gflags' own), with their values.
std::string FlagRows() {
  std::vector<gflags::CommandLineFlagInfo> flags;
  gflags::GetAllFlags(&flags);
  std::string rows;
  for (const auto& f : flags) {
    bool ours = false;
    for (const char* dir : {"ps/", "coord/", "worker/", "common/", "tools/", "bench/", "serve/"}) {
      ours |= f.filename.find(dir) != std::string::npos;
    }
    if (!ours) continue;
    const std::string value = Hidden(f.name) ? "(hidden)" : f.current_value;
    rows += "<tr><td>--" + HtmlEscape(f.name) + "</td><td>" + HtmlEscape(value) + "</td><td>" +
            (f.is_default ? "default" : "set") + "</td></tr>\n";
  }
  return rows;
}

}  // namespace

const char* PepnetVersion() { return PEPNET_VERSION; }

AdminHooks HooksFor(std::string role, const ProcessStatus* status) {
  AdminHooks hooks;
  hooks.role = std::move(role);
  hooks.ready = [status] { return status->Ready(); };
  hooks.status = [status] { return status->Rows(); };
  hooks.metrics = [status](StatSet* out) {
    const StatSet mine = status->Stats();
    out->mutable_stats()->insert(out->mutable_stats()->end(), mine.stats().begin(),
                                 mine.stats().end());
  };
  return hooks;
}

void AdminEndpoints::LogAddress() const {
  LOG(INFO) << where_ << ": admin HTTP on http://" << host_ << ":" << server_->port()
            << "/ (/healthz, /readyz, /statusz, /metrics" << (more_ ? ", more" : "") << ")";
}

AdminEndpoints::~AdminEndpoints() {
  if (server_) server_->Stop();
}

void AddAdminHandlers(const std::string& program, AdminHooks hooks, HttpServer* server) {
  const auto start = std::chrono::steady_clock::now();
  server->Handle("/healthz", [](const HttpRequest&) {
    return HttpResponse{200, "text/plain", "ok\n"};
  });
  auto ready = hooks.ready;
  server->Handle("/readyz", [ready](const HttpRequest&) {
    const Status st = ready ? ready() : Status::OK();
    if (st.ok()) return HttpResponse{200, "text/plain", "ready\n"};
    return HttpResponse{503, "text/plain", "not ready: " + st.message() + "\n"};
  });
  const std::string role = hooks.role;
  auto status = hooks.status;
  server->Handle("/statusz", [program, role, status, ready, start](const HttpRequest&) {
    const double uptime =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const Status st = ready ? ready() : Status::OK();
    std::string now = "<tr><td>ready</td><td>" +
                      HtmlEscape(st.ok() ? "yes" : "no: " + st.message()) + "</td></tr>\n";
    if (status) {
      for (const auto& [key, value] : status()) {
        now += "<tr><td>" + HtmlEscape(key) + "</td><td>" + HtmlEscape(value) + "</td></tr>\n";
      }
    }
    std::string page =
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + HtmlEscape(program) + " " +
        HtmlEscape(role) +
        "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td{border:1px solid #ccc;padding:2px 8px}</style></head><body>\n<h1>" +
        HtmlEscape(program) + " &mdash; " + HtmlEscape(role) + "</h1>\n<table>\n" +
        "<tr><td>role</td><td>" + HtmlEscape(role) + "</td></tr>\n<tr><td>version</td><td>" +
        HtmlEscape(PepnetVersion()) + "</td></tr>\n<tr><td>uptime</td><td>" + FormatUptime(uptime) +
        "</td></tr>\n" + now + "</table>\n<h2>Flags</h2>\n<table>\n" + FlagRows() +
        "</table>\n</body></html>\n";
    return HttpResponse{200, "text/html; charset=utf-8", page};
  });
  auto metrics = hooks.metrics;
  server->Handle("/metrics", [program, role, metrics, start](const HttpRequest&) {
    StatSet set;
    set.Gauge("pepnet_build_info", "The process's program, role and version; always 1.", 1)
        .Label("program", program)
        .Label("role", role)
        .Label("version", PepnetVersion());
    set.Gauge("pepnet_admin_uptime_seconds", "Seconds since the admin endpoints started.",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (metrics) metrics(&set);
    return HttpResponse{200, kPrometheusContentType, FormatPrometheus(set)};
  });
  for (auto& [path, handler] : hooks.more) server->Handle(path, std::move(handler));
}

Status AdminEndpoints::StartFromFlags(const std::string& program, const std::string& process_host,
                                      const Secret& secret, AdminHooks hooks,
                                      std::unique_ptr<AdminEndpoints>* out) {
  out->reset();
  if (FLAGS_admin_port == -1) return Status::OK();
  const std::string host = FLAGS_admin_host.empty() ? process_host : FLAGS_admin_host;
  PEPNET_RETURN_IF_ERROR(
      CheckListenSecurity(host, secret, FLAGS_admin_host.empty() ? "--host" : "--admin_host"));
  if (FLAGS_admin_port < 0 || FLAGS_admin_port > 65535) {
    return Status::InvalidArgument("--admin_port must be -1 (none) or in [0, 65535]");
  }
  if (FLAGS_admin_timeout_ms < 1) return Status::InvalidArgument("--admin_timeout_ms must be >= 1");
  HttpServerOptions options;
  options.host = host;
  options.port = FLAGS_admin_port;
  options.request_timeout_ms = FLAGS_admin_timeout_ms;
  options.what = "--admin_port";
  std::unique_ptr<AdminEndpoints> admin(new AdminEndpoints());
  admin->where_ = program + " " + hooks.role;
  admin->server_ = std::make_unique<HttpServer>(options);
  HttpServer* server = admin->server_.get();
  admin->host_ = host;
  admin->more_ = !hooks.more.empty();
  AddAdminHandlers(program, std::move(hooks), server);
  PEPNET_RETURN_IF_ERROR(server->Start());
  if (!FLAGS_admin_port_file.empty()) {
    Status st = WriteFileDurably(Env::Default(), FLAGS_admin_port_file,
                                 std::to_string(server->port()) + "\n");
    if (!st.ok()) return Status(st.code(), "--admin_port_file: " + st.message());
  }
  *out = std::move(admin);
  return Status::OK();
}

}  // namespace pepnet
