// The agent's statistics without a kernel: roll-up depth and cap, the retired counts across a
// cgroup's removal, label escaping, the exact exposition of a small input, the cgroup walk on
// a directory tree, and the HTTP endpoint on 127.0.0.1:0 through a raw socket.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "cgroup_names.hpp"
#include "http_server.hpp"
#include "metrics.hpp"

namespace {

using agent::cgroup_path;
using agent::cgroup_rollup;
using agent::traffic_counters;
using agent::traffic_row;
using namespace std::chrono_literals;

// Paths by cgroup id, standing in for the cgroup walk.
struct fake_names {
    std::map<uint64_t, std::string> paths;
    std::vector<uint64_t> held;
    cgroup_path operator()(uint64_t id) const {
        for (uint64_t h : held) {
            if (h == id) {
                return {nullptr, true};
            }
        }
        auto it = paths.find(id);
        return {it == paths.end() ? nullptr : &it->second, false};
    }
};

traffic_row row(uint64_t id, uint32_t dc, uint64_t rx, uint64_t tx) {
    traffic_row r;
    r.cgroup_id = id;
    r.dc = dc;
    r.rx_bytes = rx;
    r.rx_packets = rx / 100;
    r.tx_bytes = tx;
    r.tx_packets = tx / 100;
    return r;
}

traffic_counters value(const cgroup_rollup& r, std::string_view cgroup, uint32_t dc = 0) {
    const cgroup_rollup::series* s = r.find(cgroup, dc, 0);
    return s ? s->value() : traffic_counters{};
}

TEST(AgentMetricsRollup, RollUpKeepsDepthLevels) {
    EXPECT_EQ(agent::roll_up("/", 3), "/");
    EXPECT_EQ(agent::roll_up("/a", 3), "/a");
    EXPECT_EQ(agent::roll_up("/a/b/c", 3), "/a/b/c");
    EXPECT_EQ(agent::roll_up("/a/b/c/d/e", 3), "/a/b/c");
    EXPECT_EQ(agent::roll_up("/a/b/c", 1), "/a");
    EXPECT_EQ(agent::roll_up("/a/b/c", 0), "/");
    EXPECT_EQ(agent::roll_up("/system.slice/nginx.service", 2), "/system.slice/nginx.service");
}

TEST(AgentMetricsRollup, DeeperCgroupsAddIntoTheirAncestor) {
    fake_names names;
    names.paths = {{1, "/"},
                   {2, "/kubepods/burstable/pod1"},
                   {3, "/kubepods/burstable/pod1/c1"},
                   {4, "/kubepods/burstable/pod1/c2/deeper"},
                   {5, "/kubepods/burstable/pod2"}};
    cgroup_rollup r({.cgroup_depth = 3, .max_cgroups = 100});
    const traffic_row rows[] = {row(1, 0, 1, 2),     row(2, 0, 100, 200), row(3, 0, 1000, 2000),
                                row(4, 0, 10000, 0), row(4, 1, 7, 7),     row(5, 0, 5, 5)};
    r.fold(rows, names);
    EXPECT_EQ(value(r, "/kubepods/burstable/pod1").rx_bytes, 11100u);
    EXPECT_EQ(value(r, "/kubepods/burstable/pod1").tx_bytes, 2200u);
    EXPECT_EQ(value(r, "/kubepods/burstable/pod1", 1).rx_bytes, 7u);
    EXPECT_EQ(value(r, "/kubepods/burstable/pod2").rx_bytes, 5u);
    EXPECT_EQ(value(r, "/").tx_bytes, 2u);
    EXPECT_EQ(r.labels_in_use(), 3u);
    EXPECT_EQ(r.series_count(), 4u);
}

// fold() remembers each row key's series and the order the rows came in; whatever the next
// rows are (the same, reordered, with keys added or gone, a cgroup renamed, one held), each
// series is the sum of its rows, as a fresh roll-up folding the same rows once would say.
TEST(AgentMetricsRollup, FoldsAgainAsIfFresh) {
    fake_names names;
    for (uint64_t id = 1; id <= 40; ++id) {
        names.paths[id] = "/s" + std::to_string(id % 7) + "/c" + std::to_string(id);
    }
    std::vector<traffic_row> rows;
    for (uint64_t id = 1; id <= 40; ++id) {
        for (uint32_t dc = 0; dc < 3; ++dc) {
            rows.push_back(row(id, dc, id * 1000 + dc, id * 10 + dc));
        }
    }
    cgroup_rollup r({.cgroup_depth = 1, .max_cgroups = 100});
    auto check = [&](const char* step) {
        cgroup_rollup fresh({.cgroup_depth = 1, .max_cgroups = 100});
        fresh.fold(rows, names);
        EXPECT_EQ(r.series_count(), fresh.series_count()) << step;
        fresh.for_each([&](const cgroup_rollup::series& s) {
            const std::string& label = fresh.label_name(s.label);
            const cgroup_rollup::series* mine = r.find(label, s.dc, s.net_type);
            ASSERT_NE(mine, nullptr) << step << " " << label << " dc " << s.dc;
            EXPECT_EQ(mine->live, s.live) << step << " " << label << " dc " << s.dc;
        });
    };
    r.fold(rows, names);
    check("first");
    r.fold(rows, names);
    check("same rows");
    for (traffic_row& x : rows) {
        x.rx_bytes += 5;
    }
    std::rotate(rows.begin(), rows.begin() + 17, rows.end());
    std::swap(rows[3], rows[60]);
    r.fold(rows, names);
    check("reordered");
    rows.insert(rows.begin() + 30, row(41, 2, 77, 88));
    rows.erase(rows.begin() + 50, rows.begin() + 53);
    names.paths[41] = "/s9/c41";
    r.fold(rows, names);
    check("a key added, keys gone");
    names.paths[5] = "/s8/c5";  // renamed: its rows move to another label
    r.fold(rows, names);
    check("renamed");
    names.held = {6};
    r.fold(rows, names);
    std::erase_if(rows, [](const traffic_row& x) { return x.cgroup_id == 6; });
    check("held");
}

TEST(AgentMetricsRollup, CapSendsTheRestAndUnresolvedToOther) {
    fake_names names;
    names.paths = {{1, "/c"}, {2, "/a"}, {3, "/b"}};
    cgroup_rollup r({.cgroup_depth = 3, .max_cgroups = 2});
    // id 9 has no path: "other". The cap takes new labels in name order: /a and /b.
    const traffic_row rows[] = {row(1, 0, 1, 0), row(2, 0, 10, 0), row(3, 0, 100, 0),
                                row(9, 0, 1000, 0)};
    r.fold(rows, names);
    EXPECT_EQ(value(r, "/a").rx_bytes, 10u);
    EXPECT_EQ(value(r, "/b").rx_bytes, 100u);
    EXPECT_EQ(r.find("/c", 0, 0), nullptr);
    EXPECT_EQ(value(r, "other").rx_bytes, 1001u);
    EXPECT_EQ(r.labels_in_use(), 3u);  // /a, /b, other
}

TEST(AgentMetricsRollup, RemovedCgroupsCountsStayInTheirLabel) {
    fake_names names;
    names.paths = {{1, "/system.slice/a.service"}, {2, "/system.slice/b.service"}};
    cgroup_rollup r({.cgroup_depth = 1, .max_cgroups = 10});
    auto t0 = cgroup_rollup::clock::time_point{} + 1h;
    const traffic_row before[] = {row(1, 0, 500, 50), row(2, 0, 300, 30)};
    r.fold(before, names, t0);
    EXPECT_EQ(value(r, "/system.slice").rx_bytes, 800u);

    // Cgroup 1 is removed: its keys are deleted with their final values (more than the last
    // scrape saw), and the next fold no longer has its rows.
    r.retire(&names.paths[1], 0, 0, {600, 6, 60, 1}, t0 + 10s);
    const traffic_row after[] = {row(2, 0, 350, 40)};
    r.fold(after, names, t0 + 10s);
    const traffic_counters v = value(r, "/system.slice");
    EXPECT_EQ(v.rx_bytes, 950u);
    EXPECT_EQ(v.tx_bytes, 100u);
    EXPECT_GE(v.rx_bytes, 800u);

    // The last cgroup goes too: the series keeps everything for the grace period, then ends.
    r.retire(&names.paths[2], 0, 0, {350, 3, 40, 1}, t0 + 20s);
    r.fold({}, names, t0 + 20s);
    EXPECT_EQ(value(r, "/system.slice").rx_bytes, 950u);
    r.fold({}, names, t0 + 20s + 4min);
    EXPECT_EQ(value(r, "/system.slice").rx_bytes, 950u);
    r.fold({}, names, t0 + 20s + 6min);
    EXPECT_EQ(r.find("/system.slice", 0, 0), nullptr);
    EXPECT_EQ(r.labels_in_use(), 0u);
}

TEST(AgentMetricsRollup, OtherNeverDecreases) {
    fake_names names;
    names.paths = {{1, "/a"}, {2, "/b"}, {3, "/c"}};
    cgroup_rollup r({.cgroup_depth = 1, .max_cgroups = 1});
    const traffic_row first[] = {row(1, 0, 10, 0), row(2, 0, 20, 0)};
    r.fold(first, names);
    EXPECT_EQ(value(r, "/a").rx_bytes, 10u);
    EXPECT_EQ(value(r, "other").rx_bytes, 20u);  // /b is over the cap

    // /a goes away (retired, then its label ends after the grace period) and frees its slot;
    // /b keeps going to "other" while it lives, so "other" does not drop.
    r.retire(&names.paths[1], 0, 0, {10, 0, 0, 0});
    const traffic_row second[] = {row(2, 0, 25, 0), row(3, 0, 5, 0)};
    r.fold(second, names, cgroup_rollup::clock::now() + 10min);
    EXPECT_EQ(r.find("/a", 0, 0), nullptr);
    EXPECT_EQ(value(r, "/c").rx_bytes, 5u);  // admitted in the freed slot
    EXPECT_EQ(value(r, "other").rx_bytes, 25u);

    // /b is removed: its counts move to other's retired counts, its label is forgotten, and
    // when a /b shows up again it may be admitted without taking anything out of "other".
    r.retire(&names.paths[2], 0, 0, {26, 0, 0, 0});
    const traffic_row third[] = {row(3, 0, 6, 0)};
    r.fold(third, names);
    EXPECT_EQ(value(r, "other").rx_bytes, 26u);
    names.paths[4] = "/b";
    r.retire(&names.paths[3], 0, 0, {6, 0, 0, 0});
    r.fold({}, names, cgroup_rollup::clock::now() + 20min);  // /c's label ends
    const traffic_row fourth[] = {row(4, 0, 1, 0)};
    r.fold(fourth, names, cgroup_rollup::clock::now() + 20min);
    EXPECT_EQ(value(r, "/b").rx_bytes, 1u);
    EXPECT_EQ(value(r, "other").rx_bytes, 26u);
}

TEST(AgentMetricsRollup, HeldCgroupsWaitForTheirName) {
    fake_names names;
    names.paths = {{1, "/a"}};
    names.held = {2};
    cgroup_rollup r({.cgroup_depth = 1, .max_cgroups = 10});
    const traffic_row rows[] = {row(1, 0, 10, 0), row(2, 0, 20, 0)};
    r.fold(rows, names);
    EXPECT_EQ(value(r, "/a").rx_bytes, 10u);
    EXPECT_EQ(r.find("other", 0, 0), nullptr);
    names.held.clear();
    names.paths[2] = "/a/x";
    r.fold(rows, names);
    EXPECT_EQ(value(r, "/a").rx_bytes, 30u);
}

TEST(AgentMetricsExposition, EscapesLabelValues) {
    EXPECT_EQ(agent::escape_label_value("/plain/path"), "/plain/path");
    EXPECT_EQ(agent::escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    EXPECT_EQ(agent::escape_label_value("caf\xc3\xa9"), "caf\xc3\xa9");
    EXPECT_EQ(agent::escape_label_value("bad\xff"
                                        "byte"),
              "bad\xef\xbf\xbd"
              "byte");
    EXPECT_EQ(agent::escape_label_value("cut\xc3"), "cut\xef\xbf\xbd");
    EXPECT_EQ(agent::escape_label_value("\xed\xa0\x80"),  // a UTF-16 surrogate
              "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(AgentMetricsExposition, RendersTrafficExactly) {
    fake_names names;
    names.paths = {{1, "/system.slice/nginx.service"}, {2, "/we\"ird\\name"}};
    cgroup_rollup r({.cgroup_depth = 2, .max_cgroups = 10});
    traffic_row a = row(1, 2, 1000, 12345678);
    a.net_type = 1;
    const traffic_row rows[] = {a, row(1, 0, 5, 6), row(2, 9, 7, 8), row(77, 1, 1, 1)};
    r.fold(rows, names);
    const std::vector<std::string> dcs = {"other", "ams1", "fra1"};
    const std::vector<std::string> nets = {"other", "backbone"};
    std::string out;
    agent::render_traffic(r, dcs, nets, out);
    const char* families[][2] = {
        {"ebpf_agent_cgroup_receive_bytes_total",
         "Bytes received by sockets of the cgroup (IP length), by the peer's datacenter and "
         "network type."},
        {"ebpf_agent_cgroup_receive_packets_total",
         "Packets received by sockets of the cgroup (wire segments), by the peer's datacenter "
         "and network type."},
        {"ebpf_agent_cgroup_transmit_bytes_total",
         "Bytes sent by sockets of the cgroup (IP length), by the peer's datacenter and network "
         "type."},
        {"ebpf_agent_cgroup_transmit_packets_total",
         "Packets sent by sockets of the cgroup (wire segments), by the peer's datacenter and "
         "network type."},
    };
    const char* values[4][4] = {{"5", "1000", "7", "1"},
                                {"0", "10", "0", "0"},
                                {"6", "12345678", "8", "1"},
                                {"0", "123456", "0", "0"}};
    std::string want;
    for (int f = 0; f < 4; ++f) {
        const std::string n = families[f][0];
        want += "# HELP " + n + " " + families[f][1] + "\n# TYPE " + n + " counter\n";
        want += n + "{cgroup=\"/system.slice/nginx.service\",dc=\"other\",net=\"other\"} " +
                values[f][0] + "\n";
        want += n + "{cgroup=\"/system.slice/nginx.service\",dc=\"fra1\",net=\"backbone\"} " +
                values[f][1] + "\n";
        // dc 9 is out of range: "other".
        want +=
            n + "{cgroup=\"/we\\\"ird\\\\name\",dc=\"other\",net=\"other\"} " + values[f][2] + "\n";
        want += n + "{cgroup=\"other\",dc=\"ams1\",net=\"other\"} " + values[f][3] + "\n";
    }
    EXPECT_EQ(out, want);
}

// A large page (rendered on two threads, from label sets kept between renders) has every
// series once per family in exposition order, and follows new series and renamed dcs.
TEST(AgentMetricsExposition, LargePageFollowsChanges) {
    fake_names names;
    std::vector<traffic_row> rows;
    for (uint64_t id = 1; id <= 3000; ++id) {
        names.paths[id] = "/c" + std::to_string(id);
        rows.push_back(row(id, 1, id, 2 * id));
        rows.push_back(row(id, 2, 3 * id, 4 * id));
    }
    cgroup_rollup r({.cgroup_depth = 1, .max_cgroups = 10000});
    const char* families[] = {
        "ebpf_agent_cgroup_receive_bytes_total", "ebpf_agent_cgroup_receive_packets_total",
        "ebpf_agent_cgroup_transmit_bytes_total", "ebpf_agent_cgroup_transmit_packets_total"};
    auto expected = [&](const std::vector<std::string>& dcs) {
        std::string want;
        for (size_t f = 0; f < 4; ++f) {
            r.for_each([&](const cgroup_rollup::series& s) {
                const traffic_counters v = s.value();
                const uint64_t value[] = {v.rx_bytes, v.rx_packets, v.tx_bytes, v.tx_packets};
                want += std::string(families[f]) + "{cgroup=\"" + r.label_name(s.label) +
                        "\",dc=\"" + (s.dc < dcs.size() ? dcs[s.dc] : "other") +
                        "\",net=\"other\"} " + std::to_string(value[f]) + "\n";
            });
        }
        return want;
    };
    auto series_lines = [](const std::string& page) {
        std::string lines;
        size_t pos = 0;
        while (pos < page.size()) {
            const size_t end = page.find('\n', pos) + 1;
            if (page[pos] != '#') {
                lines.append(page, pos, end - pos);
            }
            pos = end;
        }
        return lines;
    };
    std::vector<std::string> dcs = {"other", "ams1", "fra1"};
    const std::vector<std::string> nets = {"other"};
    std::string out;
    r.fold(rows, names);
    agent::render_traffic(r, dcs, nets, out);
    EXPECT_TRUE(series_lines(out) == expected(dcs));

    rows.push_back(row(3001, 1, 5, 5));
    names.paths[3001] = "/c0";  // sorts first
    r.fold(rows, names);
    out.clear();
    agent::render_traffic(r, dcs, nets, out);
    EXPECT_TRUE(series_lines(out) == expected(dcs));
    EXPECT_EQ(r.series_count(), 6001u);

    dcs[2] = "sas";
    out.clear();
    agent::render_traffic(r, dcs, nets, out);
    EXPECT_TRUE(series_lines(out) == expected(dcs));
    EXPECT_NE(out.find("dc=\"sas\""), std::string::npos);
}

TEST(AgentMetricsExposition, RendersSelfMetricsExactly) {
    agent::self_state self;
    self.version = "0.1.0";
    self.revision = "abc123";
    self.local_dc = "fra1";
    self.config_hash = "0123456789ab";
    self.last_reload_ok = true;
    self.last_reload_time = 1718000000.5;
    self.programs = {{"net_stat_tx", "cgroup_inet_egress", "link", true, 42, 7},
                     {"tcp_rto", "cgroup_sock_ops", "multi", false, 43, 0}};
    self.maps = {{"networks", 12, 4096}};
    agent::counter_snapshot snap;
    snap.fills = {{"stat_dc", 3, 65536}};
    snap.has_errors = true;
    snap.uncounted[NET_STAT_ERR_DC_TX_FULL] = {1500, 1};
    snap.uncounted[NET_STAT_ERR_CGROUP_RX_FULL] = {60, 2};
    agent::process_stats p{
        .resident_bytes = 4096000, .start_time = 1717999999.25, .cpu_seconds = 0.5, .open_fds = 17};
    std::string out;
    agent::render_self(self, snap, 3, 0.0125, p, out);
    const std::string want =
        "# HELP ebpf_agent_build_info The agent's version and source revision.\n"
        "# TYPE ebpf_agent_build_info gauge\n"
        "ebpf_agent_build_info{version=\"0.1.0\",revision=\"abc123\"} 1\n"
        "# HELP ebpf_agent_node_info The datacenter this host is in.\n"
        "# TYPE ebpf_agent_node_info gauge\n"
        "ebpf_agent_node_info{dc=\"fra1\"} 1\n"
        "# HELP ebpf_agent_program_attached Whether the program is attached (1) or not (0); "
        "mode is link or multi.\n"
        "# TYPE ebpf_agent_program_attached gauge\n"
        "ebpf_agent_program_attached{program=\"net_stat_tx\",attach_type=\"cgroup_inet_egress\","
        "mode=\"link\"} 1\n"
        "ebpf_agent_program_attached{program=\"tcp_rto\",attach_type=\"cgroup_sock_ops\","
        "mode=\"multi\"} 0\n"
        "# HELP ebpf_agent_program_info The kernel ids of the program and of its link (empty "
        "without a link).\n"
        "# TYPE ebpf_agent_program_info gauge\n"
        "ebpf_agent_program_info{program=\"net_stat_tx\",prog_id=\"42\",link_id=\"7\"} 1\n"
        "ebpf_agent_program_info{program=\"tcp_rto\",prog_id=\"43\",link_id=\"\"} 1\n"
        "# HELP ebpf_agent_config_info The short sha256 of the effective config.\n"
        "# TYPE ebpf_agent_config_info gauge\n"
        "ebpf_agent_config_info{hash=\"0123456789ab\"} 1\n"
        "# HELP ebpf_agent_config_last_reload_successful Whether the last config (re)load "
        "succeeded.\n"
        "# TYPE ebpf_agent_config_last_reload_successful gauge\n"
        "ebpf_agent_config_last_reload_successful 1\n"
        "# HELP ebpf_agent_config_last_reload_success_timestamp_seconds When the config was last "
        "(re)loaded successfully, in unix seconds.\n"
        "# TYPE ebpf_agent_config_last_reload_success_timestamp_seconds gauge\n"
        "ebpf_agent_config_last_reload_success_timestamp_seconds 1718000000.5\n"
        "# HELP ebpf_agent_map_entries Entries in the BPF map.\n"
        "# TYPE ebpf_agent_map_entries gauge\n"
        "ebpf_agent_map_entries{map=\"stat_dc\"} 3\n"
        "ebpf_agent_map_entries{map=\"networks\"} 12\n"
        "# HELP ebpf_agent_map_max_entries The BPF map's capacity.\n"
        "# TYPE ebpf_agent_map_max_entries gauge\n"
        "ebpf_agent_map_max_entries{map=\"stat_dc\"} 65536\n"
        "ebpf_agent_map_max_entries{map=\"networks\"} 4096\n"
        "# HELP ebpf_agent_uncounted_bytes_total Bytes the counter map could not count because "
        "it was full.\n"
        "# TYPE ebpf_agent_uncounted_bytes_total counter\n"
        "ebpf_agent_uncounted_bytes_total{map=\"stat_cgroup\",direction=\"transmit\"} 0\n"
        "ebpf_agent_uncounted_bytes_total{map=\"stat_cgroup\",direction=\"receive\"} 60\n"
        "ebpf_agent_uncounted_bytes_total{map=\"stat_dc\",direction=\"transmit\"} 1500\n"
        "ebpf_agent_uncounted_bytes_total{map=\"stat_dc\",direction=\"receive\"} 0\n"
        "# HELP ebpf_agent_uncounted_packets_total Packets the counter map could not count "
        "because it was full.\n"
        "# TYPE ebpf_agent_uncounted_packets_total counter\n"
        "ebpf_agent_uncounted_packets_total{map=\"stat_cgroup\",direction=\"transmit\"} 0\n"
        "ebpf_agent_uncounted_packets_total{map=\"stat_cgroup\",direction=\"receive\"} 2\n"
        "ebpf_agent_uncounted_packets_total{map=\"stat_dc\",direction=\"transmit\"} 1\n"
        "ebpf_agent_uncounted_packets_total{map=\"stat_dc\",direction=\"receive\"} 0\n"
        "# HELP ebpf_agent_cgroups_tracked Distinct cgroup label values after roll-up, "
        "\"other\" included.\n"
        "# TYPE ebpf_agent_cgroups_tracked gauge\n"
        "ebpf_agent_cgroups_tracked 3\n"
        "# HELP ebpf_agent_scrape_duration_seconds Time this scrape took to read the maps and "
        "render the counters.\n"
        "# TYPE ebpf_agent_scrape_duration_seconds gauge\n"
        "ebpf_agent_scrape_duration_seconds 0.0125\n"
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds_total counter\n"
        "process_cpu_seconds_total 0.5\n"
        "# HELP process_open_fds Number of open file descriptors.\n"
        "# TYPE process_open_fds gauge\n"
        "process_open_fds 17\n"
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        "process_resident_memory_bytes 4096000\n"
        "# HELP process_start_time_seconds Start time of the process since unix epoch in "
        "seconds.\n"
        "# TYPE process_start_time_seconds gauge\n"
        "process_start_time_seconds 1717999999.25\n";
    EXPECT_EQ(out, want);
}

TEST(AgentMetricsExposition, ProcessStatsAreSane) {
    const agent::process_stats p = agent::read_process_stats();
    EXPECT_GT(p.resident_bytes, 1e5);
    EXPECT_GT(p.open_fds, 2);
    const double now = double(std::time(nullptr));
    EXPECT_LE(p.start_time, now + 1);
    EXPECT_GT(p.start_time, now - 24 * 3600);
}

// ---------------------------------------------------------------------------------------------
// The cgroup walk, on a directory tree of the test's own (readdir gives inode numbers there as
// on cgroupfs).

class temp_tree {
  public:
    temp_tree() {
        char tmpl[] = "/tmp/agent-names-XXXXXX";
        if (::mkdtemp(tmpl)) {
            root_ = tmpl;
        }
    }
    ~temp_tree() {
        if (!root_.empty()) {
            std::system(("rm -rf " + root_).c_str());
        }
    }
    const std::string& root() const { return root_; }
    uint64_t mkdir(const std::string& rel) {
        const std::string p = root_ + rel;
        EXPECT_EQ(::mkdir(p.c_str(), 0755), 0) << p;
        return ino(rel);
    }
    uint64_t ino(const std::string& rel) const {
        struct stat st {};
        return ::stat((root_ + rel).c_str(), &st) == 0 ? st.st_ino : 0;
    }
    void rmdir(const std::string& rel) { EXPECT_EQ(::rmdir((root_ + rel).c_str()), 0) << rel; }

  private:
    std::string root_;
};

TEST(AgentMetricsNames, ResolvesPathsAndNoticesRemoval) {
    temp_tree t;
    ASSERT_FALSE(t.root().empty());
    const uint64_t a = t.mkdir("/a");
    const uint64_t ab = t.mkdir("/a/b");
    const uint64_t c = t.mkdir("/c");
    ::close(::creat((t.root() + "/a/file").c_str(), 0644));  // files are not cgroups

    agent::cgroup_names names(t.root() + "/", {.min_rewalk = 1s, .max_age = 60s});
    const auto t0 = agent::cgroup_names::clock::time_point{} + 1h;
    std::string err;
    const uint64_t ids[] = {t.ino(""), a, ab, c};
    EXPECT_TRUE(names.update(ids, err, t0).empty());
    EXPECT_EQ(err, "");
    EXPECT_EQ(names.walks(), 1u);
    EXPECT_EQ(*names.lookup(t.ino("")).path, "/");
    EXPECT_EQ(*names.lookup(ab).path, "/a/b");
    EXPECT_EQ(*names.lookup(c).path, "/c");
    EXPECT_EQ(names.alive(), 4u);

    // A new directory is found by the walk its first sighting causes.
    const uint64_t d = t.mkdir("/a/b/d");
    const uint64_t ids2[] = {ab, d};
    EXPECT_TRUE(names.update(ids2, err, t0 + 2s).empty());
    EXPECT_EQ(names.walks(), 2u);
    EXPECT_EQ(*names.lookup(d).path, "/a/b/d");

    // Within min_rewalk, an unknown id is held, not walked for and not gone.
    const uint64_t e = t.mkdir("/e");
    const uint64_t ids3[] = {ab, d, e};
    EXPECT_TRUE(names.update(ids3, err, t0 + 2500ms).empty());
    EXPECT_EQ(names.walks(), 2u);
    EXPECT_TRUE(names.lookup(e).hold);
    EXPECT_EQ(names.lookup(e).path, nullptr);

    // Removed: gone after the next walk, still with its path until no longer listed.
    t.rmdir("/a/b/d");
    auto gone = names.update(ids3, err, t0 + 4s);
    EXPECT_EQ(names.walks(), 3u);
    ASSERT_EQ(gone.size(), 1u);
    EXPECT_EQ(gone[0], d);
    EXPECT_EQ(*names.lookup(d).path, "/a/b/d");
    EXPECT_EQ(*names.lookup(e).path, "/e");
    const uint64_t ids4[] = {ab, e};
    EXPECT_TRUE(names.update(ids4, err, t0 + 4s).empty());
    EXPECT_EQ(names.lookup(d).path, nullptr);

    // An id no walk finds is gone once a walk has looked for it.
    const uint64_t ids5[] = {ab, 999999999};
    EXPECT_TRUE(names.update(ids5, err, t0 + 4s).empty());
    EXPECT_TRUE(names.lookup(999999999).hold);
    gone = names.update(ids5, err, t0 + 6s);
    ASSERT_EQ(gone.size(), 1u);
    EXPECT_EQ(gone[0], 999999999u);
    EXPECT_FALSE(names.lookup(999999999).hold);

    // Without new ids the mount is walked again after max_age, and removals are noticed.
    t.rmdir("/c");
    const uint64_t ids6[] = {ab, c};
    EXPECT_TRUE(names.update(ids6, err, t0 + 30s).empty());
    gone = names.update(ids6, err, t0 + 70s);
    ASSERT_EQ(gone.size(), 1u);
    EXPECT_EQ(gone[0], c);
}

TEST(AgentMetricsNames, AFailedWalkRemovesNothing) {
    temp_tree t;
    const uint64_t a = t.mkdir("/a");
    agent::cgroup_names names(t.root() + "/a");
    std::string err;
    const uint64_t ids[] = {a};
    EXPECT_TRUE(names.update(ids, err).empty());
    t.rmdir("/a");  // the mount itself is gone: the walk fails
    auto r = names.walk();
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message().find(t.root() + "/a"), std::string::npos);
    EXPECT_NE(names.lookup(a).path, nullptr);
}

TEST(AgentMetricsNames, WalksWhileDirectoriesComeAndGo) {
    temp_tree t;
    const uint64_t stable = t.mkdir("/stable");
    for (int i = 0; i < 20; ++i) {
        t.mkdir("/churn" + std::to_string(i));
    }
    std::atomic<bool> done{false};
    std::thread churn([&] {
        for (int round = 0; !done; ++round) {
            for (int i = 0; i < 20; ++i) {
                const std::string base = t.root() + "/churn" + std::to_string(i);
                ::mkdir((base + "/x").c_str(), 0755);
                ::rmdir((base + "/x").c_str());
                ::rmdir(base.c_str());
                ::mkdir(base.c_str(), 0755);
            }
        }
    });
    agent::cgroup_names names(t.root());
    for (int i = 0; i < 200; ++i) {
        auto r = names.walk();
        ASSERT_TRUE(r.has_value()) << r.error().message();
        ASSERT_NE(names.lookup(stable).path, nullptr);
        EXPECT_EQ(*names.lookup(stable).path, "/stable");
    }
    done = true;
    churn.join();
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct http_reply {
    int status = 0;
    std::string headers, body;
};

// Sends one request on a new connection and reads the reply until the server closes it.
http_reply fetch(uint16_t port, const std::string& method, const std::string& path) {
    http_reply r;
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(s);
        return r;
    }
    const std::string req = method + " " + path +
                            " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                            "Content-Length: 0\r\n\r\n";
    EXPECT_EQ(::send(s, req.data(), req.size(), MSG_NOSIGNAL), ssize_t(req.size()));
    std::string all;
    char buf[65536];
    ssize_t n;
    while ((n = ::recv(s, buf, sizeof buf, 0)) > 0) {
        all.append(buf, size_t(n));
    }
    ::close(s);
    const size_t end = all.find("\r\n\r\n");
    if (all.compare(0, 9, "HTTP/1.1 ") != 0 || end == std::string::npos) {
        return r;
    }
    r.status = std::atoi(all.c_str() + 9);
    r.headers = all.substr(0, end);
    r.body = all.substr(end + 4);
    return r;
}

bool can_connect(uint16_t port) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(s);
    return ok;
}

TEST(AgentMetricsHttp, ServesMetricsHealthAndReadiness) {
    std::atomic<bool> ready{false};
    std::atomic<int> scrapes{0};
    agent::http_handlers h;
    h.metrics = [&](std::string& body) {
        ++scrapes;
        body = "# TYPE x counter\nx 1\n";
    };
    h.ready = [&](std::string& reason) {
        if (!ready) {
            reason = "attaching net_stat_tx";
        }
        return ready.load();
    };
    agent::http_server server;
    std::string err;
    ASSERT_TRUE(agent::http_server::start("127.0.0.1:0", h, server, err)) << err;
    const uint16_t port = server.port();
    ASSERT_NE(port, 0);

    http_reply m = fetch(port, "GET", "/metrics");
    EXPECT_EQ(m.status, 200);
    EXPECT_EQ(m.body, "# TYPE x counter\nx 1\n");
    EXPECT_NE(m.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos)
        << m.headers;
    EXPECT_EQ(scrapes.load(), 1);
    EXPECT_EQ(fetch(port, "GET", "/metrics?x=1").status, 200);

    EXPECT_EQ(fetch(port, "GET", "/healthz").status, 200);
    http_reply r = fetch(port, "GET", "/readyz");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body, "attaching net_stat_tx\n");
    ready = true;
    EXPECT_EQ(fetch(port, "GET", "/readyz").status, 200);

