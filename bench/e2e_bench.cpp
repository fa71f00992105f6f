// End-to-end cost of the agent's programs on TCP: 1-byte request/response over loopback from a
// test cgroup, with every program attached (tcp_rto, tcp_tos, tclass_lock and net_stat's four)
// against none. Needs root.
//
// The parent loads the objects, fills the maps as an operator would (a few rules, a few hundred
// prefixes, the loopback addresses among them so that every program does its full work), makes
// a cgroup of its own and holds the links. A child process joins the cgroup, makes a network
// namespace of its own (only its loopback: nothing else on the host is touched, and its sockets
// vanish with it) and runs the clients; the servers are threads of the same child. Over a pipe
// the parent tells the child what to run and gets back the run's median latency.
//
// Cases, for IPv4 (127.0.0.1) and IPv6 (::1):
//   request/response  one connection per run, `round_trips` 1-byte round trips on it
//   new connection    `connections` times: socket, connect, 1 byte each way, close (the server
//                     closes first, as an HTTP/1.0 server would, so the client keeps no
//                     TIME_WAIT and its ports never run out)
// and new connections over IPv4 with a new peer each time (32,768 in turn): every other case
// talks to one peer, which the programs' peer and decision caches hold after the first
// connection; this one measures their misses.
// Each pair (a triple, really) runs a case three ways back to back, the order rotating from pair
// to pair: with nothing attached, with the floor attached, and with the programs attached. The
// result is the median over the pairs of (attached p50 / none p50), checked against the targets
// (request/response 1.02, new connection 1.05; programs loaded by libbpf were measured at
// 1.04-1.06 and 1.11-1.15).
//
// The floor (bench/bpf/e2e_floor.bpf.c) is a program that does nothing, attached in each chosen
// program's place (the same hook and attach type): what the kernel's hooks cost by themselves,
// which no program body can go below. On this machine (retpolines and the SRSO safe-RET thunk
// make every indirect call and return dear) the floor of the default set is already 1.03-1.04
// (request/response) and 1.05 (new connection). The report also gives floor / none and
// attached / floor: the latter is the programs' own cost.
//
// The child runs on one CPU (the last one the benchmark may use): every round trip is then two
// context switches on that CPU. Unpinned (--cpu=-1), the client and the server land on the
// same CPU or on two, from run to run, and the runs split into two modes (here 14 and 35 us)
// that make the pairs noisy.
//
//   e2e_bench [pairs] [round_trips] [connections] [--all | --only=prog,...] [--cpu=n] [--stats]
//
// Defaults: 30 pairs, 5000 round trips, 1000 connections, the programs the agent's default
// config attaches (tcp_rto, tcp_tos, net_stat_dc_tx, net_stat_dc_rx; the dc programs' map also
// gives the per-cgroup totals, so net_stat_tx/rx are off by default). --all attaches all seven;
// --only just the named programs, to see where the cost is. --stats turns on the kernel's run-time
// statistics and prints each program's runs and time per request (the statistics cost time of their
// own).

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../bpf/include/net_stat.h"
#include "../bpf/include/net_stat_networks.hpp"
#include "../bpf/include/policy.h"
#include "../bpf/include/tclass_lock.h"
#include "../bpf/include/tcp_rto.h"
#include "ebpf/ebpf.hpp"

