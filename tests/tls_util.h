// TLS material for tests, made by the real `pepnet_ctl tls_keys`.
#ifndef PEPNET_TESTS_TLS_UTIL_H_
#define PEPNET_TESTS_TLS_UTIL_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/tls.h"
#include "tests/test_util.h"

namespace pepnet {
namespace testing {

struct TestTls {
  TlsOptions options;
  std::vector<std::string> flags;  // --tls_cert, --tls_key, --tls_ca for a process
  std::shared_ptr<const TlsContext> context;
};

// A CA and a member certificate in dir/name; every call makes another CA.
inline TestTls MakeTestTls(const TempDir& dir, const std::string& name = "tls") {
  TestTls t;
  const std::string out = dir.File(name);
  std::string output;
  EXPECT_EQ(RunCommand({BinDir() + "/pepnet_ctl", "tls_keys", "--out_dir=" + out}, dir, &output), 0)
      << output;
  t.options.cert_file = out + "/cert.pem";
  t.options.key_file = out + "/key.pem";
  t.options.ca_file = out + "/ca.pem";
  t.flags = {"--tls_cert=" + t.options.cert_file, "--tls_key=" + t.options.key_file,
             "--tls_ca=" + t.options.ca_file};
  Status st = TlsContext::Create(t.options, &t.context);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return t;
}

}  // namespace testing
}  // namespace pepnet

#endif  // PEPNET_TESTS_TLS_UTIL_H_
