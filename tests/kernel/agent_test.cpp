// The ebpf-agent daemon as operators run it, against a cgroup the test creates (never the
// machine's root cgroup), a private bpffs and a temporary run directory: what it attaches
// (bpftool), what it counts (/metrics, `stats`), what it leaves behind after SIGTERM, SIGKILL and
// in keep mode, how it refuses bad configs and bad programs, and SIGHUP reloads.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "agent_process.hpp"
#include "ebpf/ebpf.hpp"
#include "kernel_fixture.hpp"

namespace ebpf {
namespace {

using test::agent_daemon;
using test::run_agent;
using test::temp_dir;

constexpr const char* all_programs[] = {"tcp_rto",       "tcp_tos",     "tclass_lock",
                                        "net_stat_tx",   "net_stat_rx", "net_stat_dc_tx",
                                        "net_stat_dc_rx"};
constexpr uint32_t agent_hooks[] = {BPF_CGROUP_SOCK_OPS, BPF_CGROUP_SETSOCKOPT,
                                    BPF_CGROUP_INET_EGRESS, BPF_CGROUP_INET_INGRESS};

// Names of the programs attached directly to the cgroup at the agent's hooks.
std::multiset<std::string> attached_names(int cgroup_fd) {
    std::multiset<std::string> out;
    for (uint32_t t : agent_hooks) {
        auto q = query_cgroup(cgroup_fd, t);
        EXPECT_TRUE(q) << q.error().message();
        if (!q) {
            continue;
        }
        for (const auto& p : q->programs) {
            auto prog = program::from_id(p.prog_id);
            out.insert(prog ? prog->name() : "?");
        }
    }
    return out;
}

std::multiset<std::string> every_program() {
    return std::multiset<std::string>(std::begin(all_programs), std::end(all_programs));
}

constexpr uint16_t udp_port = 4343;
constexpr size_t payload = 100;
constexpr uint64_t udp_packet_bytes = 40 + 8 + payload;  // skb->len: the IPv6 packet

// In a network namespace of its own with the test's addresses on lo. Returns 0 when it worked.
int private_netns() {
    if (::unshare(CLONE_NEWNET) != 0) {
        return 10;
    }
    return std::system(
               "ip link set lo up && ip addr add 2001:db8:1::1/128 dev lo && "
               "ip addr add 2001:db8:2::1/128 dev lo") == 0
               ? 0
               : 11;
}

sockaddr_in6 v6(const char* addr, uint16_t port) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    ::inet_pton(AF_INET6, addr, &a.sin6_addr);
    return a;
}

// Sends `count` datagrams of `payload` bytes to each address and receives them all; 0 when
// every one arrived.
int udp_traffic(const std::vector<std::pair<const char*, int>>& sends) {
    if (int r = private_netns()) {
        return r;
    }
    int rx = ::socket(AF_INET6, SOCK_DGRAM, 0);
    int tx = ::socket(AF_INET6, SOCK_DGRAM, 0);
    sockaddr_in6 any = v6("::", udp_port);
    if (::bind(rx, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) {
        return 12;
    }
    timeval tv{5, 0};
    ::setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[payload] = {};
    int total = 0;
    for (const auto& [addr, count] : sends) {
        sockaddr_in6 to = v6(addr, udp_port);
        for (int i = 0; i < count; ++i) {
            if (::sendto(tx, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) !=
                ssize_t(sizeof buf)) {
                return 13;
            }
            ++total;
        }
    }
    for (int i = 0; i < total; ++i) {
        if (::recv(rx, buf, sizeof buf, 0) != ssize_t(sizeof buf)) {
            return 14;
        }
    }
    return 0;
}

// Connects to [2001:db8:1::1] and returns the DSCP the socket got (its IPV6_TCLASS >> 2).
int connect_and_read_dscp() {
    if (int r = private_netns()) {
        return 100 + r;
    }
    int l = ::socket(AF_INET6, SOCK_STREAM, 0);
    sockaddr_in6 a = v6("2001:db8:1::1", 4344);
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 4) != 0) {
        return 120;
    }
    int c = ::socket(AF_INET6, SOCK_STREAM, 0);
    if (::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        return 121;
    }
    int tclass = -1;
    socklen_t len = sizeof tclass;
    if (::getsockopt(c, SOL_IPV6, IPV6_TCLASS, &tclass, &len) != 0) {
        return 122;
    }
    return tclass >> 2;
}

