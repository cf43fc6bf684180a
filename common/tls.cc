#include "common/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <csignal>
#include <mutex>

#include "common/auth.h"

namespace pepnet {

std::string TakeTlsErrors(const std::string& fallback) {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text.empty() ? fallback : text;
}

TlsContext::TlsContext() = default;
TlsContext::~TlsContext() = default;

ssl_ctx_st* TlsContext::native() const { return context_->native_handle(); }

boost::asio::ssl::context& TlsContext::asio() const { return *context_; }

Status TlsContext::Create(const TlsOptions& options, std::shared_ptr<const TlsContext>* out) {
  const std::pair<const char*, const std::string*> files[] = {{"--tls_cert", &options.cert_file},
                                                              {"--tls_key", &options.key_file},
                                                              {"--tls_ca", &options.ca_file}};
  for (const auto& [flag, path] : files) {
    if (path->empty()) {
      return Status::InvalidArgument(std::string("TLS needs --tls_cert, --tls_key and --tls_ca; ") +
                                     flag + " is missing");
    }
  }
  PEPNET_RETURN_IF_ERROR(CheckOwnerOnlyFile("--tls_key", options.key_file));
  // OpenSSL writes to a socket with write(), not send(MSG_NOSIGNAL): without this, a
  // write to a peer that went away would kill the process instead of failing the write.
  static std::once_flag ignore_sigpipe;
  std::call_once(ignore_sigpipe, [] { signal(SIGPIPE, SIG_IGN); });
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (ctx == nullptr) return Status::Internal(TakeTlsErrors("SSL_CTX_new failed"));
  std::shared_ptr<TlsContext> made(new TlsContext());
  // Asio's context takes ownership of the native one.
  made->context_ = std::make_unique<boost::asio::ssl::context>(ctx);
  auto failed = [](const char* flag, const std::string& path) {
    return Status::InvalidArgument(std::string(flag) + " " + path + ": " +
                                   TakeTlsErrors("cannot be loaded"));
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // No renegotiation, no compression, no session tickets: nothing a peer can trigger after
  // the handshake, and nothing written behind a blocking reader's back.
  // For the coordinator's channel (OpenSSL on the socket itself), a TCP end without
  // close_notify reads as the connection closing: every message is length-framed, so a
  // truncated one is still caught as short. (Asio's stream reports it as stream_truncated
  // whatever this says; its users treat that as a close too.)
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_num_tickets(ctx, 0);
  // AES-128-GCM first: on CPUs with AES-NI it costs the request path less than AES-256
  // (the default first choice) and is as strong as the P-256 keys that protect it.
  SSL_CTX_set_ciphersuites(ctx,
                           "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                           "TLS_CHACHA20_POLY1305_SHA256");
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_use_certificate_chain_file(ctx, options.cert_file.c_str()) != 1) {
    return failed("--tls_cert", options.cert_file);
  }
  // Loading the key checks it against the certificate.
  if (SSL_CTX_use_PrivateKey_file(ctx, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    const std::string errors = TakeTlsErrors("cannot be loaded");
    if (errors.find("mismatch") == std::string::npos) {
      return Status::InvalidArgument("--tls_key " + options.key_file + ": " + errors);
    }
    return Status::InvalidArgument("--tls_key " + options.key_file +
                                   " is not the key of --tls_cert " + options.cert_file + " (" +
                                   errors + ")");
  }
  if (SSL_CTX_load_verify_locations(ctx, options.ca_file.c_str(), nullptr) != 1) {
    return failed("--tls_ca", options.ca_file);
  }
  // Both ends verify: a server refuses a client without a certificate of the cluster's CA.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  *out = std::move(made);
  return Status::OK();
}

Status AttachTls(const TlsOptions& options, Secret* secret) {
  if (!options.enabled()) return Status::OK();
  if (secret->empty()) {
    return Status::InvalidArgument(
        "--tls_cert/--tls_key/--tls_ca need --secret_file: the secret admits a peer, TLS "
        "protects the conversation");
  }
  std::shared_ptr<const TlsContext> tls;
  PEPNET_RETURN_IF_ERROR(TlsContext::Create(options, &tls));
  secret->set_tls(std::move(tls));
  return Status::OK();
}

}  // namespace pepnet