namespace {

// ---- the programs and their maps (parent) ----

constexpr uint32_t backbone = 1, fastbone = 2, local_dc = 1;

// The policy of the sock_ops objects: a few hundred networks (IPv6 /32../64, IPv4 /16 and
// /24), the loopback addresses in the local DC's backbone, a few hundred projects in sets, and
// rules where the loopback peers match the third (intra-DC backbone: every setting). The
// congestion control is the kernel's default: tcp_rto sets it on every connection, and a
// different algorithm would change TCP's behaviour, not the programs' cost.
ebpf::result<void> fill_policy(ebpf::collection& c, const std::string& cc) {
    auto nets = ebpf::lpm_trie<policy_network>::view(*c.map("networks"));
    EBPF_TRY(nets);
    auto add = [&](const char* prefix, policy_network n) -> ebpf::result<void> {
        auto k = ebpf::lpm_key::parse(prefix);
        EBPF_TRY(k);
        return nets->update(*k, n);
    };
    char buf[64];
    for (uint32_t i = 0; i < 16; ++i) {
        const uint32_t dc = 1 + i % 4;
        std::snprintf(buf, sizeof buf, "fd00:%x::/32", i);
        EBPF_TRY(add(buf, {dc, backbone, 0}));
        for (uint32_t j = 0; j < 8; ++j) {
            std::snprintf(buf, sizeof buf, "fd00:%x:%x::/48", i, j * 0x100 + 1);
            EBPF_TRY(add(buf, {dc, j % 2 ? fastbone : backbone, 0}));
            std::snprintf(buf, sizeof buf, "fd00:%x:%x:%x::/64", i, j * 0x100 + 1, j + 1);
            EBPF_TRY(add(buf, {dc, backbone, j % 4 ? POLICY_NET_NO_YATTL : 0u}));
        }
    }
    for (uint32_t i = 0; i < 32; ++i) {
        std::snprintf(buf, sizeof buf, "10.%u.0.0/16", i);
        EBPF_TRY(add(buf, {1 + i % 4, backbone, 0}));
        std::snprintf(buf, sizeof buf, "10.%u.%u.0/24", i, i + 1);
        EBPF_TRY(add(buf, {1 + i % 4, fastbone, 0}));
    }
    EBPF_TRY(add("127.0.0.0/8", {local_dc, backbone, 0}));
    EBPF_TRY(add("::1/128", {local_dc, backbone, 0}));

    auto sets = ebpf::hash<uint32_t, uint32_t>::view(*c.map("project_sets"));
    EBPF_TRY(sets);
    for (uint32_t p = 1; p <= 300; ++p) {
        EBPF_TRY(sets->update(0x4000 + p * 7, 1u << (p % 3)));
    }

    auto rules = ebpf::array<policy_rule>::view(*c.map("rules"));
    EBPF_TRY(rules);
    auto rule = [](uint32_t type, uint8_t scope, uint8_t side, uint8_t dscp) {
        policy_rule r{};
        r.net_type = type;
        r.scope = scope;
        r.set_side = side;
        r.dscp = dscp;
        return r;
    };
    policy_rule list[] = {
        rule(fastbone, POLICY_SCOPE_ANY, POLICY_SET_REMOTE, 16),
        rule(fastbone, POLICY_SCOPE_ANY, POLICY_SET_NONE, 8),
        rule(backbone, POLICY_SCOPE_SAME_DC, POLICY_SET_NONE, 32),
        rule(backbone, POLICY_SCOPE_CROSS_DC, POLICY_SET_NONE, 24),
        rule(0, POLICY_SCOPE_ANY, POLICY_SET_NONE, POLICY_DSCP_UNSET),
    };
    policy_rule& intra = list[2];
    intra.rto_init_ms = 40;
    intra.rto_min_us = 50000;
    std::strncpy(intra.cc, cc.c_str(), sizeof intra.cc - 1);
    intra.flowlabel = POLICY_FLOWLABEL_REHASH;
    intra.yattl = 1;
    for (uint32_t i = 0; i < std::size(list); ++i) {
        EBPF_TRY(rules->update(i, list[i]));
    }
    auto cfg = ebpf::array<policy_config>::view(*c.map("config"));
    EBPF_TRY(cfg);
    policy_config pc{};
    pc.local_dc = local_dc;
    pc.rule_count = uint32_t(std::size(list));
    pc.listen_dscp = 8;
    return cfg->update(0, pc);
}

// net_stat's networks: those of net_stat_bench (IPv6 /32 to /64, IPv4 /16 and /24) and the
// loopback addresses.
ebpf::result<void> fill_networks(ebpf::collection& c) {
    std::vector<std::pair<ebpf::lpm_key, net_stat_network>> nets;
    uint32_t dc = 1;
    auto add = [&](const char* prefix, uint32_t type) -> ebpf::result<void> {
        auto k = ebpf::lpm_key::parse(prefix);
        EBPF_TRY(k);
        nets.emplace_back(*k, net_stat_network{1 + dc++ % 8, type});
        return {};
    };
    char buf[64];
    for (int i = 0; i < 16; ++i) {
        std::snprintf(buf, sizeof buf, "fd00:%x::/32", i);
        EBPF_TRY(add(buf, backbone));
        for (int j = 0; j < 4; ++j) {
            std::snprintf(buf, sizeof buf, "fd00:%x:%x::/48", i, j * 0x100 + 1);
            EBPF_TRY(add(buf, fastbone));
            for (int k = 0; k < 4; ++k) {
                std::snprintf(buf, sizeof buf, "fd00:%x:%x:%x00::/56", i, j * 0x100 + 1, k + 1);
                EBPF_TRY(add(buf, backbone));
                std::snprintf(buf, sizeof buf, "fd00:%x:%x:%x01::/64", i, j * 0x100 + 1, k + 1);
                EBPF_TRY(add(buf, fastbone));
            }
        }
    }
    for (int i = 0; i < 32; ++i) {
        std::snprintf(buf, sizeof buf, "10.%d.0.0/16", i);
        EBPF_TRY(add(buf, backbone));
        std::snprintf(buf, sizeof buf, "10.%d.%d.0/24", i, i + 1);
        EBPF_TRY(add(buf, fastbone));
    }
    EBPF_TRY(add("127.0.0.0/8", backbone));
    EBPF_TRY(add("::1/128", backbone));
    return net_stat::add_networks(*c.map(NET_STAT_MAP_NETWORKS), *c.map(NET_STAT_MAP_NETWORK_LENS),
                                  nets);
}

// Loads an object; `share` gives it that collection's policy maps, as the agent gives tcp_tos
// tcp_rto's (one table to fill).
ebpf::result<ebpf::collection> load(const char* path, const char* what,
                                    ebpf::collection* share = nullptr) {
    auto spec = ebpf::collection_spec::open(path);
    if (!spec) {
        return std::move(spec).error().context(std::string("open ") + what);
    }
    if (std::strcmp(what, "tclass_lock") == 0) {
        EBPF_TRY(spec->set_variable<uint32_t>(TCLASS_LOCK_VAR_LOCK_IP_TOS, 1));
    }
    ebpf::collection_options o;
    if (share) {
        for (const char* m : {"networks", "project_sets", "rules", "config", "decisions"}) {
            o.replace_maps[m] = share->map(m);
        }
    }
    auto c = ebpf::collection::load(*spec, o);
    if (!c) {
        return std::move(c).error().context(std::string("load ") + what);
    }
    return c;
}

struct attachment {
    ebpf::collection* coll;
    const char* prog;
    uint32_t type;
};

// The kernel's run count and run time of a program (counted while BPF_ENABLE_STATS is on).
struct run_stats {
    uint64_t runs = 0, ns = 0;
};

run_stats stats_of(const ebpf::program& p) {
    bpf_prog_info raw{};
    uint32_t len = sizeof raw;
    if (!ebpf::sys::obj_get_info_by_fd(p.fd(), &raw, len)) {
        return {};
    }
    return {raw.run_cnt, raw.run_time_ns};
}

// A cgroup of the benchmark's own under the cgroup2 mount; removed on destruction (after the
// child that joined it has been reaped).
class bench_cgroup {
  public:
    static ebpf::result<bench_cgroup> create() {
        auto mnt = ebpf::cgroup2_mount();
        EBPF_TRY(mnt);
        bench_cgroup cg;
        std::string path = *mnt + "/ebpf-e2e-bench-" + std::to_string(::getpid());
        if (::mkdir(path.c_str(), 0755) != 0) {
            return ebpf::errno_error("mkdir " + path);
        }
        cg.path_ = path;
        auto f = ebpf::open_cgroup(path);
        EBPF_TRY(f);
        cg.fd_ = std::move(*f);
        return cg;
    }
    bench_cgroup() = default;
    bench_cgroup(bench_cgroup&& o) noexcept
        : path_(std::exchange(o.path_, {})), fd_(std::move(o.fd_)) {}
    bench_cgroup& operator=(bench_cgroup&&) = delete;
    ~bench_cgroup() {
        fd_.reset();
        if (!path_.empty() && ::rmdir(path_.c_str()) != 0) {
            std::fprintf(stderr, "e2e_bench: rmdir %s: %s\n", path_.c_str(), std::strerror(errno));
        }
    }
    const std::string& path() const { return path_; }
    int fd() const { return fd_.get(); }