// The cgroup's label in the metrics: its path under the cgroup2 mount.
std::string label_of(const std::string& path) {
    auto mount = cgroup2_mount();
    return mount ? path.substr(mount->size()) : path;
}

std::string series(const char* family, const std::string& cgroup, const char* dc, const char* net) {
    return std::string("ebpf_agent_cgroup_") + family + "{cgroup=\"" + cgroup + "\",dc=\"" + dc +
           "\",net=\"" + net + "\"}";
}

// Expects the page to show `n` datagrams of udp_traffic() each way for (cgroup, dc, net).
void expect_datagrams(const std::string& page, const std::string& cg, const char* dc,
                      const char* net, uint64_t n) {
    for (const std::string dir : {"transmit", "receive"}) {
        EXPECT_EQ(test::metric_value(page, series((dir + "_packets_total").c_str(), cg, dc, net)),
                  n)
            << page;
        EXPECT_EQ(test::metric_value(page, series((dir + "_bytes_total").c_str(), cg, dc, net)),
                  n * udp_packet_bytes)
            << page;
    }
}

// The rows of the cgroup labelled `cg` in `stats -o json` on `config` (empty after a failure,
// which is reported).
std::vector<nlohmann::json> stats_rows(const std::string& config, const std::string& cg) {
    auto stats = run_agent({"stats", "--config", config, "-o", "json"});
    EXPECT_EQ(stats.exit_code, 0) << stats.err;
    std::vector<nlohmann::json> out;
    if (stats.exit_code != 0) {
        return out;
    }
    const nlohmann::json j = nlohmann::json::parse(stats.out);
    for (const auto& r : j["rows"]) {
        if (r["cgroup"] == cg) {
            out.push_back(r);
        }
    }
    return out;
}

// Scrapes /metrics until `series` reads `value` (6 s at most: new cgroups are resolved by a
// rate-limited walk) and returns the last page.
std::string scrape_until(const std::string& address, const std::string& series, double value) {
    std::string page;
    for (int i = 0; i < 60; ++i) {
        page = test::http_get(address, "/metrics").second;
        if (test::metric_value(page, series) == value) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return page;
}

class AgentTest : public test::KernelTest {
  protected:
    // Writes the test's config: its cgroup, bpffs and run directory, plus `extra` TOML.
    std::string write_config(const std::string& on_stop, const std::string& extra = "",
                             const std::string& name = "config.toml") {
        const std::string path = tmp_.path(name);
        test::write_file(path, base_config(on_stop) + extra);
        return path;
    }
    std::string base_config(const std::string& on_stop) const {
        return "[agent]\ncgroup = \"" + cg_.path() + "\"\nbpffs_dir = \"" + bpffs_dir() +
               "\"\nrun_dir = \"" + tmp_.path("run") + "\"\non_stop = \"" + on_stop +
               "\"\nstats_interval = 0\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n"
               "[programs]\ntclass_lock = true\nnet_stat = true\n\n" +
               network_config;
    }
    std::string bpffs_dir() const { return bpffs_.path("ebpf-agent"); }
    std::string state_file() const { return tmp_.path("run") + "/state.json"; }
    bool bpffs_dir_exists() const { return std::filesystem::exists(bpffs_dir()); }

    static constexpr const char* network_config = R"(
[network]
datacenters = ["dc1", "dc2"]
types = ["backbone", "fastbone"]
local_dc = "dc1"

[[networks]]
prefix = "2001:db8:1::/48"
dc = "dc1"
type = "backbone"

[[networks]]
prefix = "2001:db8:2::/48"
dc = "dc2"
type = "fastbone"

[[rules]]
network_type = "backbone"
dscp = "CS3"
)";

    test::test_cgroup cg_;
    test::test_bpffs bpffs_;
    temp_dir tmp_;
};

