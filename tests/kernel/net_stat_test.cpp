// net_stat (cgroup_skb egress/ingress) on the running kernel: the counters equal the bytes and
// packets that crossed a veth between two network namespaces the test creates, per cgroup and
// per the peer's datacenter; a full map is counted; the programs never drop.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "../../bpf/include/net_stat.h"
#include "../../bpf/include/net_stat_networks.hpp"
#include "ebpf/ebpf.hpp"
#include "kernel_fixture.hpp"

inline net_stat_value& operator+=(net_stat_value& a, const net_stat_value& b) {
    a.bytes += b.bytes;
    a.packets += b.packets;
    return a;
}
inline net_stat_counters& operator+=(net_stat_counters& a, const net_stat_counters& b) {
    a.rx_bytes += b.rx_bytes;
    a.rx_packets += b.rx_packets;
    a.tx_bytes += b.tx_bytes;
    a.tx_packets += b.tx_packets;
    return a;
}
// Counters with only the receive or only the transmit side set.
inline net_stat_counters rx_only(const net_stat_value& v) {
    return {v.bytes, v.packets, 0, 0};
}
inline net_stat_counters tx_only(const net_stat_value& v) {
    return {0, 0, v.bytes, v.packets};
}
inline net_stat_value rx_of(const net_stat_counters& c) {
    return {c.rx_bytes, c.rx_packets};
}
inline net_stat_value tx_of(const net_stat_counters& c) {
    return {c.tx_bytes, c.tx_packets};
}

inline bool operator<(const net_stat_key& x, const net_stat_key& y) {
    return x.cgroup_id < y.cgroup_id;
}
inline bool operator<(const net_stat_dc_key& x, const net_stat_dc_key& y) {
    return std::tie(x.cgroup_id, x.dc, x.net_type) < std::tie(y.cgroup_id, y.dc, y.net_type);
}
inline bool operator==(const net_stat_key& x, const net_stat_key& y) {
    return x.cgroup_id == y.cgroup_id;
}
inline bool operator==(const net_stat_dc_key& x, const net_stat_dc_key& y) {
    return !(x < y) && !(y < x);
}
inline bool operator==(const net_stat_value& x, const net_stat_value& y) {
    return x.bytes == y.bytes && x.packets == y.packets;
}
inline bool operator==(const net_stat_counters& x, const net_stat_counters& y) {
    return x.rx_bytes == y.rx_bytes && x.rx_packets == y.rx_packets && x.tx_bytes == y.tx_bytes &&
           x.tx_packets == y.tx_packets;
}
inline std::ostream& operator<<(std::ostream& o, const net_stat_value& v) {
    return o << "{bytes " << v.bytes << ", packets " << v.packets << "}";
}
inline std::ostream& operator<<(std::ostream& o, const net_stat_counters& c) {
    return o << "{rx " << c.rx_bytes << " bytes " << c.rx_packets << " packets, tx " << c.tx_bytes
             << " bytes " << c.tx_packets << " packets}";
}
inline std::ostream& operator<<(std::ostream& o, const net_stat_dc_key& k) {
    return o << "{cgroup " << k.cgroup_id << ", dc " << k.dc << ", net type " << k.net_type << "}";
}
inline std::ostream& operator<<(std::ostream& o, const net_stat_key& k) {
    return o << "{cgroup " << k.cgroup_id << "}";
}