  private:
    std::string path_;
    ebpf::fd fd_;
};

// ---- the child: clients and servers on its own loopback ----

enum class kind : uint8_t { request_response, new_connection };

struct command {
    uint8_t quit;
    kind what;
    uint8_t family;  // 4 or 6, or many_peers
    uint32_t count;
};

// IPv4 with a new peer for each connection: the client binds to and connects to one of
// kManyPeers addresses in 127.1.0.0/17 in turn (any 127/8 address is local), so both sides see a
// peer that the programs' peer and decision caches (LRUs of 16,384) no longer hold: their miss
// path, where every other case measures their hits.
constexpr uint8_t many_peers = 5;
constexpr uint32_t kManyPeers = 32768;

struct reply {
    int32_t status;  // 0, or the errno of the failure
    int64_t p50_ns;
};

constexpr uint16_t rr_port = 5001, cr_port = 5002, many_port = 5003;

int64_t now_ns() {
    timespec t;
    ::clock_gettime(CLOCK_MONOTONIC, &t);
    return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec;
}

sockaddr_storage loopback(int family, uint16_t port, socklen_t& len) {
    sockaddr_storage ss{};
    if (family == 4) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    }
    return ss;
}

// Applications set options on their sockets: this also runs tclass_lock (cgroup/setsockopt).
void no_delay(int s) {
    const int one = 1;
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

bool read_byte(int s, char& c) {
    ssize_t n;
    while ((n = ::read(s, &c, 1)) < 0 && errno == EINTR) {
    }
    return n == 1;
}

bool write_byte(int s, char c) {
    ssize_t n;
    while ((n = ::write(s, &c, 1)) < 0 && errno == EINTR) {
    }
    return n == 1;
}

// A listener on the loopback address of `family`, or -1.
int listen_on(int family, uint16_t port) {
    socklen_t len;
    sockaddr_storage a = loopback(family, port, len);
    const int s = ::socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(s, 128) != 0) {
        std::perror("e2e_bench: listen");
        return -1;
    }
    return s;
}