    EXPECT_EQ(fetch(port, "GET", "/nope").status, 404);
    http_reply post = fetch(port, "POST", "/metrics");
    EXPECT_EQ(post.status, 405);
    EXPECT_NE(post.headers.find("Allow: GET"), std::string::npos);

    // stop() returns promptly with an idle keep-alive connection open, and joins the thread.
    int idle = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(idle, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const auto t0 = std::chrono::steady_clock::now();
    server.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
    EXPECT_FALSE(server.running());
    EXPECT_EQ(server.port(), 0);
    EXPECT_FALSE(can_connect(port));
    // The server closed it: a FIN when it had accepted it, a reset when it was still waiting
    // in the listen queue.
    char c;
    const ssize_t n = ::recv(idle, &c, 1, 0);
    EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " " << std::strerror(errno);
    ::close(idle);
    server.stop();  // again: nothing to do
}

TEST(AgentMetricsHttp, KeepAliveServesSeveralRequests) {
    agent::http_handlers h;
    // Each page is rendered into the memory of the one before, given back once sent.
    std::atomic<int> recycled{0};
    std::atomic<bool> reused{true};
    std::atomic<const char*> last{nullptr};
    std::string spare;
    h.metrics = [&](std::string& body) {
        body.swap(spare);
        if (last.load() != nullptr && body.data() != last.load()) {
            reused = false;
        }
        body.assign(100000, 'x');
    };
    h.recycle = [&](std::string&& body) {
        ++recycled;
        last = body.data();
        spare = std::move(body);
    };
    agent::http_server server;
    std::string err;
    ASSERT_TRUE(agent::http_server::start("127.0.0.1:0", h, server, err)) << err;
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(server.port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(::send(s, req.data(), req.size(), MSG_NOSIGNAL), ssize_t(req.size()));
        std::string got;
        char buf[65536];
        size_t want = 0;
        while (want == 0 || got.size() < want) {
            ssize_t n = ::recv(s, buf, sizeof buf, 0);
            ASSERT_GT(n, 0);
            got.append(buf, size_t(n));
            const size_t end = got.find("\r\n\r\n");
            if (want == 0 && end != std::string::npos) {
                const size_t cl = got.find("Content-Length: ");
                ASSERT_NE(cl, std::string::npos);
                want = end + 4 + std::strtoul(got.c_str() + cl + 16, nullptr, 10);
            }
        }
        EXPECT_EQ(got.size(), want);
        EXPECT_EQ(got.compare(0, 12, "HTTP/1.1 200"), 0);
    }
    ::close(s);
    // The server gives a body back before it reads the next request on the connection.
    EXPECT_GE(recycled.load(), 2);
    EXPECT_TRUE(reused.load()) << "a page rendered into fresh memory";
}

TEST(AgentMetricsHttp, BadOrBusyAddressesSayWhich) {
    agent::http_server a, b;
    std::string err;
    EXPECT_FALSE(agent::http_server::start("localhost:9977", {}, a, err));
    EXPECT_NE(err.find("localhost"), std::string::npos) << err;
    EXPECT_NE(err.find("not an IP address"), std::string::npos) << err;
    EXPECT_FALSE(agent::http_server::start("127.0.0.1", {}, a, err));
    EXPECT_NE(err.find("\"127.0.0.1\""), std::string::npos) << err;
    EXPECT_FALSE(agent::http_server::start("127.0.0.1:70000", {}, a, err));
    EXPECT_NE(err.find("port"), std::string::npos) << err;
    EXPECT_FALSE(agent::http_server::start("::1:80", {}, a, err));
    EXPECT_NE(err.find("brackets"), std::string::npos) << err;
    EXPECT_FALSE(agent::http_server::start("192.0.2.1:9977", {}, a, err));  // not ours
    EXPECT_NE(err.find("192.0.2.1:9977"), std::string::npos) << err;

    ASSERT_TRUE(agent::http_server::start("127.0.0.1:0", {}, a, err)) << err;
    const std::string busy = "127.0.0.1:" + std::to_string(a.port());
    EXPECT_FALSE(agent::http_server::start(busy, {}, b, err));
    EXPECT_NE(err.find(busy), std::string::npos) << err;
    EXPECT_NE(err.find("in use"), std::string::npos) << err;
    EXPECT_FALSE(b.running());

    agent::http_server v6;
    if (agent::http_server::start("[::1]:0", {}, v6, err)) {
        EXPECT_NE(v6.port(), 0);
    }
}

}  // namespace