namespace ebpf {
namespace {

using test::test_cgroup;

int sh(const std::string& cmd) {
    int r = std::system(cmd.c_str());
    return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

uint64_t cgroup_id(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// A network namespace of the test's own (ip netns add); deleting it removes its veth end.
class test_netns {
  public:
    explicit test_netns(const std::string& tag)
        : name_("ebpf-test-" + std::to_string(::getpid()) + "-" + tag) {
        if (sh("ip netns add " + name_) != 0) {
            ADD_FAILURE() << "ip netns add " << name_;
            name_.clear();
        }
    }
    ~test_netns() {
        if (!name_.empty() && sh("ip netns del " + name_) != 0) {
            ADD_FAILURE() << "ip netns del " << name_;
        }
    }
    test_netns(const test_netns&) = delete;
    test_netns& operator=(const test_netns&) = delete;

    const std::string& name() const { return name_; }
    // Runs a command inside the namespace; returns its exit status.
    int run(const std::string& cmd) const { return sh("ip netns exec " + name_ + " " + cmd); }

  private:
    std::string name_;
};

// Moves the calling process into a network namespace made by ip netns.
bool enter_netns(const std::string& name) {
    int f = ::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
    if (f < 0) {
        return false;
    }
    const bool ok = ::setns(f, CLONE_NEWNET) == 0;
    ::close(f);
    return ok;
}

// A child cgroup under a test cgroup, removed on destruction.
class sub_cgroup {
  public:
    sub_cgroup(const test_cgroup& parent, const std::string& name)
        : path_(parent.path() + "/" + name) {
        if (parent.path().empty() || ::mkdir(path_.c_str(), 0755) != 0) {
            ADD_FAILURE() << "mkdir " << path_ << ": " << std::strerror(errno);
            path_.clear();
        }
    }
    ~sub_cgroup() {
        if (!path_.empty() && ::rmdir(path_.c_str()) != 0) {
            ADD_FAILURE() << "rmdir " << path_ << ": " << std::strerror(errno);
        }
    }
    sub_cgroup(const sub_cgroup&) = delete;
    sub_cgroup& operator=(const sub_cgroup&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// A child process in a cgroup and a network namespace; killed and reaped on destruction if it
// is still running. The body gets a pipe end to report that it is ready (one byte).
class child_process {
  public:
    child_process(const std::string& cgroup, const std::string& netns,
                  const std::function<int(int ready_fd)>& body) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) {
            ADD_FAILURE() << "pipe2";
            return;
        }
        std::fflush(nullptr);
        pid_ = ::fork();
        if (pid_ == 0) {
            ::close(p[0]);
            FILE* f = std::fopen((cgroup + "/cgroup.procs").c_str(), "we");
            if (!f || std::fprintf(f, "%d\n", ::getpid()) < 0 || std::fclose(f) != 0) {
                ::_exit(102);
            }
            if (!enter_netns(netns)) {
                ::_exit(104);
            }
            ::_exit(body(p[1]));
        }
        ::close(p[1]);
        ready_ = p[0];
        if (pid_ < 0) {
            ADD_FAILURE() << "fork";
        }
    }
    ~child_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait();
        }
        if (ready_ >= 0) {
            ::close(ready_);
        }
    }
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    // Waits up to 5 s for the child's ready byte.
    bool ready() {
        pollfd p{ready_, POLLIN, 0};
        char c;
        return ::poll(&p, 1, 5000) == 1 && ::read(ready_, &c, 1) == 1;
    }
    // Waits for the child to exit and returns its exit status (103: killed by a signal).
    int wait() {
        if (pid_ <= 0) {
            return 101;
        }
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 103;
    }

  private:
    pid_t pid_ = -1;
    int ready_ = -1;
};

void signal_ready(int fd) {
    char c = 1;
    (void)!::write(fd, &c, 1);
}

// A socket address from text: IPv4 ("192.0.2.1") or IPv6, including v4-mapped.
struct address {
    sockaddr_storage ss{};
    socklen_t len = 0;
    int family() const { return ss.ss_family; }
    const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }
};
address make_address(const std::string& text, uint16_t port) {
    address a;
    auto* a4 = reinterpret_cast<sockaddr_in*>(&a.ss);
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    if (::inet_pton(AF_INET, text.c_str(), &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        a.len = sizeof *a4;
    } else if (::inet_pton(AF_INET6, text.c_str(), &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        a.len = sizeof *a6;
    }
    return a;
}

constexpr uint16_t udp_port = 4242;
constexpr uint16_t tcp_port = 4243;

// The operators' networks in the tests: two datacenters, a covering prefix, and unknown peers
// in fd00:1::/64 and 192.0.2.128/25.
constexpr uint32_t backbone = 1, fastbone = 2;
const std::vector<std::tuple<std::string, net_stat_network>> test_networks = {
    {"2001:db8:1::/48", {1, backbone}}, {"2001:db8:2::/48", {2, fastbone}},
    {"2001:db8::/32", {3, backbone}},   {"192.0.2.0/25", {1, backbone}},
    {"198.51.100.0/24", {2, fastbone}},
};

// Two namespaces joined by a veth (va in a, vb in b), with fixed MACs and permanent neighbour
// entries so that the link carries nothing but the test's own packets.
class NetStatTest : public test::KernelTest {
  protected:
    // The address pairs (a side, b side) on the link, v6 only when `ipv6`.
    static std::vector<std::pair<std::string, std::string>> pairs(bool ipv6) {
        std::vector<std::pair<std::string, std::string>> p = {
            {"192.0.2.1", "192.0.2.2"},
            {"192.0.2.201", "192.0.2.202"},
            {"198.51.100.1", "198.51.100.2"},
        };
        if (ipv6) {
            p.insert(p.end(), {{"2001:db8:1::1", "2001:db8:1::2"},
                               {"2001:db8:2::1", "2001:db8:2::2"},
                               {"fd00:1::1", "fd00:1::2"}});
        }
        return p;
    }

    void make_link(bool ipv6) {
        ASSERT_FALSE(a_.name().empty() || b_.name().empty());
        if (!ipv6) {
            // No IPv6 at all: not even MLD reports cross the link.
            for (const test_netns* n : {&a_, &b_}) {
                ASSERT_EQ(n->run("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                                 "net.ipv6.conf.default.disable_ipv6=1"),
                          0);
            }
        }
        ASSERT_EQ(sh("ip link add va address 02:00:00:00:00:0a netns " + a_.name() +
                     " type veth peer name vb address 02:00:00:00:00:0b netns " + b_.name()),
                  0);
        for (const auto& [x, y] : pairs(ipv6)) {
            const bool v6 = x.find(':') != std::string::npos;
            const std::string len = v6 ? "/64 nodad" : "/24";
            ASSERT_EQ(sh("ip -n " + a_.name() + " addr add " + x + len + " dev va"), 0);
            ASSERT_EQ(sh("ip -n " + b_.name() + " addr add " + y + len + " dev vb"), 0);
            ASSERT_EQ(sh("ip -n " + a_.name() + " neigh replace " + y +
                         " lladdr 02:00:00:00:00:0b dev va nud permanent"),
                      0);
            ASSERT_EQ(sh("ip -n " + b_.name() + " neigh replace " + x +
                         " lladdr 02:00:00:00:00:0a dev vb nud permanent"),
                      0);
        }
        for (const test_netns* n : {&a_, &b_}) {
            ASSERT_EQ(sh("ip -n " + n->name() + " link set lo up"), 0);
        }
        ASSERT_EQ(sh("ip -n " + a_.name() + " link set va up"), 0);
        ASSERT_EQ(sh("ip -n " + b_.name() + " link set vb up"), 0);
    }

    // Loads net_stat (counter maps sized `entries` when non-zero), fills the networks and
    // attaches all four programs to the test cgroup.
    void attach(uint32_t entries = 0) {
        auto spec = collection_spec::open(EBPF_AGENT_OBJECT_NET_STAT);
        ASSERT_OK(spec);
        if (entries) {
            for (const char* m : {NET_STAT_MAP_CGROUP, NET_STAT_MAP_DC, NET_STAT_MAP_DC_1}) {
                ASSERT_NE(spec->map(m), nullptr) << m;
                spec->map(m)->max_entries = entries;
            }
        }
        auto c = collection::load(*spec);
        ASSERT_OK(c);
        coll_ = std::move(*c);
        std::vector<std::pair<lpm_key, net_stat_network>> nets;
        for (const auto& [prefix, net] : test_networks) {
            auto k = lpm_key::parse(prefix);
            ASSERT_OK(k);
            nets.emplace_back(*k, net);
        }
        ASSERT_NE(coll_.map(NET_STAT_MAP_NETWORKS), nullptr);
        ASSERT_NE(coll_.map(NET_STAT_MAP_NETWORK_LENS), nullptr);
        ASSERT_OK(net_stat::add_networks(*coll_.map(NET_STAT_MAP_NETWORKS),
                                         *coll_.map(NET_STAT_MAP_NETWORK_LENS), nets));
        const std::pair<const char*, uint32_t> progs[] = {
            {"net_stat_tx", BPF_CGROUP_INET_EGRESS},
            {"net_stat_rx", BPF_CGROUP_INET_INGRESS},
            {"net_stat_dc_tx", BPF_CGROUP_INET_EGRESS},
            {"net_stat_dc_rx", BPF_CGROUP_INET_INGRESS},
        };
        for (const auto& [name, type] : progs) {
            program* p = coll_.program(name);
            ASSERT_NE(p, nullptr) << name;
            auto l = cgroup_link::attach(cg_.fd(), *p, type);
            ASSERT_OK(l);
            links_.push_back(std::move(*l));
        }
    }

    void TearDown() override {
        links_.clear();
        coll_ = collection();
        test::KernelTest::TearDown();
    }

    // Every key of a counter map with its sum over the CPUs.
    template <class K>
    std::map<K, net_stat_counters> read(const char* name) {
        std::map<K, net_stat_counters> out;
        auto m = percpu_hash<K, net_stat_counters>::view(*coll_.map(name));
        EXPECT_OK(m);
        if (!m) {
            return out;
        }
        auto keys = m->keys();
        EXPECT_OK(keys);
        for (const K& k : keys.value_or(std::vector<K>{})) {
            auto v = m->sum(k);
            EXPECT_OK(v);
            if (v && *v) {
                out[k] = **v;
            }
        }
        return out;
    }
    // The two dc maps together; each key must be in the half net_stat_dc_shard() gives it.
    std::map<net_stat_dc_key, net_stat_counters> read_dc() {
        std::map<net_stat_dc_key, net_stat_counters> out;
        for (int half = 0; half < 2; ++half) {
            for (const auto& [k, v] :
                 read<net_stat_dc_key>(half ? NET_STAT_MAP_DC_1 : NET_STAT_MAP_DC)) {
                EXPECT_EQ(net_stat_dc_shard(&k), half)
                    << "cgroup " << k.cgroup_id << " dc " << k.dc << " in the wrong half";
                out[k] = v;
            }
        }
        return out;
    }
    net_stat_value error_count(uint32_t index) {
        auto m = percpu_array<net_stat_value>::view(*coll_.map(NET_STAT_MAP_ERRORS));
        EXPECT_OK(m);
        net_stat_value total{};
        if (m) {
            std::vector<net_stat_value> per_cpu(m->cpus());
            auto found = m->lookup(index, std::span<net_stat_value>(per_cpu));
            EXPECT_OK(found);
            for (const auto& v : per_cpu) {
                total += v;
            }
        }
        return total;
    }

    test_cgroup cg_;
    test_netns a_{"a"};
    test_netns b_{"b"};
    collection coll_;
    std::vector<cgroup_link> links_;
};

// One batch of datagrams of one size from a local address to a peer.
struct datagrams {
    std::string from, to;
    uint32_t payload = 0;
    uint32_t count = 0;
};

// Sends the batches from sockets of `family` (AF_INET6 with v4-mapped addresses too);
// returns 0 when every datagram was sent.
int send_datagrams(int family, const std::vector<datagrams>& batches) {
    for (const auto& b : batches) {
        const int s = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        const address from = make_address(b.from, 0);
        const address to = make_address(b.to, udp_port);
        if (s < 0 || ::bind(s, from.sa(), from.len) != 0) {
            return 10;
        }
        std::vector<char> payload(b.payload, 'x');
        for (uint32_t i = 0; i < b.count; ++i) {
            if (::sendto(s, payload.data(), payload.size(), 0, to.sa(), to.len) !=
                ssize_t(payload.size())) {
                return 11;
            }
        }
        ::close(s);
    }
    return 0;
}

// A dual-stack UDP server: receives `expected` datagrams (5 s at most); 0 when all arrived.
int receive_datagrams(int ready_fd, uint32_t expected) {
    const int s = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const int off = 0;
    const int rcvbuf = 4 << 20;
    const timeval timeout{5, 0};
    const address any = make_address("::", udp_port);
    if (s < 0 || ::setsockopt(s, SOL_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0 ||
        ::setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0 ||
        ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
        ::bind(s, any.sa(), any.len) != 0) {
        return 20;
    }
    signal_ready(ready_fd);
    char buf[2048];
    for (uint32_t i = 0; i < expected; ++i) {
        if (::recv(s, buf, sizeof buf, 0) < 0) {
            return 21;
        }
    }
    return 0;
}

// Which sockets send: IPv6, IPv4, or IPv6 sockets to v4-mapped addresses.
enum class family { ipv6, ipv4, v4_mapped };
const char* family_name(family f) {
    return f == family::ipv6 ? "Ipv6" : f == family::ipv4 ? "Ipv4" : "V4Mapped";
}
void PrintTo(family f, std::ostream* os) {
    *os << family_name(f);
}

class NetStatUdpTest : public NetStatTest, public ::testing::WithParamInterface<family> {};

TEST_P(NetStatUdpTest, CountsEqualTheDatagramsPerCgroupAndDatacenter) {
    ASSERT_NO_FATAL_FAILURE(make_link(true));
    sub_cgroup srv(cg_, "srv");
    ASSERT_FALSE(srv.path().empty());
    ASSERT_NO_FATAL_FAILURE(attach());

    // Each batch goes to the peer's address in one network and comes from ours in the same
    // network, so the receiver files it under the same datacenter.
    struct expected_batch {
        datagrams d;
        uint32_t dc, net_type;
    };
    std::vector<expected_batch> batches;
    uint32_t header = 0;
    int sock_family = AF_INET6;
    switch (GetParam()) {
        case family::ipv6:
            header = 40 + 8;
            batches = {{{"2001:db8:1::1", "2001:db8:1::2", 100, 3}, 1, backbone},
                       {{"2001:db8:2::1", "2001:db8:2::2", 1000, 2}, 2, fastbone},
                       {{"fd00:1::1", "fd00:1::2", 10, 5}, 0, 0}};
            break;
        case family::ipv4:
            header = 20 + 8;
            sock_family = AF_INET;
            batches = {{{"192.0.2.1", "192.0.2.2", 100, 3}, 1, backbone},
                       {{"198.51.100.1", "198.51.100.2", 1000, 2}, 2, fastbone},
                       {{"192.0.2.201", "192.0.2.202", 10, 5}, 0, 0}};
            break;
        case family::v4_mapped:
            header = 20 + 8;
            batches = {{{"::ffff:192.0.2.1", "::ffff:192.0.2.2", 100, 3}, 1, backbone},
                       {{"::ffff:198.51.100.1", "::ffff:198.51.100.2", 1000, 2}, 2, fastbone},
                       {{"::ffff:192.0.2.201", "::ffff:192.0.2.202", 10, 5}, 0, 0}};
            break;
    }
    uint32_t total_count = 0;
    std::vector<datagrams> to_send;
    for (const auto& b : batches) {
        total_count += b.d.count;
        to_send.push_back(b.d);
    }

    {
        child_process server(srv.path(), b_.name(),
                             [&](int ready) { return receive_datagrams(ready, total_count); });
        ASSERT_TRUE(server.ready());
        child_process client(cg_.path(), a_.name(),
                             [&](int) { return send_datagrams(sock_family, to_send); });
        EXPECT_EQ(client.wait(), 0);
        // Every datagram arrived: the programs let the traffic through.
        EXPECT_EQ(server.wait(), 0);
    }

    // The client's keys count what it sent (tx), the server's what it received (rx).
    const uint64_t client_cg = cgroup_id(cg_.path());
    const uint64_t server_cg = cgroup_id(srv.path());
    std::map<net_stat_dc_key, net_stat_counters> want_dc;
    net_stat_value total{};
    for (const auto& b : batches) {
        const net_stat_value v{uint64_t(b.d.payload + header) * b.d.count, b.d.count};
        want_dc[{client_cg, b.dc, b.net_type}] += tx_only(v);
        want_dc[{server_cg, b.dc, b.net_type}] += rx_only(v);
        total += v;
    }
    EXPECT_EQ(read_dc(), want_dc);
    const std::map<net_stat_key, net_stat_counters> want_cg = {{{client_cg}, tx_only(total)},
                                                               {{server_cg}, rx_only(total)}};
    EXPECT_EQ(read<net_stat_key>(NET_STAT_MAP_CGROUP), want_cg);
    for (uint32_t e = 0; e < NET_STAT_ERR_MAX; ++e) {
        EXPECT_EQ(error_count(e), net_stat_value{}) << "error " << e;
    }
}

INSTANTIATE_TEST_SUITE_P(NetStat, NetStatUdpTest,
                         ::testing::Values(family::ipv6, family::ipv4, family::v4_mapped),
                         [](const auto& info) { return family_name(info.param); });

// A TCP server: accepts one connection, reads `expected` bytes, answers one byte and waits for
// the peer to reset the connection. 0 when every byte arrived.
int tcp_sink(int ready_fd, size_t expected) {
    const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int on = 1;
    const address at = make_address("192.0.2.2", tcp_port);
    if (l < 0 || ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        ::bind(l, at.sa(), at.len) != 0 || ::listen(l, 1) != 0) {
        return 30;
    }
    signal_ready(ready_fd);
    const int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
        return 31;
    }
    std::vector<char> buf(1 << 16);
    size_t got = 0;
    while (got < expected) {
        const ssize_t n = ::recv(c, buf.data(), buf.size(), 0);
        if (n <= 0) {
            return 32;
        }
        got += size_t(n);
    }
    if (::send(c, "k", 1, 0) != 1) {
        return 33;
    }
    while (::recv(c, buf.data(), buf.size(), 0) > 0) {
    }
    ::close(c);
    ::close(l);
    return 0;
}

// Sends `bytes` over TCP, waits for the answer and resets the connection: a reset leaves no
// TIME_WAIT socket whose last ACK the kernel would send on no cgroup's behalf.
int tcp_source(size_t bytes) {
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const address from = make_address("192.0.2.1", 0);
    const address to = make_address("192.0.2.2", tcp_port);
    if (s < 0 || ::bind(s, from.sa(), from.len) != 0 || ::connect(s, to.sa(), to.len) != 0) {
        return 40;
    }
    std::vector<char> data(bytes, 'x');
    size_t sent = 0;
    while (sent < bytes) {
        const ssize_t n = ::send(s, data.data() + sent, bytes - sent, 0);
        if (n <= 0) {
            return 41;
        }
        sent += size_t(n);
    }
    char k;
    if (::recv(s, &k, 1, 0) != 1) {
        return 42;
    }
    const linger reset{1, 0};
    ::setsockopt(s, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    ::close(s);
    return 0;
}

// A veth's counters as `ip -s -j link` shows them: {tx, rx} each as bytes and packets.
std::pair<net_stat_value, net_stat_value> link_counters(const test_netns& n, const char* dev) {
    const auto j = nlohmann::json::parse(
        test::run_command("ip -n " + n.name() + " -s -j link show dev " + dev), nullptr, false);
    if (!j.is_array() || j.empty() || !j[0].contains("stats64")) {
        ADD_FAILURE() << "ip -s -j link show dev " << dev;
        return {};
    }
    const auto& st = j[0]["stats64"];
    return {{st["tx"]["bytes"].get<uint64_t>(), st["tx"]["packets"].get<uint64_t>()},
            {st["rx"]["bytes"].get<uint64_t>(), st["rx"]["packets"].get<uint64_t>()}};
}

net_stat_value operator-(const net_stat_value& a, const net_stat_value& b) {
    return {a.bytes - b.bytes, a.packets - b.packets};
}

// TCP hands the egress hook GSO skbs of many segments; a tbf qdisc on va splits them into
// wire packets before the veth counts them (veth counts skbs). The programs' packet counts
// equal the veth's, in both directions on both ends, with IPv6 off and static ARP so that the
// link carries nothing else.
TEST_F(NetStatTest, TcpPacketsAreWireSegments) {
    ASSERT_NO_FATAL_FAILURE(make_link(false));
    ASSERT_EQ(a_.run("tc qdisc add dev va root tbf rate 20gbit burst 1600 mtu 1600 latency 100ms"),
              0);
    sub_cgroup srv(cg_, "srv");
    ASSERT_FALSE(srv.path().empty());
    ASSERT_NO_FATAL_FAILURE(attach());

    constexpr size_t bytes = 2 << 20;
    const auto [a_tx0, a_rx0] = link_counters(a_, "va");
    const auto [b_tx0, b_rx0] = link_counters(b_, "vb");
    {
        child_process server(srv.path(), b_.name(),
                             [&](int ready) { return tcp_sink(ready, bytes); });
        ASSERT_TRUE(server.ready());
        child_process client(cg_.path(), a_.name(), [&](int) { return tcp_source(bytes); });
        EXPECT_EQ(client.wait(), 0);
        EXPECT_EQ(server.wait(), 0);
    }
    const auto [a_tx1, a_rx1] = link_counters(a_, "va");
    const auto [b_tx1, b_rx1] = link_counters(b_, "vb");
    const net_stat_value a_tx = a_tx1 - a_tx0, a_rx = a_rx1 - a_rx0;
    const net_stat_value b_tx = b_tx1 - b_tx0, b_rx = b_rx1 - b_rx0;

    const uint64_t client_cg = cgroup_id(cg_.path());
    const uint64_t server_cg = cgroup_id(srv.path());
    auto cg = read<net_stat_key>(NET_STAT_MAP_CGROUP);
    EXPECT_EQ(cg.size(), 2u);
    // Each cgroup's one entry holds both directions.
    const net_stat_value client_tx = tx_of(cg[{client_cg}]), client_rx = rx_of(cg[{client_cg}]);
    const net_stat_value server_tx = tx_of(cg[{server_cg}]), server_rx = rx_of(cg[{server_cg}]);
    EXPECT_GT(a_tx.packets, bytes / 1500);
    EXPECT_EQ(client_tx.packets, a_tx.packets);
    EXPECT_EQ(server_rx.packets, b_rx.packets);
    EXPECT_EQ(server_tx.packets, b_tx.packets);
    EXPECT_EQ(client_rx.packets, a_rx.packets);
    // The hook saw fewer skbs than packets: the wire carried more headers than it counted
    // (the veth's bytes include a 14-byte Ethernet header per packet).
    EXPECT_LT(client_tx.bytes, a_tx.bytes - 14 * a_tx.packets);
    // The ACKs are not GSO: there the bytes match exactly.
    EXPECT_EQ(server_tx.bytes, b_tx.bytes - 14 * b_tx.packets);
    // And by datacenter: all of it went to and came from 192.0.2.0/25, datacenter 1.
    const std::map<net_stat_dc_key, net_stat_counters> want_dc = {
        {{client_cg, 1, backbone}, cg[{client_cg}]}, {{server_cg, 1, backbone}, cg[{server_cg}]}};
    EXPECT_EQ(read_dc(), want_dc);
}

// A cgroup whose key does not fit in a full map is counted in the errors map, with exactly the
// traffic that was not counted; the other direction of a key already in the map needs no new
// entry. Maps of one entry: the test cgroup sends from namespace a and receives in namespace b
// (the peers are in the same network both ways: one dc key), and a second cgroup's sends are
// what does not fit.
TEST_F(NetStatTest, FullMapIsCountedAsAnError) {
    ASSERT_NO_FATAL_FAILURE(make_link(true));
    sub_cgroup second(cg_, "second");
    ASSERT_FALSE(second.path().empty());
    ASSERT_NO_FATAL_FAILURE(attach(1));
    // The dc keys are split over two maps (of one entry each here): where the second cgroup's
    // key goes to the other half than the first's, a key of no cgroup fills that half first.
    const uint64_t first_cg = cgroup_id(cg_.path());
    const net_stat_dc_key first_key{first_cg, 1, backbone};
    const net_stat_dc_key second_key{cgroup_id(second.path()), 1, backbone};
    std::map<net_stat_dc_key, net_stat_counters> filler;
    if (net_stat_dc_shard(&second_key) != net_stat_dc_shard(&first_key)) {
        net_stat_dc_key k{0, 99, 99};
        while (net_stat_dc_shard(&k) != net_stat_dc_shard(&second_key)) {
            ++k.cgroup_id;
        }
        auto half = percpu_hash<net_stat_dc_key, net_stat_counters>::view(
            *coll_.map(net_stat_dc_shard(&k) ? NET_STAT_MAP_DC_1 : NET_STAT_MAP_DC));
        ASSERT_OK(half);
        ASSERT_OK(half->update_all(k, net_stat_counters{}));
        filler[k] = net_stat_counters{};
    }

    {
        child_process server(cg_.path(), b_.name(),
                             [](int ready) { return receive_datagrams(ready, 3 + 2); });
        ASSERT_TRUE(server.ready());
        child_process first_sender(cg_.path(), a_.name(), [](int) {
            return send_datagrams(AF_INET6, {{"2001:db8:1::1", "2001:db8:1::2", 100, 3}});
        });
        EXPECT_EQ(first_sender.wait(), 0);
        child_process second_sender(second.path(), a_.name(), [](int) {
            return send_datagrams(AF_INET6, {{"2001:db8:1::1", "2001:db8:1::2", 200, 2}});
        });
        EXPECT_EQ(second_sender.wait(), 0);
        EXPECT_EQ(server.wait(), 0);
    }
    const net_stat_value first{3 * 148, 3}, lost{2 * 248, 2};
    net_stat_value received = first;
    received += lost;
    net_stat_counters want = tx_only(first);
    want += rx_only(received);
    const std::map<net_stat_key, net_stat_counters> want_cg = {{{first_cg}, want}};
    std::map<net_stat_dc_key, net_stat_counters> want_dc = filler;
    want_dc[first_key] = want;
    EXPECT_EQ(read<net_stat_key>(NET_STAT_MAP_CGROUP), want_cg);
    EXPECT_EQ(read_dc(), want_dc);
    EXPECT_EQ(error_count(NET_STAT_ERR_CGROUP_TX_FULL), lost);
    EXPECT_EQ(error_count(NET_STAT_ERR_DC_TX_FULL), lost);
    EXPECT_EQ(error_count(NET_STAT_ERR_CGROUP_RX_FULL), net_stat_value{});
    EXPECT_EQ(error_count(NET_STAT_ERR_DC_RX_FULL), net_stat_value{});
}

// An Ethernet frame for BPF_PROG_TEST_RUN (the kernel strips the Ethernet header, so the
// program's data starts at the IP header, as in the real hooks).
std::vector<std::byte> frame(uint16_t ethertype, const std::vector<uint8_t>& l3) {
    std::vector<std::byte> f(14);
    f[12] = std::byte(ethertype >> 8);
    f[13] = std::byte(ethertype & 0xff);
    for (uint8_t b : l3) {
        f.push_back(std::byte(b));
    }
    return f;
}

// An IPv6 UDP packet from `src` to `dst` with `payload` bytes.
std::vector<uint8_t> ipv6_udp(const char* src, const char* dst, uint16_t payload) {
    std::vector<uint8_t> p(40 + 8 + payload, 0);
    const uint16_t plen = uint16_t(8 + payload);
    p[0] = 0x60;
    p[4] = uint8_t(plen >> 8);
    p[5] = uint8_t(plen);
    p[6] = 17;
    p[7] = 64;
    ::inet_pton(AF_INET6, src, &p[8]);
    ::inet_pton(AF_INET6, dst, &p[24]);
    return p;
}

uint64_t own_cgroup_id() {
    std::ifstream f("/proc/self/cgroup");
    std::string line;
    auto mnt = cgroup2_mount();
    while (mnt && std::getline(f, line)) {
        if (line.rfind("0::", 0) == 0) {
            return cgroup_id(*mnt + line.substr(3));
        }
    }
    return 0;
}

// Run directly on packets: every program returns 1 (a 0 would drop the host's traffic), also
// on packets the parser cannot read or whose peer is unknown, which go to dc 0; a GSO skb
// counts gso_segs packets.
TEST_F(NetStatTest, ProgramsReturnOneOnEveryPacket) {
    ASSERT_NO_FATAL_FAILURE(attach());
    links_.clear();
    const uint64_t me = own_cgroup_id();
    ASSERT_NE(me, 0u);

    const auto good = frame(0x86dd, ipv6_udp("2001:db8:2::1", "2001:db8:1::2", 52));
    // The kernel's test run refuses IP packets shorter than their header; what the parser
    // cannot read here is a frame of another protocol, 1 byte long, and an ARP packet.
    const auto experimental = frame(0x88b5, {0x42});
    const auto arp = frame(0x0806, std::vector<uint8_t>(28, 0));
    // A bare IPv4 header from and to addresses in no network.
    const auto ipv4_unknown =
        frame(0x0800, {0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 201, 192, 0, 2, 202});
    __sk_buff gso{};
    gso.gso_segs = 7;
    for (const char* name : {"net_stat_tx", "net_stat_rx", "net_stat_dc_tx", "net_stat_dc_rx"}) {
        program* p = coll_.program(name);
        ASSERT_NE(p, nullptr);
        auto r = p->test_run(
            {.data_in = good, .ctx_in = std::as_bytes(std::span(&gso, 1)), .repeat = 1});
        ASSERT_OK(r);
        EXPECT_EQ(r->retval, 1u) << name;
        for (const auto* bad : {&experimental, &arp, &ipv4_unknown}) {
            auto b = p->test_run({.data_in = *bad, .repeat = 1});
            ASSERT_OK(b);
            EXPECT_EQ(b->retval, 1u) << name << " on a packet of " << bad->size() << " bytes";
        }
    }
    const uint64_t good_len = good.size() - 14;
    const uint64_t bad_len =
        (experimental.size() - 14) + (arp.size() - 14) + (ipv4_unknown.size() - 14);
    const uint64_t all_bytes = good_len + bad_len, all_packets = 7 + 3;
    const std::map<net_stat_key, net_stat_counters> want = {
        {{me}, {all_bytes, all_packets, all_bytes, all_packets}}};
    EXPECT_EQ(read<net_stat_key>(NET_STAT_MAP_CGROUP), want);
    // Egress files the packet under its destination, ingress under its source; the unknown
    // peers share one key for both directions.
    const std::map<net_stat_dc_key, net_stat_counters> want_dc = {
        {{me, 0, 0}, {bad_len, 3, bad_len, 3}},
        {{me, 1, backbone}, {0, 0, good_len, 7}},
        {{me, 2, fastbone}, {good_len, 7, 0, 0}}};
    EXPECT_EQ(read_dc(), want_dc);
}

TEST_F(NetStatTest, ProgramsShowInTheCgroupTree) {
    ASSERT_NO_FATAL_FAILURE(attach());
    const std::string tree = test::run_command("bpftool -j cgroup tree " + cg_.path());
    for (const char* name : {"net_stat_tx", "net_stat_rx", "net_stat_dc_tx", "net_stat_dc_rx"}) {
        EXPECT_NE(tree.find("\"name\":\"" + std::string(name) + "\""), std::string::npos)
            << name << " in " << tree;
    }
}

}  // namespace
}  // namespace ebpf