// Echoes one byte at a time until the peer closes (request/response), or answers one byte and
// closes (new connection), for each connection it accepts; ends when the listener is shut down.
void serve(int listener, bool one_shot) {
    for (;;) {
        const int s = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (s < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return;
        }
        no_delay(s);
        char c;
        while (read_byte(s, c) && write_byte(s, c) && !one_shot) {
        }
        ::close(s);
    }
}

// Connects to the loopback address of `family`; for many_peers, from and to the peer-th
// address of 127.1.0.0/17.
int connect_to(int family, uint16_t port, uint32_t peer = 0) {
    socklen_t len;
    sockaddr_storage a = loopback(family == many_peers ? 4 : family, port, len);
    const int s = ::socket(family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        return -1;
    }
    no_delay(s);
    if (family == many_peers) {
        auto* in = reinterpret_cast<sockaddr_in*>(&a);
        in->sin_addr.s_addr = htonl(0x7f010000u | (peer % kManyPeers));
        sockaddr_in from = *in;
        from.sin_port = 0;
        if (::bind(s, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
            ::close(s);
            return -1;
        }
    }
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), len) != 0) {
        ::close(s);
        return -1;
    }
    return s;
}

int64_t median(std::vector<int64_t>& v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
}

// One run; the latencies of the timed requests (after a warm-up) go to `lat`.
int run(const command& cmd, std::vector<int64_t>& lat) {
    lat.clear();
    const uint32_t warm = std::max<uint32_t>(cmd.count / 20, 10);
    if (cmd.what == kind::request_response) {
        const int s = connect_to(cmd.family, rr_port);
        if (s < 0) {
            return errno;
        }
        char c = 'x';
        for (uint32_t i = 0; i < warm + cmd.count; ++i) {
            const int64_t t0 = now_ns();
            if (!write_byte(s, c) || !read_byte(s, c)) {
                const int e = errno ? errno : EPIPE;
                ::close(s);
                return e;
            }
            if (i >= warm) {
                lat.push_back(now_ns() - t0);
            }
        }
        ::close(s);
        return 0;
    }
    static uint32_t next_peer = 0;  // goes on from run to run: a peer comes back after kManyPeers
    for (uint32_t i = 0; i < warm + cmd.count; ++i) {
        const int64_t t0 = now_ns();
        const int s =
            connect_to(cmd.family, cmd.family == many_peers ? many_port : cr_port, next_peer++);
        char c = 'x';
        if (s < 0 || !write_byte(s, c) || !read_byte(s, c)) {
            const int e = errno ? errno : EPIPE;
            if (s >= 0) {
                ::close(s);
            }
            return e;
        }
        ::close(s);
        if (i >= warm) {
            lat.push_back(now_ns() - t0);
        }
    }
    return 0;
}

