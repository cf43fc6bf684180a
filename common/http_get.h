// One blocking HTTP/1.1 GET over loopback TCP on a connection of its own, for tools and
// benchmarks that read an admin endpoint (pepnet_bench_ps's scrapes of /metrics); see
// common/http_client.h for a kept-alive connection.
#ifndef PEPNET_COMMON_HTTP_GET_H_
#define PEPNET_COMMON_HTTP_GET_H_

#include <cstdint>
#include <string>

#include "common/status.h"

namespace pepnet {

// GET `path` from 127.0.0.1:`port`; *status_code and *body from the reply. Unavailable
// if the connection fails, DeadlineExceeded after `timeout_ms` without the whole reply.
Status HttpGet(uint16_t port, const std::string& path, int timeout_ms, int* status_code,
               std::string* body);

}  // namespace pepnet

#endif  // PEPNET_COMMON_HTTP_GET_H_