TEST_F(AgentTest, StartAttachesEveryProgramUnderItsNameAndSigtermDetachesEverything) {
    const std::string config = write_config("detach");
    test::notify_listener systemd(tmp_.path("notify"));
    agent_daemon d(config, state_file(), {}, tmp_.path("notify"));
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_NE(systemd.next().find("READY=1"), std::string::npos) << "Type=notify readiness";
    EXPECT_EQ(attached_names(cg_.fd()), every_program());
    const std::string tree = test::run_command("bpftool -j cgroup tree " + cg_.path() + " 2>&1");
    for (const char* name : all_programs) {
        EXPECT_NE(tree.find(std::string("\"name\":\"") + name + "\""), std::string::npos)
            << name << " in " << tree;
    }
    EXPECT_NE(tree.find("\"attach_flags\":\"multi\""), std::string::npos) << tree;
    EXPECT_FALSE(bpffs_dir_exists()) << "detach mode pins nothing";

    auto status = run_agent({"status", "--config", config, "-o", "json"});
    ASSERT_EQ(status.exit_code, 0) << status.err;
    auto j = nlohmann::json::parse(status.out);
    EXPECT_EQ(j["daemon"]["running"], true);
    ASSERT_EQ(j["programs"].size(), 7u) << status.out;
    for (const auto& p : j["programs"]) {
        EXPECT_EQ(p["owner"], "ebpf-agent") << p;
        EXPECT_EQ(p["mode"], "link") << p;
        EXPECT_GT(p["link_id"].get<uint32_t>(), 0u) << p;
    }

    d.signal(SIGTERM);
    EXPECT_EQ(d.wait_exit(), 0) << d.log();
    EXPECT_NE(systemd.next().find("STOPPING=1"), std::string::npos);
    EXPECT_TRUE(attached_names(cg_.fd()).empty());
    EXPECT_FALSE(bpffs_dir_exists());
    EXPECT_FALSE(std::filesystem::exists(state_file()));
}

