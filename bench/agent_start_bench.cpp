// ebpf-agent's start-to-ready time and peak RSS, side by side with a minimal libbpf-based agent
// (bench/libbpf_agent.cpp) loading and attaching the same objects, in alternating rounds. Both
// attach to a cgroup this benchmark creates under the cgroup2 mount (never the root one) and
// detach on SIGTERM. Needs root.
//
// Per round and agent: the wall time from fork to READY=1 on $NOTIFY_SOCKET (process start
// included), the time the agent itself reports from main() to ready (process start excluded:
// the measure), and the peak RSS (ru_maxrss of the exited child).
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "bench_stats.hpp"
#include "ebpf/cgroup.hpp"

namespace {

struct run_result {
    double wall_ms = 0;      // fork -> READY=1
    double startup_ms = 0;   // as the agent reports it: main() -> ready
    double peak_rss_mb = 0;  // ru_maxrss
    bool ok = false;
};

std::string read_all(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// Runs one agent until READY=1, then SIGTERM; returns what it measured.
run_result run_once(const std::vector<std::string>& argv, const std::string& dir) {
    run_result r;
    const std::string sock_path = dir + "/notify.sock", log_path = dir + "/log";
    ::unlink(sock_path.c_str());
    int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, sock_path.c_str(), sizeof a.sun_path - 1);
    if (::bind(sock, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        std::perror("bind notify socket");
        return r;
    }
    timeval tv{10, 0};
    ::setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const auto t0 = std::chrono::steady_clock::now();
    pid_t pid = ::fork();
    if (pid == 0) {
        ::setenv("NOTIFY_SOCKET", sock_path.c_str(), 1);
        int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        std::vector<char*> args;
        for (const auto& s : argv) {
            args.push_back(const_cast<char*>(s.c_str()));
        }
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    char buf[256];
    ssize_t n;
    bool ready = false;
    while ((n = ::recv(sock, buf, sizeof buf - 1, 0)) > 0) {
        buf[n] = 0;
        if (std::strstr(buf, "READY=1")) {
            ready = true;
            break;
        }
    }
    r.wall_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ::close(sock);
    ::kill(pid, SIGTERM);
    int status = 0;
    rusage ru{};
    ::wait4(pid, &status, 0, &ru);
    r.peak_rss_mb = double(ru.ru_maxrss) / 1024.0;
    const std::string log = read_all(log_path);
    std::smatch m;
    if (std::regex_search(log, m, std::regex("startup_ms=\"?([0-9.]+)"))) {
        r.startup_ms = std::stod(m[1]);
    }
    r.ok = ready && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!r.ok) {
        std::fprintf(stderr, "%s failed (status %d):\n%s\n", argv[0].c_str(), status, log.c_str());
    }
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    int rounds = argc > 1 ? std::atoi(argv[1]) : 20;
    auto mount = ebpf::cgroup2_mount();
    if (!mount) {
        std::fprintf(stderr, "%s\n", mount.error().message().c_str());
        return 1;
    }
    char tmpl[] = "/tmp/ebpf-agent-start-bench-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    const std::string cgroup = *mount + "/ebpf-agent-start-bench-" + std::to_string(::getpid());
    if (::mkdir(cgroup.c_str(), 0755) != 0) {
        std::perror(cgroup.c_str());
        return 1;
    }
    const std::string config = dir + "/config.toml";
    {
        std::ofstream f(config);
        f << "[agent]\ncgroup = \"" << cgroup << "\"\nbpffs_dir = \"" << dir
          << "/bpffs/ebpf-agent\"\nrun_dir = \"" << dir << "/run\"\nstats_interval = 0\n\n"
          << "[metrics]\nlisten = \"127.0.0.1:0\"\n\n[programs]\nnet_stat = true\n";
    }
    const std::vector<std::string> ours = {EBPF_BENCH_AGENT_BINARY, "run", "--config", config};
    const std::vector<std::string> yardstick = {
        EBPF_BENCH_LIBBPF_AGENT, cgroup, EBPF_BENCH_TCP_RTO_OBJECT, EBPF_BENCH_TCP_TOS_OBJECT,
        EBPF_BENCH_NET_STAT_OBJECT};

    std::vector<double> ours_wall, ours_start, ours_rss, lb_wall, lb_start, lb_rss;
    bool ok = true;
    for (int i = 0; i < rounds && ok; ++i) {
        // Alternate which goes first, so neither always runs on a warmer machine.
        for (int k = 0; k < 2; ++k) {
            const bool our_turn = (i + k) % 2 == 0;
            run_result r = run_once(our_turn ? ours : yardstick, dir);
            ok = ok && r.ok;
            (our_turn ? ours_wall : lb_wall).push_back(r.wall_ms);
            (our_turn ? ours_start : lb_start).push_back(r.startup_ms);
            (our_turn ? ours_rss : lb_rss).push_back(r.peak_rss_mb);
        }
    }
    ::rmdir(cgroup.c_str());
    std::system(("rm -rf " + dir).c_str());
    if (!ok) {
        return 1;
    }
    const double start = bench::median(ours_start), rss = bench::median(ours_rss);
    std::printf("agent start, %d alternating rounds (6 programs: tcp_rto, tcp_tos, net_stat x4)\n",
                rounds);
    std::printf("  %-34s %10s %10s %8s\n", "", "ebpf-agent", "libbpf", "ratio");
    std::printf("  %-34s %8.2f ms %7.2f ms %8.3f\n", "start to ready (process excluded)", start,
                bench::median(lb_start), bench::paired_ratio(ours_start, lb_start));
    std::printf("  %-34s %8.2f ms %7.2f ms %8.3f\n", "fork to READY=1", bench::median(ours_wall),
                bench::median(lb_wall), bench::paired_ratio(ours_wall, lb_wall));
    std::printf("  %-34s %8.2f MB %7.2f MB %8.3f\n", "peak RSS", rss, bench::median(lb_rss),
                bench::paired_ratio(ours_rss, lb_rss));
    std::printf("  targets: start to ready <= 15 ms %s, peak RSS <= 8 MB %s\n",
                start <= 15 ? "PASS" : "FAIL", rss <= 8 ? "PASS" : "FAIL");
    return 0;
}
