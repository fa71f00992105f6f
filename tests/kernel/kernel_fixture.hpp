// Shared pieces of the kernel tests: fd-leak checking, a private cgroup, a private bpffs, and
// running code in a child process that lives in the test's cgroup.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "ebpf/ebpf.hpp"

namespace ebpf::test {

inline int count_open_fds() {
    int n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    if (!d) {
        return -1;
    }
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] != '.') {
            ++n;
        }
    }
    ::closedir(d);
    return n - 1;  // the directory's own fd
}

// Every kernel test checks that it closed every fd it opened.
class KernelTest : public ::testing::Test {
  protected:
    void SetUp() override { fds_before_ = count_open_fds(); }
    void TearDown() override {
        EXPECT_EQ(count_open_fds(), fds_before_) << "the test leaked file descriptors";
    }

  private:
    int fds_before_ = 0;
};

// A cgroup of the test's own, under the cgroup2 mount; removed on destruction (after any child
// process that joined it has exited).
class test_cgroup {
  public:
    test_cgroup() {
        auto mnt = cgroup2_mount();
        if (!mnt) {
            ADD_FAILURE() << mnt.error().message();
            return;
        }
        static std::atomic<int> seq{0};
        path_ = *mnt + "/ebpf-test-" + std::to_string(::getpid()) + "-" + std::to_string(seq++);
        if (::mkdir(path_.c_str(), 0755) != 0) {
            ADD_FAILURE() << "mkdir " << path_ << ": " << std::strerror(errno);
            path_.clear();
            return;
        }
        auto f = open_cgroup(path_);
        if (!f) {
            ADD_FAILURE() << f.error().message();
            return;
        }
        fd_ = std::move(*f);
    }
    ~test_cgroup() {
        fd_.reset();
        if (!path_.empty() && ::rmdir(path_.c_str()) != 0) {
            ADD_FAILURE() << "rmdir " << path_ << ": " << std::strerror(errno);
        }
    }
    test_cgroup(const test_cgroup&) = delete;
    test_cgroup& operator=(const test_cgroup&) = delete;

    const std::string& path() const { return path_; }
    int fd() const { return fd_.get(); }

  private:
    std::string path_;
    ebpf::fd fd_;
};

// A bpffs mounted privately for the test at a temporary directory; pins vanish with it.
class test_bpffs {
  public:
    test_bpffs() {
        char tmpl[] = "/tmp/ebpf-test-bpffs-XXXXXX";
        if (!::mkdtemp(tmpl)) {
            ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
            return;
        }
        dir_ = tmpl;
        if (::mount("bpf", dir_.c_str(), "bpf", 0, "mode=0700") != 0) {
            ADD_FAILURE() << "mount bpffs at " << dir_ << ": " << std::strerror(errno);
            ::rmdir(dir_.c_str());
            dir_.clear();
            return;
        }
        mounted_ = true;
    }
    ~test_bpffs() {
        if (mounted_) {
            ::umount2(dir_.c_str(), MNT_DETACH);
        }
        if (!dir_.empty()) {
            ::rmdir(dir_.c_str());
        }
    }
    test_bpffs(const test_bpffs&) = delete;
    test_bpffs& operator=(const test_bpffs&) = delete;

    std::string path(const std::string& name) const { return dir_ + "/" + name; }

  private:
    std::string dir_;
    bool mounted_ = false;
};

// Runs `body` in a child process that has joined `cgroup` and returns its exit status (the
// body's return value; 100+ for failures to set up). Only the child is moved.
inline int run_in_cgroup(const std::string& cgroup_path, const std::function<int()>& body) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) {
        return 101;
    }
    if (pid == 0) {
        std::string procs = cgroup_path + "/cgroup.procs";
        FILE* f = std::fopen(procs.c_str(), "we");
        if (!f || std::fprintf(f, "%d\n", ::getpid()) < 0 || std::fclose(f) != 0) {
            std::perror("join the test cgroup");
            ::_exit(102);
        }
        ::_exit(body());
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status)) {
        return 103;
    }
    return WEXITSTATUS(status);
}

inline int run_in_cgroup(const test_cgroup& cgroup, const std::function<int()>& body) {
    return run_in_cgroup(cgroup.path(), body);
}

// Runs a command and returns what it printed on stdout.
inline std::string run_command(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "re");
    if (!p) {
        return out;
    }
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
        out.append(buf, n);
    }
    ::pclose(p);
    return out;
}

// Fails the test with the error's full text (including a verifier log) when r holds an error.
#define ASSERT_OK(expr)                                                 \
    do {                                                                \
        auto&& ok_r_ = (expr);                                          \
        ASSERT_TRUE(ok_r_.has_value()) << ok_r_.error().full_message(); \
    } while (0)
#define EXPECT_OK(expr)                                                 \
    do {                                                                \
        auto&& ok_r_ = (expr);                                          \
        EXPECT_TRUE(ok_r_.has_value()) << ok_r_.error().full_message(); \
    } while (0)

}  // namespace ebpf::test
