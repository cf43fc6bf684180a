#include "tools/tls_keys.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common/tls.h"

namespace pepnet {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Free>;
using CertPtr = std::unique_ptr<X509, Free>;

Status TlsError(const std::string& what) {
  return Status::Internal(what + ": " + TakeTlsErrors("failed"));
}

bool AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for `key` named `common_name`, signed by `issuer_key` (itself when
// `issuer` is null: the CA).
Status MakeCertificate(EVP_PKEY* key, const char* common_name, X509* issuer, EVP_PKEY* issuer_key,
                       int days, CertPtr* out) {
  CertPtr cert(X509_new());
  if (!cert) return TlsError("X509_new");
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return TlsError("RAND_bytes");
  serial[0] &= 0x7f;  // a positive serial
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  const bool serial_ok = bn != nullptr && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_NAME* name = X509_get_subject_name(cert.get());
  const bool ok =
      serial_ok && X509_set_version(cert.get(), 2) == 1 &&
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), int64_t{days} * 86400) != nullptr &&
      X509_set_pubkey(cert.get(), key) == 1 &&
      X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("pepnet-ps cluster"), -1,
                                 -1, 0) == 1 &&
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(common_name), -1, -1,
                                 0) == 1 &&
      X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name) == 1;
  if (!ok) return TlsError("building the certificate");
  X509* signer = issuer ? issuer : cert.get();
  const bool ext_ok =
      issuer == nullptr
          ? AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE") &&
                AddExtension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign") &&
                AddExtension(cert.get(), signer, NID_subject_key_identifier, "hash")
          : AddExtension(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE") &&
                AddExtension(cert.get(), signer, NID_key_usage,
                             "critical,digitalSignature,keyEncipherment") &&
                AddExtension(cert.get(), signer, NID_ext_key_usage, "serverAuth,clientAuth") &&
                AddExtension(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
  if (!ext_ok) return TlsError("certificate extensions");
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) return TlsError("signing");
  *out = std::move(cert);
  return Status::OK();
}

// Writes `pem` to a new file (never over an existing one) with `mode`.
Status WriteNew(const std::string& path, const std::string& pem, mode_t mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return Status::InvalidArgument(path + ": " + strerror(errno) +
                                   (errno == EEXIST ? " (a cluster's TLS files are never "
                                                      "overwritten; remove them first)"
                                                    : ""));
  }
  size_t done = 0;
  while (done < pem.size()) {
    const ssize_t n = write(fd, pem.data() + done, pem.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      close(fd);
      return Status::IoError(path + ": " + strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) return Status::IoError(path + ": " + strerror(errno));
  return Status::OK();
}

template <class WriteFn>
Status Pem(WriteFn write, std::string* out) {
  std::unique_ptr<BIO, Free> bio(BIO_new(BIO_s_mem()));
  if (!bio || !write(bio.get())) return TlsError("PEM encoding");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  out->assign(data, static_cast<size_t>(n));
  return Status::OK();
}

}  // namespace

Status MakeTlsKeys(const std::string& dir, int days) {
  if (days < 1) return Status::InvalidArgument("--days must be >= 1");
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IoError(dir + ": " + strerror(errno));
  }
  const char* names[] = {"ca.pem", "ca-key.pem", "cert.pem", "key.pem"};
  for (const char* name : names) {
    struct stat st;
    if (stat((dir + "/" + name).c_str(), &st) == 0) {
      return Status::InvalidArgument(dir + "/" + name +
                                     " exists (a cluster's TLS files are never overwritten; "
                                     "remove them first)");
    }
  }
  KeyPtr ca_key(EVP_EC_gen("P-256")), key(EVP_EC_gen("P-256"));
  if (!ca_key || !key) return TlsError("generating keys");
  CertPtr ca, cert;
  PEPNET_RETURN_IF_ERROR(
      MakeCertificate(ca_key.get(), "pepnet-ps cluster CA", nullptr, ca_key.get(), days, &ca));
  PEPNET_RETURN_IF_ERROR(
      MakeCertificate(key.get(), "pepnet-ps member", ca.get(), ca_key.get(), days, &cert));
  auto key_pem = [](EVP_PKEY* k) {
    return [k](BIO* b) {
      return PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr) == 1;
    };
  };
  auto cert_pem = [](X509* c) { return [c](BIO* b) { return PEM_write_bio_X509(b, c) == 1; }; };
  std::string ca_text, ca_key_text, cert_text, key_text;
  PEPNET_RETURN_IF_ERROR(Pem(cert_pem(ca.get()), &ca_text));
  PEPNET_RETURN_IF_ERROR(Pem(key_pem(ca_key.get()), &ca_key_text));
  PEPNET_RETURN_IF_ERROR(Pem(cert_pem(cert.get()), &cert_text));
  PEPNET_RETURN_IF_ERROR(Pem(key_pem(key.get()), &key_text));
  const std::pair<const char*, const std::string*> files[] = {{"ca-key.pem", &ca_key_text},
                                                              {"key.pem", &key_text},
                                                              {"cert.pem", &cert_text},
                                                              {"ca.pem", &ca_text}};
  for (size_t i = 0; i < 4; ++i) {
    const bool secret = i < 2;
    Status st = WriteNew(dir + "/" + files[i].first, *files[i].second, secret ? 0600 : 0644);
    if (!st.ok()) {
      // Half a set would block every later run: take back what this one wrote.
      for (size_t j = 0; j < i; ++j) unlink((dir + "/" + files[j].first).c_str());
      return st;
    }
  }
  return Status::OK();
}

}  // namespace pepnet
