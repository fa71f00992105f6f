// The ebpf-agent binary run by kernel tests: a config of the test's own (its cgroup, a private
// bpffs, a temporary run directory), the daemon as a child process with its log captured, and
// the CLI verbs. Never the machine's root cgroup.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kernel_fixture.hpp"

namespace ebpf::test {

// A temporary directory, removed with its contents.
class temp_dir {
  public:
    temp_dir() {
        char tmpl[] = "/tmp/ebpf-agent-test-XXXXXX";
        if (::mkdtemp(tmpl)) {
            path_ = tmpl;
        } else {
            ADD_FAILURE() << "mkdtemp";
        }
    }
    ~temp_dir() {
        std::error_code ec;
        if (!path_.empty()) {
            std::filesystem::remove_all(path_, ec);
        }
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    std::string path(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

inline void write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::trunc);
    f << text;
}

inline std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// What a finished command did.
struct command_result {
    int exit_code = -1;
    std::string out;
    std::string err;
};

// Starts the agent binary with `args`, its stdout and stderr going to the files named.
inline pid_t spawn_agent(const std::vector<std::string>& args, const std::string& out,
                         const std::string& err, const std::string& notify_socket = "",
                         const std::function<void()>& before_exec = {}) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        if (before_exec) {
            before_exec();
        }
        if (!notify_socket.empty()) {
            ::setenv("NOTIFY_SOCKET", notify_socket.c_str(), 1);
        }
        int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        int e = err == out ? o : ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        ::dup2(o, 1);
        ::dup2(e, 2);
        std::vector<char*> argv;
        argv.push_back(const_cast<char*>(EBPF_AGENT_BINARY));
        for (const auto& a : args) {
            argv.push_back(const_cast<char*>(a.c_str()));
        }
        argv.push_back(nullptr);
        ::execv(EBPF_AGENT_BINARY, argv.data());
        ::_exit(127);
    }
    return pid;
}

// Runs the agent binary with `args` and waits for it.
inline command_result run_agent(const std::vector<std::string>& args) {
    temp_dir tmp;
    const std::string out = tmp.path("out"), err = tmp.path("err");
    const pid_t pid = spawn_agent(args, out, err);
    command_result r;
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
}

// The daemon (`ebpf-agent run`) as a child process. Killed and reaped on destruction if the
// test did not stop it.
class agent_daemon {
  public:
    // `notify_socket`: where the daemon sends its systemd notifications ($NOTIFY_SOCKET).
    // `before_exec` runs in the child just before the binary (e.g. to enter a namespace).
    agent_daemon(const std::string& config, const std::string& state_file,
                 std::vector<std::string> extra = {}, const std::string& notify_socket = "",
                 const std::function<void()>& before_exec = {})
        : state_file_(state_file) {
        log_path_ = log_dir_.path("log");
        std::vector<std::string> args = {"run", "--config", config};
        args.insert(args.end(), extra.begin(), extra.end());
        pid_ = spawn_agent(args, log_path_, log_path_, notify_socket, before_exec);
    }
    ~agent_daemon() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            reap();
        }
    }
    agent_daemon(const agent_daemon&) = delete;
    agent_daemon& operator=(const agent_daemon&) = delete;

    // Waits until the daemon says it is ready (its state file names its pid); false if it
    // exited or took longer than 20 s.
    bool wait_ready() {
        for (int i = 0; i < 400; ++i) {
            if (exited()) {
                return false;
            }
            auto j = state();
            if (!j.is_null() && j.value("pid", 0) == pid_ &&
                log().find("msg=ready") != std::string::npos) {
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return false;
    }

    nlohmann::json state() const {
        std::ifstream f(state_file_);
        if (!f) {
            return nullptr;
        }
        auto j = nlohmann::json::parse(f, nullptr, false);
        return j.is_discarded() ? nlohmann::json(nullptr) : j;
    }

    void signal(int sig) const {
        if (pid_ > 0) {
            ::kill(pid_, sig);
        }
    }

    // Waits for the daemon to exit (10 s at most) and returns its exit code (128 + signal).
    int wait_exit() {
        for (int i = 0; i < 200 && pid_ > 0; ++i) {
            if (exited()) {
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return status_;
    }

    std::string log() const { return read_file(log_path_); }
    pid_t pid() const { return pid_; }

  private:
    bool exited() {
        if (pid_ <= 0) {
            return true;
        }
        int status = 0;
        pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            pid_ = 0;
            return true;
        }
        return false;
    }
    void reap() {
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = 0;
    }

    temp_dir log_dir_;
    std::string log_path_;
    std::string state_file_;
    pid_t pid_ = -1;
    int status_ = -1;
};

}  // namespace ebpf::test

namespace ebpf::test {

// A datagram socket standing in for systemd's notification socket.
class notify_listener {
  public:
    explicit notify_listener(const std::string& path) : path_(path) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            ADD_FAILURE() << "bind " << path;
        }
        timeval tv{5, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~notify_listener() {
        ::close(fd_);
        ::unlink(path_.c_str());
    }
    notify_listener(const notify_listener&) = delete;
    notify_listener& operator=(const notify_listener&) = delete;

    // Returns the next notification ("" after 5 s without one).
    std::string next() {
        char buf[512];
        ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, size_t(n)) : std::string();
    }

  private:
    std::string path_;
    int fd_ = -1;
};

// GET http://127.0.0.1:port/path over a plain socket; returns the status code and body
// (status 0 when the connection failed).
inline std::pair<int, std::string> http_get(const std::string& address, const std::string& path) {
    const auto colon = address.rfind(':');
    const std::string host = address.substr(0, colon);
    const int port = std::stoi(address.substr(colon + 1));
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(s);
        return {0, ""};
    }
    const std::string req =
        "GET " + path + " HTTP/1.1\r\nHost: " + address + "\r\nConnection: close\r\n\r\n";
    (void)!::write(s, req.data(), req.size());
    std::string resp;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(s, buf, sizeof buf)) > 0) {
        resp.append(buf, size_t(n));
    }
    ::close(s);
    int status = 0;
    std::sscanf(resp.c_str(), "HTTP/1.1 %d", &status);
    const auto body = resp.find("\r\n\r\n");
    return {status, body == std::string::npos ? "" : resp.substr(body + 4)};
}

// The value of the Prometheus sample whose name and labels are exactly `series`, or -1.
inline double metric_value(const std::string& page, const std::string& series) {
    size_t at = 0;
    while ((at = page.find(series + " ", at)) != std::string::npos) {
        if (at == 0 || page[at - 1] == '\n') {
            return std::stod(page.substr(at + series.size() + 1));
        }
        at += series.size();
    }
    return -1;
}

}  // namespace ebpf::test