TEST_F(AgentTest, SigkillInDetachModeLeavesNothingAttachedOrPinned) {
    agent_daemon d(write_config("detach"), state_file());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_EQ(attached_names(cg_.fd()).size(), 7u);
    d.signal(SIGKILL);
    EXPECT_EQ(d.wait_exit(), 128 + SIGKILL);
    // The links die with the process's last fd.
    for (int i = 0; i < 100 && !attached_names(cg_.fd()).empty(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(attached_names(cg_.fd()).empty());
    EXPECT_FALSE(bpffs_dir_exists());
}

TEST_F(AgentTest, BadConfigsExit78NamingThePlaceAndAttachNothing) {
    struct bad {
        const char* what;
        std::string toml;
        std::string expect;  // in the message
    };
    const std::string base = base_config("detach");
    const std::string after_base =
        ":" + std::to_string(std::count(base.begin(), base.end(), '\n') + 2) + ":";
    const bad cases[] = {
        {"unknown key", base + "\n[metrics2]\nx = 1\n", after_base + "2: metrics2"},
        {"wrong type", "[agent]\nstats_interval = \"ten\"\n", ":2:18: agent.stats_interval"},
        {"bad prefix",
         base + "\n[[networks]]\nprefix = \"2001:db8::/129\"\ndc = \"dc1\"\n"
                "type = \"backbone\"\n",
         "networks[2].prefix"},
        {"bad class", base + "\n[[rules]]\ndscp = \"CS9\"\n", "rules[1].dscp"},
        {"syntax", "[agent\n", ":1:"},
    };
    for (const auto& c : cases) {
        const std::string path = tmp_.path("bad.toml");
        test::write_file(path, c.toml);
        auto r = run_agent({"run", "--config", path});
        EXPECT_EQ(r.exit_code, 78) << c.what << ": " << r.err;
        EXPECT_NE(r.err.find(path), std::string::npos) << c.what << ": " << r.err;
        EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.what << ": " << r.err;
        EXPECT_TRUE(attached_names(cg_.fd()).empty()) << c.what;
        auto check = run_agent({"check-config", "--config", path});
        EXPECT_EQ(check.exit_code, 78) << c.what << ": " << check.err;
    }
    auto good = run_agent({"check-config", "--config", write_config("detach"), "--load"});
    EXPECT_EQ(good.exit_code, 0) << good.err;
    EXPECT_TRUE(attached_names(cg_.fd()).empty()) << "check-config --load attaches nothing";
}

TEST_F(AgentTest, AProgramTheVerifierRejectsAttachesNothingAndTheErrorShowsTheLog) {
    agent_daemon d(write_config("detach"), state_file(),
                   {"--object", std::string("tcp_tos=") + EBPF_TEST_OBJECT_AGENT_REJECTED});
    EXPECT_FALSE(d.wait_ready());
    EXPECT_EQ(d.wait_exit(), 1) << d.log();
    const std::string log = d.log();
    EXPECT_NE(log.find("tcp_tos"), std::string::npos) << log;
    EXPECT_NE(log.find("invalid mem access"), std::string::npos) << "the verifier's log: " << log;
    EXPECT_TRUE(attached_names(cg_.fd()).empty());
    EXPECT_FALSE(bpffs_dir_exists());
}

TEST_F(AgentTest, AnAttachFailureRollsBackWhatWasAttachedBefore) {
    // tclass_lock comes after tcp_rto and tcp_tos; a cgroup_skb program in its place loads but
    // cannot attach at the setsockopt hook.
    agent_daemon d(write_config("detach"), state_file(),
                   {"--object", std::string("tclass_lock=") + EBPF_TEST_OBJECT_AGENT_WRONG_HOOK});
    EXPECT_FALSE(d.wait_ready());
    EXPECT_EQ(d.wait_exit(), 1) << d.log();
    EXPECT_NE(d.log().find("program tclass_lock"), std::string::npos) << d.log();
    EXPECT_TRUE(attached_names(cg_.fd()).empty()) << d.log();
}

TEST_F(AgentTest, TrafficFromTheCgroupIsCountedExactlyInMetricsAndStats) {
    const std::string config = write_config("detach");
    agent_daemon d(config, state_file());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const std::string address = d.state()["metrics"];
    EXPECT_EQ(test::http_get(address, "/readyz").first, 200);
    EXPECT_EQ(test::http_get(address, "/healthz").first, 200);

    ASSERT_EQ(
        test::run_in_cgroup(cg_,
                            [] {
                                return udp_traffic({{"2001:db8:1::1", 5}, {"2001:db8:2::1", 3}});
                            }),
        0);
    const std::string cg = label_of(cg_.path());
    const std::string page =
        scrape_until(address, series("transmit_packets_total", cg, "dc2", "fastbone"), 3);
    expect_datagrams(page, cg, "dc1", "backbone", 5);
    expect_datagrams(page, cg, "dc2", "fastbone", 3);
    EXPECT_EQ(test::metric_value(page,
                                 "ebpf_agent_program_attached{program=\"net_stat_dc_tx\","
                                 "attach_type=\"egress\",mode=\"link\"}"),
              1)
        << page;

    const auto rows = stats_rows(config, cg);
    for (const auto& r : rows) {
        const uint64_t n = r["dc"] == "dc1" ? 5 : 3;
        EXPECT_EQ(r["tx_packets"], n) << r;
        EXPECT_EQ(r["rx_packets"], n) << r;
        EXPECT_EQ(r["tx_bytes"], n * udp_packet_bytes) << r;
        EXPECT_EQ(r["rx_bytes"], n * udp_packet_bytes) << r;
    }
    EXPECT_EQ(rows.size(), 2u);
    d.signal(SIGTERM);
    EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

// Without the dc programs the per-cgroup map is what /metrics and stats show (the object still
// creates the dc map, which stays empty): the same exact counts, under dc="other".
TEST_F(AgentTest, WithoutTheDcProgramsTrafficIsCountedPerCgroup) {
    std::string text = base_config("detach");
    const std::string programs = "net_stat = true\n";
    ASSERT_NE(text.find(programs), std::string::npos);
    text.replace(text.find(programs), programs.size(), programs + "net_stat_dc = false\n");
    const std::string config = tmp_.path("config.toml");
    test::write_file(config, text);
    agent_daemon d(config, state_file());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    const std::string address = d.state()["metrics"];

    ASSERT_EQ(
        test::run_in_cgroup(cg_,
                            [] {
                                return udp_traffic({{"2001:db8:1::1", 5}, {"2001:db8:2::1", 3}});
                            }),
        0);
    const std::string cg = label_of(cg_.path());
    const std::string page =
        scrape_until(address, series("transmit_packets_total", cg, "other", "other"), 8);
    expect_datagrams(page, cg, "other", "other", 8);
    EXPECT_EQ(page.find("program=\"net_stat_dc_tx\""), std::string::npos) << page;

    const auto rows = stats_rows(config, cg);
    for (const auto& r : rows) {
        EXPECT_EQ(r["dc"], "other") << r;
        EXPECT_EQ(r["tx_packets"], 8) << r;
        EXPECT_EQ(r["rx_packets"], 8) << r;
        EXPECT_EQ(r["tx_bytes"], 8 * udp_packet_bytes) << r;
        EXPECT_EQ(r["rx_bytes"], 8 * udp_packet_bytes) << r;
    }
    EXPECT_EQ(rows.size(), 1u);
    d.signal(SIGTERM);
    EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST_F(AgentTest, KeepModeRestartKeepsLinksAndCountersAndLosesNoPacket) {
    const std::string config = write_config("keep");
    std::map<std::string, std::pair<uint32_t, uint32_t>> first;  // name -> (link id, prog id)
    const std::string stop_file = tmp_.path("stop"), sent_file = tmp_.path("sent");
    std::atomic<int> generator_status{-1};
    std::thread generator;
    {
        agent_daemon a(config, state_file());
        ASSERT_TRUE(a.wait_ready()) << a.log();
        const nlohmann::json state = a.state();
        for (const auto& p : state["programs"]) {
            first[p["name"].get<std::string>()] = {p["link_id"], p["prog_id"]};
        }
        ASSERT_EQ(first.size(), 7u);
        // A datagram every millisecond from the cgroup until told to stop, across the restart.
        generator = std::thread([&] {
            generator_status = test::run_in_cgroup(cg_, [&] {
                if (int r = private_netns()) {
                    return r;
                }
                int tx = ::socket(AF_INET6, SOCK_DGRAM, 0);
                sockaddr_in6 to = v6("2001:db8:1::1", udp_port);
                char buf[payload] = {};
                long sent = 0;
                while (!std::filesystem::exists(stop_file)) {
                    if (::sendto(tx, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&to),
                                 sizeof to) == ssize_t(sizeof buf)) {
                        ++sent;
                    }
                    ::usleep(1000);
                }
                test::write_file(sent_file, std::to_string(sent));
                return 0;
            });
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        a.signal(SIGTERM);
        EXPECT_EQ(a.wait_exit(), 0) << a.log();
    }
    EXPECT_EQ(attached_names(cg_.fd()), every_program()) << "keep mode leaves them attached";
    EXPECT_TRUE(std::filesystem::exists(bpffs_dir() + "/links/net_stat_dc_tx"));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    {
        agent_daemon b(config, state_file());
        ASSERT_TRUE(b.wait_ready()) << b.log();
        const nlohmann::json state = b.state();
        for (const auto& p : state["programs"]) {
            const auto& [link, prog] = first[p["name"].get<std::string>()];
            EXPECT_EQ(p["link_id"], link) << p << ": the same link, updated in place";
            EXPECT_NE(p["prog_id"], prog) << p << ": a new program";
            EXPECT_EQ(p["adopted"], true) << p;
        }
        EXPECT_EQ(attached_names(cg_.fd()), every_program()) << "one of each, no duplicates";
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        test::write_file(stop_file, "");
        generator.join();
        ASSERT_EQ(generator_status, 0);
        const long sent = std::stol(test::read_file(sent_file));
        EXPECT_GT(sent, 100);
        uint64_t counted = 0;
        for (const auto& r : stats_rows(config, label_of(cg_.path()))) {
            if (r["dc"] == "dc1") {
                counted += r["tx_packets"].get<uint64_t>();
            }
        }
        EXPECT_EQ(counted, uint64_t(sent)) << "every datagram sent across the restart counted";
        b.signal(SIGTERM);
        EXPECT_EQ(b.wait_exit(), 0) << b.log();
    }
    // Without a daemon: cleanup removes it all, and again finds nothing to do.
    auto c1 = run_agent({"cleanup", "--config", config});
    EXPECT_EQ(c1.exit_code, 0) << c1.err;
    EXPECT_TRUE(attached_names(cg_.fd()).empty());
    EXPECT_FALSE(bpffs_dir_exists());
    auto c2 = run_agent({"cleanup", "--config", config});
    EXPECT_EQ(c2.exit_code, 0) << c2.err;
    EXPECT_NE(c2.err.find("nothing to clean up"), std::string::npos) << c2.err;
}

// Counter keys hold datacenter ids (positions in the list), so pinned counters go on only where
// every id keeps its name: an appended datacenter keeps them, a reordered list restarts them
// rather than give dc1's counts to dc2.
TEST_F(AgentTest, KeepModeCountersGoOnOnlyWhileTheDatacentersKeepTheirIds) {
    auto config_with = [&](const char* datacenters, const char* name) {
        std::string text = base_config("keep");
        const std::string from = "datacenters = [\"dc1\", \"dc2\"]";
        text.replace(text.find(from), from.size(), std::string("datacenters = ") + datacenters);
        const std::string path = tmp_.path(name);
        test::write_file(path, text);
        return path;
    };
    // tx packets of the test's cgroup per dc name, read by `stats` from the pins.
    auto counted = [&](const std::string& config) {
        std::map<std::string, uint64_t> out;
        for (const auto& r : stats_rows(config, label_of(cg_.path()))) {
            if (r["tx_packets"].get<uint64_t>() > 0) {
                out[r["dc"].get<std::string>()] += r["tx_packets"].get<uint64_t>();
            }
        }
        return out;
    };
    auto run_with = [&](const std::string& config, int to_dc1, int to_dc2) {
        agent_daemon d(config, state_file());
        EXPECT_TRUE(d.wait_ready()) << d.log();
        EXPECT_EQ(
            test::run_in_cgroup(
                cg_,
                [&] {
                    return udp_traffic({{"2001:db8:1::1", to_dc1}, {"2001:db8:2::1", to_dc2}});
                }),
            0);
        d.signal(SIGTERM);
        EXPECT_EQ(d.wait_exit(), 0) << d.log();
        return d.log();
    };
    using counts = std::map<std::string, uint64_t>;

    const std::string first = config_with(R"(["dc1", "dc2"])", "first.toml");
    run_with(first, 5, 3);
    EXPECT_EQ(counted(first), (counts{{"dc1", 5}, {"dc2", 3}}));

    const std::string appended = config_with(R"(["dc1", "dc2", "dc3"])", "appended.toml");
    std::string log = run_with(appended, 1, 1);
    EXPECT_EQ(log.find("cannot go on"), std::string::npos) << log;
    EXPECT_EQ(counted(appended), (counts{{"dc1", 6}, {"dc2", 4}})) << "the counters went on";

    const std::string reordered = config_with(R"(["dc2", "dc1", "dc3"])", "reordered.toml");
    log = run_with(reordered, 2, 0);
    EXPECT_NE(log.find("restart from zero"), std::string::npos) << log;
    EXPECT_NE(log.find("datacenter 1 was \\\"dc1\\\", now \\\"dc2\\\""), std::string::npos) << log;
    EXPECT_EQ(counted(reordered), (counts{{"dc1", 2}})) << "no count under another dc's name";

    // Counters whose names were not pinned with them (a stop between the two pins, or an agent
    // from before the label map) restart too.
    ASSERT_EQ(::unlink((bpffs_dir() + "/maps/stat_labels").c_str()), 0);
    log = run_with(reordered, 1, 0);
    EXPECT_NE(log.find("are not pinned"), std::string::npos) << log;
    EXPECT_EQ(counted(reordered), (counts{{"dc1", 1}}));

    auto c = run_agent({"cleanup", "--config", reordered});
    EXPECT_EQ(c.exit_code, 0) << c.err;
    EXPECT_FALSE(bpffs_dir_exists());
}

TEST_F(AgentTest, SighupAppliesANewTableToNewConnectionsAndABadFileKeepsTheOldConfig) {
    const std::string config = write_config("detach");
    agent_daemon d(config, state_file());
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_EQ(test::run_in_cgroup(cg_, connect_and_read_dscp), 24) << "CS3 from the config";

    // The capacity of one of the running generation's maps ("object/map"), found by its id.
    auto capacity = [&](const char* map) -> int64_t {
        const nlohmann::json state = d.state();
        if (!state["maps"].contains(map)) {
            return -1;
        }
        auto m = map::from_id(state["maps"][map].get<uint32_t>());
        return m ? int64_t(m->max_entries()) : -1;
    };
    EXPECT_EQ(capacity("tcp_rto/decisions"), 16384);
    EXPECT_EQ(capacity("net_stat/peer_cache"), 16384);

    std::string text = test::read_file(config);
    text.replace(text.find("dscp = \"CS3\""), 12, "dscp = \"CS5\"");
    text.replace(text.find("[network]\n"), 10, "[network]\npeer_cache_entries = 2048\n");
    test::write_file(config, text);
    auto ok = run_agent({"reload", "--config", config});
    EXPECT_EQ(ok.exit_code, 0) << ok.err << d.log();
    EXPECT_EQ(test::run_in_cgroup(cg_, connect_and_read_dscp), 40) << "CS5 after the reload";
    EXPECT_EQ(attached_names(cg_.fd()), every_program());
    EXPECT_EQ(capacity("tcp_rto/decisions"), 2048) << "the new generation's size";
    EXPECT_EQ(capacity("net_stat/peer_cache"), 2048);

    test::write_file(config, text + "\n[rules2]\n");
    auto bad = run_agent({"reload", "--config", config});
    EXPECT_EQ(bad.exit_code, 78) << bad.err;
    EXPECT_NE(bad.err.find("rules2"), std::string::npos) << bad.err;
    EXPECT_EQ(test::run_in_cgroup(cg_, connect_and_read_dscp), 40) << "the old config runs on";

    std::string restart = text;
    restart.replace(restart.find("tclass_lock = true"), 18, "tclass_lock = false");
    test::write_file(config, restart);
    auto needs_restart = run_agent({"reload", "--config", config});
    EXPECT_EQ(needs_restart.exit_code, 78) << needs_restart.err;
    EXPECT_NE(needs_restart.err.find("need a restart"), std::string::npos) << needs_restart.err;
    EXPECT_EQ(attached_names(cg_.fd()), every_program());

    auto status = run_agent({"status", "--config", config, "-o", "json"});
    auto j = nlohmann::json::parse(status.out);
    EXPECT_EQ(j["daemon"]["last_reload"]["ok"], false) << status.out;
    d.signal(SIGTERM);
    EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST_F(AgentTest, ProgramsItDoesNotOwnAreReportedAndLeftAlone) {
    std::vector<bpf_insn> pass = {insn::mov64_imm(insn::r0, 1), insn::exit()};
    auto foreign =
        program::load({.type = BPF_PROG_TYPE_CGROUP_SKB, .insns = pass, .name = "someone_else"});
    ASSERT_OK(foreign);
    auto link = cgroup_link::attach(cg_.fd(), *foreign, BPF_CGROUP_INET_EGRESS);
    ASSERT_OK(link);
    const std::string config = write_config("detach");
    {
        agent_daemon d(config, state_file());
        ASSERT_TRUE(d.wait_ready()) << d.log();
        EXPECT_NE(d.log().find("does not own"), std::string::npos) << d.log();
        EXPECT_NE(d.log().find("program=someone_else"), std::string::npos) << d.log();
        auto status = run_agent({"status", "--config", config, "-o", "json"});
        auto j = nlohmann::json::parse(status.out);
        int foreign_seen = 0;
        for (const auto& p : j["programs"]) {
            if (p["name"] == "someone_else") {
                EXPECT_EQ(p["owner"], "foreign") << p;
                ++foreign_seen;
            }
        }
        EXPECT_EQ(foreign_seen, 1) << status.out;
        d.signal(SIGTERM);
        EXPECT_EQ(d.wait_exit(), 0) << d.log();
    }
    auto left = attached_names(cg_.fd());
    EXPECT_EQ(left, std::multiset<std::string>{"someone_else"}) << "only the agent's were removed";
    auto c = run_agent({"cleanup", "--config", config});
    EXPECT_EQ(c.exit_code, 0) << c.err;
    EXPECT_EQ(attached_names(cg_.fd()), std::multiset<std::string>{"someone_else"});
    ASSERT_OK(link->detach());
}

TEST_F(AgentTest, FlowLabelsTurnedOffOnTheHostAreReported) {
    // The daemon runs in a network namespace of its own whose net.ipv6.auto_flowlabels is 0.
    std::string config = write_config("detach");
    std::string text = test::read_file(config);
    text.replace(text.find("listen = \"127.0.0.1:0\""), 22, "listen = \"\"");
    test::write_file(config, text);
    agent_daemon d(config, state_file(), {}, "", [] {
        if (::unshare(CLONE_NEWNET) != 0) {
            ::_exit(120);
        }
        FILE* f = std::fopen("/proc/sys/net/ipv6/auto_flowlabels", "we");
        if (!f || std::fputs("0\n", f) < 0 || std::fclose(f) != 0) {
            ::_exit(121);
        }
    });
    ASSERT_TRUE(d.wait_ready()) << d.log();
    EXPECT_NE(d.log().find("net.ipv6.auto_flowlabels = 0"), std::string::npos) << d.log();
    d.signal(SIGTERM);
    EXPECT_EQ(d.wait_exit(), 0) << d.log();

    // Where the host's own namespace has labels on, nothing is reported there.
    if (test::read_file("/proc/sys/net/ipv6/auto_flowlabels").rfind("0", 0) != 0) {
        agent_daemon host(config, state_file());
        ASSERT_TRUE(host.wait_ready()) << host.log();
        EXPECT_EQ(host.log().find("auto_flowlabels"), std::string::npos) << host.log();
        host.signal(SIGTERM);
        EXPECT_EQ(host.wait_exit(), 0) << host.log();
    }
}

}  // namespace
}  // namespace ebpf