// Brings up lo in the child's fresh network namespace.
bool loopback_up() {
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    bool ok = s >= 0 && ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
    ifr.ifr_flags = short(ifr.ifr_flags | IFF_UP);
    ok = ok && ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
    if (s >= 0) {
        ::close(s);
    }
    return ok;
}

// The child's body: joins the cgroup, then answers commands until told to quit.
int child_main(const std::string& cgroup, int cpu, int cmd_fd, int reply_fd) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (::sched_setaffinity(0, sizeof set, &set) != 0) {
            std::perror("e2e_bench: pin to the CPU");
            return 105;
        }
    }
    FILE* f = std::fopen((cgroup + "/cgroup.procs").c_str(), "we");
    if (!f || std::fprintf(f, "%d\n", ::getpid()) < 0 || std::fclose(f) != 0) {
        std::perror("e2e_bench: join the cgroup");
        return 102;
    }
    if (::unshare(CLONE_NEWNET) != 0 || !loopback_up()) {
        std::perror("e2e_bench: a network namespace with lo up");
        return 103;
    }
    int listeners[5];
    std::vector<std::thread> servers;
    int i = 0;
    for (int family : {4, 6}) {
        for (uint16_t port : {rr_port, cr_port}) {
            listeners[i] = listen_on(family, port);
            if (listeners[i] < 0) {
                return 104;
            }
            servers.emplace_back(serve, listeners[i], port == cr_port);
            ++i;
        }
    }
    // The many-peers server: every address of lo (only lo exists in this namespace).
    {
        const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in any{};
        any.sin_family = AF_INET;
        any.sin_port = htons(many_port);
        const int one = 1;
        ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0 ||
            ::listen(s, 128) != 0) {
            std::perror("e2e_bench: listen");
            return 104;
        }
        listeners[i] = s;
        servers.emplace_back(serve, s, true);
    }
    std::vector<int64_t> lat;
    command cmd;
    while (::read(cmd_fd, &cmd, sizeof cmd) == sizeof cmd && !cmd.quit) {
        reply r{};
        r.status = run(cmd, lat);
        r.p50_ns = r.status == 0 && !lat.empty() ? median(lat) : 0;
        if (::write(reply_fd, &r, sizeof r) != sizeof r) {
            break;
        }
    }
    for (int l : listeners) {
        ::shutdown(l, SHUT_RDWR);  // wakes the accept()
    }
    for (auto& t : servers) {
        t.join();
    }
    for (int l : listeners) {
        ::close(l);
    }
    return 0;
}

// ---- the parent ----

volatile sig_atomic_t interrupted = 0;

// The child process and its pipes; killed and reaped on destruction if still running.
class child_process {
  public:
    bool start(const std::string& cgroup, int cpu) {
        int to[2], from[2];
        if (::pipe2(to, O_CLOEXEC) != 0) {
            return false;
        }
        if (::pipe2(from, O_CLOEXEC) != 0) {
            ::close(to[0]);
            ::close(to[1]);
            return false;
        }
        std::fflush(nullptr);
        pid_ = ::fork();
        if (pid_ == 0) {
            ::close(to[1]);
            ::close(from[0]);
            ::_exit(child_main(cgroup, cpu, to[0], from[1]));
        }
        ::close(to[0]);
        ::close(from[1]);
        cmd_ = to[1];
        reply_ = from[0];
        return pid_ > 0;
    }
    ~child_process() {
        if (pid_ > 0) {
            const command quit{1, kind::request_response, 0, 0};
            if (::write(cmd_, &quit, sizeof quit) != sizeof quit || !wait(5000)) {
                ::kill(pid_, SIGKILL);
                wait(-1);
            }
        }
        for (int f : {cmd_, reply_}) {
            if (f >= 0) {
                ::close(f);
            }
        }
    }

    // Runs one command in the child; the run's p50 in ns, or -1 (reported).
    int64_t run(const command& cmd) {
        if (::write(cmd_, &cmd, sizeof cmd) != sizeof cmd) {
            std::fprintf(stderr, "e2e_bench: the child is gone\n");
            return -1;
        }
        pollfd p{reply_, POLLIN, 0};
        reply r{};
        if (::poll(&p, 1, 60000) != 1 || ::read(reply_, &r, sizeof r) != sizeof r) {
            std::fprintf(stderr, "e2e_bench: no answer from the child%s\n",
                         interrupted ? " (interrupted)" : "");
            return -1;
        }
        if (r.status != 0) {
            std::fprintf(stderr, "e2e_bench: the child's run failed: %s\n",
                         std::strerror(r.status));
            return -1;
        }
        return r.p50_ns;
    }

