#include "common/http_get.h"

#include "common/http_client.h"

namespace pepnet {

Status HttpGet(uint16_t port, const std::string& path, int timeout_ms, int* status_code,
               std::string* body) {
  HttpClient client(port, timeout_ms);
  HttpReply reply;
  PEPNET_RETURN_IF_ERROR(client.Get(path, &reply));
  *status_code = reply.status;
  *body = std::move(reply.body);
  return Status::OK();
}

}  // namespace pepnet
