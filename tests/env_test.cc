// The file-system seam: durable writes (old file or whole new one), folders, and the
// --crash_at specs.
#include "common/env.h"

#include <gtest/gtest.h>

#include "tests/fault_env.h"
#include "tests/test_util.h"

namespace pepnet {
namespace {

TEST(EnvTest, ADurableWriteLeavesTheOldFileOrTheWholeNewOne) {
  testing::TempDir dir;
  const std::string path = dir.File("record");
  ASSERT_TRUE(WriteFileDurably(Env::Default(), path, "first").ok());
  std::string text;
  ASSERT_TRUE(Env::Default()->ReadFile(path, &text).ok());
  EXPECT_EQ(text, "first");
  testing::FaultEnv env;
  env.FailWrites("record");
  Status st = WriteFileDurably(&env, path, "second, longer");
  EXPECT_EQ(st.code(), Status::kIoError) << st.ToString();
  EXPECT_NE(st.message().find(path + ".tmp"), std::string::npos) << st.message();
  ASSERT_TRUE(Env::Default()->ReadFile(path, &text).ok());
  EXPECT_EQ(text, "first");
  EXPECT_EQ(Env::Default()->FileExists(path + ".tmp").code(), Status::kNotFound);
  env.Heal();
  ASSERT_TRUE(WriteFileDurably(&env, path, "second").ok());
  ASSERT_TRUE(Env::Default()->ReadFile(path, &text).ok());
  EXPECT_EQ(text, "second");
}

TEST(EnvTest, FoldersAreMadeAndRemovedWhole) {
  testing::TempDir dir;
  Env* env = Env::Default();
  ASSERT_TRUE(CreateDirs(env, dir.File("a/b/c")).ok());
  ASSERT_TRUE(WriteFileDurably(env, dir.File("a/b/c/f"), "x").ok());
  ASSERT_TRUE(WriteFileDurably(env, dir.File("a/g"), "y").ok());
  ASSERT_TRUE(CreateDirs(env, dir.File("a/b/c")).ok()) << "an existing folder is fine";
  ASSERT_TRUE(RemoveTree(env, dir.File("a")).ok());
  EXPECT_EQ(env->FileExists(dir.File("a")).code(), Status::kNotFound);
  EXPECT_TRUE(RemoveTree(env, dir.File("a")).ok()) << "an absent one too";
  // A file where a folder should be is an error that names it.
  ASSERT_TRUE(WriteFileDurably(env, dir.File("plain"), "z").ok());
  Status st = env->CreateDir(dir.File("plain"));
  EXPECT_EQ(st.code(), Status::kIoError);
  EXPECT_NE(st.message().find(dir.File("plain")), std::string::npos) << st.message();
}

TEST(EnvTest, CrashSpecsAreChecked) {
  Status st;
  EXPECT_NE(NewCrashAtEnv(Env::Default(), "coord.after_record", &st), nullptr);
  EXPECT_NE(NewCrashAtEnv(Env::Default(), "coord.after_record:3", &st), nullptr);
  EXPECT_EQ(NewCrashAtEnv(Env::Default(), "coord.after_record:0", &st), nullptr);
  EXPECT_NE(st.message().find("want NAME or NAME:COUNT"), std::string::npos) << st.message();
  EXPECT_EQ(NewCrashAtEnv(Env::Default(), ":2", &st), nullptr);
  // Passing other steps (and the named one before its count) changes nothing.
  auto env = NewCrashAtEnv(Env::Default(), "x:2", &st);
  EXPECT_TRUE(env->StepPoint("y").ok());
  EXPECT_TRUE(env->StepPoint("x").ok());
}

}  // namespace
}  // namespace pepnet