  private:
    // Reaps the child, waiting up to `ms` (-1: forever); true when it is gone.
    bool wait(int ms) {
        for (int waited = 0;; waited += 10) {
            int status;
            const pid_t r = ::waitpid(pid_, &status, ms < 0 ? 0 : WNOHANG);
            if (r == pid_ || (r < 0 && errno != EINTR)) {
                pid_ = 0;
                return true;
            }
            if (ms >= 0 && waited >= ms) {
                return false;
            }
            if (r == 0) {
                ::usleep(10000);
            }
        }
    }

    pid_t pid_ = 0;
    int cmd_ = -1;
    int reply_ = -1;
};

int64_t median_of(std::vector<int64_t> v) {
    return v.empty() ? 0 : median(v);
}

double median_of(std::vector<double> v) {
    if (v.empty()) {
        return 0;
    }
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
}

int fail(const ebpf::error& e) {
    std::fprintf(stderr, "e2e_bench: %s\n", e.full_message().c_str());
    return 2;
}

std::string default_cc() {
    char cc[32] = {};
    FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_congestion_control", "re");
    if (f) {
        if (std::fscanf(f, "%31s", cc) != 1) {
            cc[0] = '\0';
        }
        std::fclose(f);
    }
    return cc;
}

}  // namespace

int main(int argc, char** argv) {
    int pairs = 30;
    uint32_t round_trips = 5000, connections = 1000;
    // By default the programs the agent's default config attaches; --all adds tclass_lock and
    // the per-cgroup net_stat_tx/rx, whose counts the dc programs' map already holds.
    std::string only = ",tcp_rto,tcp_tos,net_stat_dc_tx,net_stat_dc_rx,";
    int cpu = -1;
    {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (::sched_getaffinity(0, sizeof set, &set) == 0) {
            for (int i = 0; i < CPU_SETSIZE; ++i) {
                if (CPU_ISSET(i, &set)) {
                    cpu = i;
                }
            }
        }
    }
    bool stats = false;
    int positional = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.rfind("--only=", 0) == 0) {
            only = "," + a.substr(7) + ",";
        } else if (a == "--all") {
            only = "";
        } else if (a == "--stats") {
            stats = true;
        } else if (a.rfind("--cpu=", 0) == 0) {
            cpu = std::atoi(a.c_str() + 6);
        } else if (positional == 0) {
            pairs = std::max(1, std::atoi(argv[i])), ++positional;
        } else if (positional == 1) {
            round_trips = uint32_t(std::max(1, std::atoi(argv[i]))), ++positional;
        } else {
            connections = uint32_t(std::max(1, std::atoi(argv[i]))), ++positional;
        }
    }

    // A child that died must show as a failed write, not kill the parent before it cleans up.
    ::signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = [](int) {
        interrupted = 1;
    };
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        ::sigaction(sig, &sa, nullptr);  // no SA_RESTART: a blocked read returns and we clean up
    }

    auto tcp_rto = load(EBPF_BENCH_TCP_RTO_OBJECT, "tcp_rto");
    if (!tcp_rto) {
        return fail(tcp_rto.error());
    }
    auto tcp_tos = load(EBPF_BENCH_TCP_TOS_OBJECT, "tcp_tos", &*tcp_rto);
    auto tclass_lock = load(EBPF_BENCH_TCLASS_LOCK_OBJECT, "tclass_lock");
    auto net_stat = load(EBPF_BENCH_NET_STAT_OBJECT, "net_stat");
    auto floor = load(EBPF_BENCH_FLOOR_OBJECT, "e2e_floor");
    for (auto* c : {&tcp_rto, &tcp_tos, &tclass_lock, &net_stat, &floor}) {
        if (!*c) {
            return fail(c->error());
        }
    }
    const std::string cc = default_cc();
    for (auto* c : {&tcp_rto, &tcp_tos}) {
        if (auto r = fill_policy(**c, cc); !r) {
            return fail(r.error());
        }
    }
    if (auto r = fill_networks(*net_stat); !r) {
        return fail(r.error());
    }
    std::vector<attachment> all = {
        {&*tcp_rto, "tcp_rto", BPF_CGROUP_SOCK_OPS},
        {&*tcp_tos, "tcp_tos", BPF_CGROUP_SOCK_OPS},
        {&*tclass_lock, "tclass_lock", BPF_CGROUP_SETSOCKOPT},
        {&*net_stat, "net_stat_tx", BPF_CGROUP_INET_EGRESS},
        {&*net_stat, "net_stat_rx", BPF_CGROUP_INET_INGRESS},
        {&*net_stat, "net_stat_dc_tx", BPF_CGROUP_INET_EGRESS},
        {&*net_stat, "net_stat_dc_rx", BPF_CGROUP_INET_INGRESS},
    };
    std::vector<attachment> chosen;
    std::string names;
    for (const auto& a : all) {
        if (a.coll->program(a.prog) == nullptr) {
            std::fprintf(stderr, "e2e_bench: no program %s\n", a.prog);
            return 2;
        }
        if (only.empty() || only.find("," + std::string(a.prog) + ",") != std::string::npos) {
            chosen.push_back(a);
            names += (names.empty() ? "" : ", ") + std::string(a.prog);
        }
    }
    if (chosen.empty()) {
        std::fprintf(stderr, "e2e_bench: --only names none of the programs\n");
        return 2;
    }

    auto cg = bench_cgroup::create();
    if (!cg) {
        return fail(cg.error());
    }
    std::vector<ebpf::cgroup_link> links;
    // The chosen programs, or (floor) a program that does nothing at each one's hook.
    auto attach = [&](bool with_floor) -> ebpf::result<void> {
        for (const auto& a : chosen) {
            const char* floor_prog = a.type == BPF_CGROUP_SOCK_OPS      ? "floor_sockops"
                                     : a.type == BPF_CGROUP_SETSOCKOPT  ? "floor_setsockopt"
                                     : a.type == BPF_CGROUP_INET_EGRESS ? "floor_egress"
                                                                        : "floor_ingress";
            const ebpf::program* p =
                with_floor ? floor->program(floor_prog) : a.coll->program(a.prog);
            if (p == nullptr) {
                return ebpf::error(ENOENT, "e2e_floor", std::string("no program ") + floor_prog);
            }
            auto l = ebpf::cgroup_link::attach(cg->fd(), *p, a.type);
            EBPF_TRY(l);
            links.push_back(std::move(*l));
        }
        return {};
    };

    struct bench_case {
        const char* name;
        kind what;
        uint8_t family;
        double target;
        std::vector<int64_t> none, floor, attached;
        std::vector<double> ratios, floor_ratios, over_floor;
        std::vector<run_stats> cost;  // per chosen program, over the attached runs
        uint64_t requests = 0;        // in the attached runs
    };
    auto make_case = [](const char* name, kind what, uint8_t family, double target) {
        bench_case c;
        c.name = name;
        c.what = what;
        c.family = family;
        c.target = target;
        return c;
    };
    bench_case cases[] = {
        make_case("request/response, IPv4", kind::request_response, 4, 1.02),
        make_case("request/response, IPv6", kind::request_response, 6, 1.02),
        make_case("new connection, IPv4", kind::new_connection, 4, 1.05),
        make_case("new connection, IPv6", kind::new_connection, 6, 1.05),
        make_case("new conn., 32768 v4 peers", kind::new_connection, many_peers, 1.05),
    };

    ebpf::fd stats_fd;
    if (stats) {
        auto f = ebpf::sys::enable_stats(BPF_STATS_RUN_TIME);
        if (!f) {
            return fail(f.error());
        }
        stats_fd = std::move(*f);
    }
    for (auto& c : cases) {
        c.cost.resize(chosen.size());
    }

    const int64_t start = now_ns();
    int status = 0;
    {
        // Reaped before the cgroup is removed. Started before any link exists: a link fd
        // inherited by the child would keep its program attached after the parent's detach.
        child_process child;
        if (!child.start(cg->path(), cpu)) {
            std::perror("e2e_bench: start the child");
            return 2;
        }
        // Pair -1 warms up (caches, the listeners' queues) and is not counted.
        for (int pair = -1; pair < pairs && status == 0; ++pair) {
            for (auto& c : cases) {
                const command cmd{0, c.what, c.family,
                                  c.what == kind::request_response ? round_trips : connections};
                enum { none, with_floor, with_programs };
                int64_t p50[3] = {};
                for (int k = 0; k < 3 && status == 0; ++k) {
                    const int state = (k + pair + 3) % 3;
                    const bool attached = state == with_programs;
                    links.clear();
                    if (state != none) {
                        if (auto r = attach(state == with_floor); !r) {
                            status = fail(r.error());
                            break;
                        }
                    }
                    std::vector<run_stats> before;
                    for (const auto& a : chosen) {
                        before.push_back(stats_of(*a.coll->program(a.prog)));
                    }
                    p50[state] = interrupted ? -1 : child.run(cmd);
                    if (attached && pair >= 0) {
                        for (size_t i = 0; i < chosen.size(); ++i) {
                            const run_stats after =
                                stats_of(*chosen[i].coll->program(chosen[i].prog));
                            c.cost[i].runs += after.runs - before[i].runs;
                            c.cost[i].ns += after.ns - before[i].ns;
                        }
                        c.requests += cmd.count + std::max<uint32_t>(cmd.count / 20, 10);
                    }
                    if (p50[state] <= 0) {
                        status = 2;
                    }
                }
                if (status != 0) {
                    break;
                }
                if (pair >= 0) {
                    c.none.push_back(p50[none]);
                    c.floor.push_back(p50[with_floor]);
                    c.attached.push_back(p50[with_programs]);
                    c.ratios.push_back(double(p50[with_programs]) / double(p50[none]));
                    c.floor_ratios.push_back(double(p50[with_floor]) / double(p50[none]));
                    c.over_floor.push_back(double(p50[with_programs]) / double(p50[with_floor]));
                }
            }
        }
        links.clear();
    }
    if (status != 0) {
        return status;
    }

    std::printf(
        "e2e: 1-byte TCP request/response on loopback from a cgroup, attached (%s) vs none, and vs "
        "the floor (programs that do nothing, at the same hooks)\n"
        "%d pairs, per run %u round trips (request/response) or %u connections (new "
        "connection), %s, %.0f s\n",
        names.c_str(), pairs, round_trips, connections,
        cpu >= 0 ? ("on CPU " + std::to_string(cpu)).c_str() : "unpinned",
        double(now_ns() - start) / 1e9);
    std::printf("  %-24s %11s %11s %11s %7s %7s %7s %-19s %7s %11s\n", "", "p50 none", "p50 floor",
                "p50 attached", "ratio", "min", "max", "", "floor", "over floor");
    bool ok = true;
    for (auto& c : cases) {
        const double ratio = median_of(c.ratios);
        const bool pass = ratio <= c.target;
        ok = ok && pass;
        std::printf(
            "  %-24s %8.2f us %8.2f us %9.2f us  %6.3f  %6.3f  %6.3f  (target %.2f) %s  %6.3f  "
            "%6.3f\n",
            c.name, double(median_of(c.none)) / 1e3, double(median_of(c.floor)) / 1e3,
            double(median_of(c.attached)) / 1e3, ratio,
            *std::min_element(c.ratios.begin(), c.ratios.end()),
            *std::max_element(c.ratios.begin(), c.ratios.end()), c.target, pass ? "PASS" : "FAIL",
            median_of(c.floor_ratios), median_of(c.over_floor));
    }
    // The loopback peers must have matched the intra-DC rule, or the programs did less than
    // their full work.
    if (only.empty() || only.find(",tcp_rto,") != std::string::npos) {
        auto v = ebpf::percpu_array<uint64_t>::view(*tcp_rto->map("tcp_rto_stats"));
        auto given = v ? v->sum(TCP_RTO_STAT_RTO_INIT) : decltype(v->sum(0))(v.error());
        const uint64_t n = given && *given ? **given : 0;
        std::printf("  tcp_rto gave %llu connections the rule's initial RTO%s\n",
                    (unsigned long long)n, n ? "" : ": the policy did not match (FAIL)");
        ok = ok && n > 0;
    }
    if (stats) {
        std::printf(
            "with --stats (the ratios above include the statistics' own cost): per request, "
            "runs and ns of each program\n  %-16s",
            "");
        for (const auto& c : cases) {
            std::printf(" %24s", c.name);
        }
        std::printf("\n");
        for (size_t i = 0; i < chosen.size(); ++i) {
            std::printf("  %-16s", chosen[i].prog);
            for (const auto& c : cases) {
                const double n = double(std::max<uint64_t>(c.requests, 1));
                std::printf("    %5.2f runs %7.0f ns", double(c.cost[i].runs) / n,
                            double(c.cost[i].ns) / n);
            }
            std::printf("\n");
        }
    }
    return ok ? 0 : 1;
}
