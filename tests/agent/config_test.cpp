// The agent's config: the embedded default, one test per kind of mistake (each message names
// file:line:column and the key), value forms, reload classification and the config hash.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "config.hpp"

namespace {

constexpr const char* k_file = "/etc/ebpf-agent.toml";

// Parses text that must be rejected; returns the first message.
std::string error_of(const std::string& text) {
    agent::config c;
    agent::config_error e;
    EXPECT_FALSE(agent::parse_config(text, k_file, c, e)) << text;
    EXPECT_FALSE(e.errors.empty());
    return e.message;
}

agent::config parse_ok(const std::string& text) {
    agent::config c;
    agent::config_error e;
    EXPECT_TRUE(agent::parse_config(text, k_file, c, e)) << e.message;
    return c;
}

// A small valid policy that the mistakes below start from.
const std::string k_base = R"([network]
datacenters = ["dc1", "dc2"]
types = ["backbone", "fastbone"]
local_dc = "dc1"

[[networks]]
prefix = "2001:db8:a100::/40"
dc = "dc1"
type = "backbone"
)";

TEST(AgentConfig, EmbeddedDefaultParses) {
    agent::config c;
    agent::config_error e;
    ASSERT_TRUE(agent::default_config(c, e)) << e.message;
    EXPECT_EQ(c.source, "<embedded>");
    EXPECT_EQ(c.cgroup, "");
    EXPECT_EQ(c.bpffs_dir, "/sys/fs/bpf/ebpf-agent");
    EXPECT_EQ(c.on_stop, agent::on_stop_mode::detach);
    EXPECT_EQ(c.stats_interval, 10u);
    EXPECT_EQ(c.log_level_, agent::log_level::info);
    EXPECT_EQ(c.log_format_, agent::log_format::logfmt);
    EXPECT_EQ(c.metrics_listen, "127.0.0.1:9977");
    EXPECT_EQ(c.metrics_host, "127.0.0.1");
    EXPECT_EQ(c.metrics_port, 9977);
    EXPECT_EQ(c.cgroup_depth, 3u);
    EXPECT_EQ(c.max_cgroups, 4096u);
    EXPECT_TRUE(c.programs.tcp_rto);
    EXPECT_TRUE(c.programs.tcp_tos);
    EXPECT_FALSE(c.programs.tclass_lock);
    EXPECT_FALSE(c.programs.net_stat) << "net_stat_dc's maps give the per-cgroup totals";
    EXPECT_TRUE(c.programs.net_stat_dc);
    EXPECT_FALSE(c.lock_ip_tos);
    EXPECT_EQ(c.net_stat_max_cgroups, 4096u);
    EXPECT_EQ(c.net_stat_max_dc_entries, 16384u);
    EXPECT_EQ(c.datacenters, (std::vector<std::string>{"dc1", "dc2"}));
    EXPECT_EQ(c.net_types, (std::vector<std::string>{"backbone", "fastbone"}));
    EXPECT_EQ(c.local_dc, 1u);
    EXPECT_EQ(c.rules.size(), 7u);
    ASSERT_EQ(c.project_sets.size(), 1u);
    EXPECT_EQ(c.project_sets[0].name, "batch");
    EXPECT_EQ(c.project_sets[0].projects, (std::vector<uint32_t>{0x1001, 0x1002, 0x2a00}));
    EXPECT_FALSE(c.listen_dscp);
}

TEST(AgentConfig, EmptyFileHasTheEmbeddedDefaultsWithoutAPolicy) {
    agent::config c = parse_ok("");
    agent::config d;
    agent::config_error e;
    ASSERT_TRUE(agent::default_config(d, e));
    EXPECT_EQ(c.bpffs_dir, d.bpffs_dir);
    EXPECT_EQ(c.metrics_listen, d.metrics_listen);
    EXPECT_EQ(c.programs.tcp_rto, d.programs.tcp_rto);
    EXPECT_EQ(c.programs.tclass_lock, d.programs.tclass_lock);
    EXPECT_EQ(c.net_stat_max_dc_entries, d.net_stat_max_dc_entries);
    EXPECT_TRUE(c.networks.empty());
    EXPECT_TRUE(c.rules.empty());
    EXPECT_EQ(c.local_dc, 0u);
    EXPECT_TRUE(agent::restart_only_changes(c, d).empty());
}

TEST(AgentConfig, UnknownTopLevelKey) {
    EXPECT_EQ(error_of("[agnet]\ncgroup = \"\"\n"),
              "/etc/ebpf-agent.toml:1:2: agnet: unknown key (did you mean \"agent\"?)");
    EXPECT_EQ(error_of("verbose = true\n"),
              "/etc/ebpf-agent.toml:1:1: verbose: unknown key (expected one of: agent, log, "
              "metrics, programs, tclass_lock, net_stat, network, networks, project_sets, rules, "
              "tcp_tos)");
}

TEST(AgentConfig, UnknownNestedKey) {
    EXPECT_EQ(error_of("[[rules]]\ndscp = \"CS1\"\ndscpp = 1\n"),
              "/etc/ebpf-agent.toml:3:1: rules[0].dscpp: unknown key (did you mean \"dscp\"?)");
    EXPECT_EQ(error_of("metrics = { listen = \"\", port = 1 }\n"),
              "/etc/ebpf-agent.toml:1:26: metrics.port: unknown key (expected one of: listen, "
              "cgroup_depth, max_cgroups)");
    EXPECT_EQ(error_of(k_base + "color = \"red\"\n"),
              "/etc/ebpf-agent.toml:10:1: networks[0].color: unknown key (expected one of: "
              "prefix, dc, type)");
}

TEST(AgentConfig, WrongType) {
    EXPECT_EQ(error_of("[agent]\nstats_interval = \"10\"\n"),
              "/etc/ebpf-agent.toml:2:18: agent.stats_interval: expected an integer, got a "
              "string");
    EXPECT_EQ(error_of("[programs]\ntcp_rto = 1\n"),
              "/etc/ebpf-agent.toml:2:11: programs.tcp_rto: expected a boolean (true or false), "
              "got an integer");
    EXPECT_EQ(error_of("log = \"debug\"\n"),
              "/etc/ebpf-agent.toml:1:7: log: expected a table, got a string");
    EXPECT_EQ(error_of("[rules]\n"),
              "/etc/ebpf-agent.toml:1:1: rules: expected an array, got a table");
}

TEST(AgentConfig, BadValues) {
    EXPECT_EQ(error_of("[agent]\non_stop = \"pause\"\n"),
              "/etc/ebpf-agent.toml:2:11: agent.on_stop: unknown value \"pause\" (expected "
              "\"detach\", \"keep\")");
    EXPECT_EQ(error_of("[log]\nlevel = \"trace\"\n"),
              "/etc/ebpf-agent.toml:2:9: log.level: unknown level \"trace\" (expected debug, "
              "info, warn or error)");
    EXPECT_EQ(error_of("[metrics]\ncgroup_depth = 17\n"),
              "/etc/ebpf-agent.toml:2:16: metrics.cgroup_depth: must be 1..16, got 17");
    EXPECT_EQ(error_of("[net_stat]\nmax_cgroups = 0\n"),
              "/etc/ebpf-agent.toml:2:15: net_stat.max_cgroups: must be 64..1048576, got 0");
    EXPECT_EQ(error_of("[network]\npeer_cache_entries = 100\n"),
              "/etc/ebpf-agent.toml:2:22: network.peer_cache_entries: must be 1024..1048576, got "
              "100");
    EXPECT_EQ(error_of("[agent]\nbpffs_dir = \"ebpf-agent\"\n"),
              "/etc/ebpf-agent.toml:2:13: agent.bpffs_dir: must be an absolute path below a "
              "bpffs mount");
    EXPECT_EQ(error_of("[agent]\ncgroup = \"system.slice\"\n"),
              "/etc/ebpf-agent.toml:2:10: agent.cgroup: must be an absolute path (or \"\" for "
              "the root of the cgroup2 mount)");
}

TEST(AgentConfig, BadCidr) {
    auto with_prefix = [](const std::string& p) {
        return "[network]\ndatacenters = [\"dc1\"]\ntypes = [\"bb\"]\nlocal_dc = \"dc1\"\n"
               "[[networks]]\nprefix = \"" +
               p + "\"\ndc = \"dc1\"\ntype = \"bb\"\n";
    };
    EXPECT_EQ(error_of(with_prefix("2001:db8::/129")),
              "/etc/ebpf-agent.toml:6:10: networks[0].prefix: bad prefix \"2001:db8::/129\": an "
              "IPv6 prefix length is at most 128");
    EXPECT_EQ(error_of(with_prefix("192.0.2.0/33")),
              "/etc/ebpf-agent.toml:6:10: networks[0].prefix: bad prefix \"192.0.2.0/33\": an "
              "IPv4 prefix length is at most 32");
    EXPECT_EQ(error_of(with_prefix("dc1.example/24")),
              "/etc/ebpf-agent.toml:6:10: networks[0].prefix: bad prefix \"dc1.example/24\": not "
              "an IPv4 or IPv6 address");
    EXPECT_EQ(error_of(with_prefix("2001:db8::1/32")),
              "/etc/ebpf-agent.toml:6:10: networks[0].prefix: bad prefix \"2001:db8::1/32\": "
              "bits are set past the prefix length (the network is 2001:db8::/32)");
    EXPECT_EQ(error_of(with_prefix("192.0.2.0/x")),
              "/etc/ebpf-agent.toml:6:10: networks[0].prefix: bad prefix \"192.0.2.0/x\": the "
              "prefix length is not a number");
    EXPECT_EQ(error_of("[network]\nyattl_exclude = [\"2001:db8::/32\", \"10.0.0.0/8\", "
                       "\"2001:db8::/33x\"]\n"),
              "/etc/ebpf-agent.toml:2:49: network.yattl_exclude[2]: bad prefix "
              "\"2001:db8::/33x\": the prefix length is not a number");
}

TEST(AgentConfig, BadDscp) {
    std::string rules = k_base + "[[rules]]\ndscp = \"CS1\"\n[[rules]]\ndscp = 10\n[[rules]]\n";
    EXPECT_EQ(error_of(rules + "dscp = \"CS9\"\n"),
              "/etc/ebpf-agent.toml:15:8: rules[2].dscp: unknown class \"CS9\" (expected "
              "CS0..CS7, AFxy, EF or 0..63)");
    EXPECT_EQ(error_of(rules + "dscp = \"AF44\"\n"),
              "/etc/ebpf-agent.toml:15:8: rules[2].dscp: unknown class \"AF44\" (expected "
              "CS0..CS7, AFxy, EF or 0..63)");
    EXPECT_EQ(error_of(rules + "dscp = 64\n"),
              "/etc/ebpf-agent.toml:15:8: rules[2].dscp: DSCP 64 is out of range (expected "
              "0..63)");
    EXPECT_EQ(error_of("[tcp_tos]\nlisten_dscp = true\n"),
              "/etc/ebpf-agent.toml:2:15: tcp_tos.listen_dscp: expected a class name or an "
              "integer, got a boolean");
}

TEST(AgentConfig, UnknownDatacenterOrTypeInANetwork) {
    EXPECT_EQ(error_of(k_base + "[[networks]]\nprefix = \"192.0.2.0/24\"\ndc = \"dc3\"\n"
                                "type = \"backbone\"\n"),
              "/etc/ebpf-agent.toml:12:6: networks[1].dc: unknown datacenter \"dc3\" (declared "
              "in network.datacenters: \"dc1\", \"dc2\")");
    EXPECT_EQ(error_of(k_base + "[[networks]]\nprefix = \"192.0.2.0/24\"\ndc = \"dc2\"\n"
                                "type = \"internet\"\n"),
              "/etc/ebpf-agent.toml:13:8: networks[1].type: unknown network type \"internet\" "
              "(declared in network.types: \"backbone\", \"fastbone\")");
    EXPECT_EQ(error_of(k_base + "[[networks]]\nprefix = \"192.0.2.0/24\"\ntype = \"backbone\"\n"),
              "/etc/ebpf-agent.toml:10:1: networks[1].dc: missing (required)");
    EXPECT_EQ(error_of(k_base + "[[rules]]\nnetwork_type = \"fastbon\"\n"),
              "/etc/ebpf-agent.toml:11:16: rules[0].network_type: unknown network type "
              "\"fastbon\" (declared in network.types: \"backbone\", \"fastbone\")");
}

TEST(AgentConfig, LocalDcUndeclaredOrMissing) {
    std::string text = k_base;
    text.replace(text.find("local_dc = \"dc1\""), 16, "local_dc = \"dc9\"");
    EXPECT_EQ(error_of(text),
              "/etc/ebpf-agent.toml:4:12: network.local_dc: unknown datacenter \"dc9\" (declared "
              "in network.datacenters: \"dc1\", \"dc2\")");
    text = k_base;
    text.replace(text.find("local_dc = \"dc1\"\n"), 17, "");
    EXPECT_EQ(error_of(text),
              "/etc/ebpf-agent.toml:1:1: network.local_dc: required when networks are declared "
              "(it tells same_dc from cross_dc)");
    // Without any network, no local datacenter is needed.
    parse_ok("[network]\ndatacenters = [\"dc1\"]\n");
}

TEST(AgentConfig, DuplicatePrefix) {
    EXPECT_EQ(error_of(k_base + "[[networks]]\nprefix = \"2001:db8:a100:0::/40\"\ndc = \"dc2\"\n"
                                "type = \"backbone\"\n"),
              "/etc/ebpf-agent.toml:11:10: networks[1].prefix: 2001:db8:a100::/40 is declared "
              "twice (also networks[0].prefix, line 7)");
    EXPECT_EQ(error_of("[network]\nstateful_services = [\"192.0.2.1\", \"192.0.2.1/32\"]\n"),
              "/etc/ebpf-agent.toml:2:35: network.stateful_services[1]: 192.0.2.1/32 is listed "
              "twice");
    // A prefix may be both excluded from YaTTL and a stateful service, and a network itself.
    std::string text = k_base;
    text.insert(text.find("local_dc"),
                "yattl_exclude = [\"2001:db8:a100::/40\"]\n"
                "stateful_services = [\"2001:db8:a100::/40\"]\n");
    parse_ok(text);
}

TEST(AgentConfig, TooManyRules) {
    std::string text = k_base;
    for (int i = 0; i < 65; ++i) {
        text += "[[rules]]\ndscp = " + std::to_string(i % 64) + "\n";
    }
    EXPECT_EQ(error_of(text), "/etc/ebpf-agent.toml:138:1: rules[64]: too many rules (at most 64)");
    text.resize(text.rfind("[[rules]]"));
    EXPECT_EQ(parse_ok(text).rules.size(), 64u);
}

TEST(AgentConfig, BadDuration) {
    std::string rule = k_base + "[[rules]]\n";
    EXPECT_EQ(error_of(rule + "rto_init = \"40 ms\"\n"),
              "/etc/ebpf-agent.toml:11:12: rules[0].rto_init: bad duration \"40 ms\" (expected a "
              "number and a unit: us, ms or s, e.g. \"40ms\")");
    EXPECT_EQ(error_of(rule + "rto_init = \"40\"\n"),
              "/etc/ebpf-agent.toml:11:12: rules[0].rto_init: bad duration \"40\" (expected a "
              "number and a unit: us, ms or s, e.g. \"40ms\")");
    EXPECT_EQ(error_of(rule + "rto_init = \"1500us\"\n"),
              "/etc/ebpf-agent.toml:11:12: rules[0].rto_init: 1500us is not a whole number of "
              "milliseconds");
    EXPECT_EQ(error_of(rule + "rto_init = \"0ms\"\n"),
              "/etc/ebpf-agent.toml:11:12: rules[0].rto_init: must be 1ms..120s, got 0s");
    EXPECT_EQ(error_of(rule + "rto_min = \"300ms\"\n"),
              "/etc/ebpf-agent.toml:11:11: rules[0].rto_min: must be 1us..200ms, got 300ms");
    EXPECT_EQ(error_of(rule + "rto_min = 1.5\n"),
              "/etc/ebpf-agent.toml:11:11: rules[0].rto_min: expected a duration string "
              "(\"40ms\") or an integer (ms), got a float");
    EXPECT_EQ(error_of(rule + "rto_min = \"0.0005us\"\n"),
              "/etc/ebpf-agent.toml:11:11: rules[0].rto_min: bad duration \"0.0005us\" (expected "
              "a number and a unit: us, ms or s, e.g. \"40ms\")");
}

TEST(AgentConfig, BadListen) {
    EXPECT_EQ(error_of("[metrics]\nlisten = \"localhost:9977\"\n"),
              "/etc/ebpf-agent.toml:2:10: metrics.listen: bad address \"localhost:9977\": "
              "\"localhost\" is not an IPv4 address (host names are not resolved)");
    EXPECT_EQ(error_of("[metrics]\nlisten = \"::1:9977\"\n"),
              "/etc/ebpf-agent.toml:2:10: metrics.listen: bad address \"::1:9977\": an IPv6 "
              "address goes in brackets, e.g. [::1]:9977");
    EXPECT_EQ(error_of("[metrics]\nlisten = \"127.0.0.1:65536\"\n"),
              "/etc/ebpf-agent.toml:2:10: metrics.listen: bad address \"127.0.0.1:65536\": port "
              "\"65536\" is not a number 0..65535");
    EXPECT_EQ(error_of("[metrics]\nlisten = \"127.0.0.1\"\n"),
              "/etc/ebpf-agent.toml:2:10: metrics.listen: bad address \"127.0.0.1\": expected "
              "IPv4:port or [IPv6]:port");
    EXPECT_EQ(error_of("[metrics]\nlisten = \"[::1]\"\n"),
              "/etc/ebpf-agent.toml:2:10: metrics.listen: bad address \"[::1]\": expected "
              "[IPv6]:port");
    agent::config c = parse_ok("[metrics]\nlisten = \"[::1]:0\"\n");
    EXPECT_EQ(c.metrics_host, "::1");
    EXPECT_EQ(c.metrics_port, 0);
    c = parse_ok("[metrics]\nlisten = \"\"\n");
    EXPECT_EQ(c.metrics_listen, "");
}

TEST(AgentConfig, TomlSyntaxError) {
    EXPECT_EQ(error_of("[agent]\ncgroup = \"/sys/fs/cgroup\n"),
              "/etc/ebpf-agent.toml:2:25: TOML syntax: Error while parsing string: unescaped "
              "control characters other than TAB (U+0009) are explicitly prohibited");
    EXPECT_EQ(error_of("[log]\nlevel = \"info\"\nlevel = \"debug\"\n"),
              "/etc/ebpf-agent.toml:3:9: TOML syntax: Error while parsing key-value pair: "
              "cannot redefine existing string 'level'");
}

TEST(AgentConfig, NamesAndProjectSets) {
    EXPECT_EQ(error_of("[network]\ndatacenters = [\"DC1\"]\n"),
              "/etc/ebpf-agent.toml:2:16: network.datacenters[0]: bad name \"DC1\" (expected "
              "1..32 of a-z, 0-9, '_', '-', starting with a letter or digit)");
    EXPECT_EQ(error_of("[network]\ntypes = [\"backbone\", \"other\"]\n"),
              "/etc/ebpf-agent.toml:2:22: network.types[1]: \"other\" is reserved (it labels "
              "traffic of no declared network)");
    EXPECT_EQ(error_of("[network]\ndatacenters = [\"a\", \"a\"]\n"),
              "/etc/ebpf-agent.toml:2:21: network.datacenters[1]: datacenter \"a\" is declared "
              "twice");
    EXPECT_EQ(error_of("[project_sets]\nbatch = [1, 0]\n"),
              "/etc/ebpf-agent.toml:2:13: project_sets.batch[1]: project id 0 never matches "
              "(addresses without a project carry 0)");
    EXPECT_EQ(error_of("[project_sets]\nbatch = [0x100000000]\n"),
              "/etc/ebpf-agent.toml:2:10: project_sets.batch[0]: project id 4294967296 is out of "
              "range (expected 1..4294967295)");
    EXPECT_EQ(error_of("[project_sets]\nbatch = [\"12\"]\n"),
              "/etc/ebpf-agent.toml:2:10: project_sets.batch[0]: bad project id \"12\" (expected "
              "an integer or a \"0x...\" string)");
    EXPECT_EQ(error_of("[project_sets]\nbatch = [\"0x10\", 16]\n"),
              "/etc/ebpf-agent.toml:2:18: project_sets.batch[1]: project 0x10 is listed twice");
    EXPECT_EQ(error_of("[project_sets]\nbatch = 7\n"),
              "/etc/ebpf-agent.toml:2:9: project_sets.batch: expected an array of project ids, "
              "got an integer");
    std::string many = "[project_sets]\n";
    for (int i = 0; i < 33; ++i) {
        many += "s" + std::to_string(100 + i) + " = [" + std::to_string(i + 1) + "]\n";
    }
    EXPECT_EQ(error_of(many),
              "/etc/ebpf-agent.toml:34:1: project_sets.s132: too many project sets (at most 32)");
    EXPECT_EQ(error_of(k_base + "[[rules]]\nproject_set = \"bach\"\n"),
              "/etc/ebpf-agent.toml:11:15: rules[0].project_set: unknown project set \"bach\" "
              "(declared: none)");
    EXPECT_EQ(error_of(k_base + "[[rules]]\nproject_of = \"local\"\n"),
              "/etc/ebpf-agent.toml:11:14: rules[0].project_of: has no effect without "
              "project_set");
}

TEST(AgentConfig, YattlNeedsAClassSelector) {
    EXPECT_EQ(error_of("[[rules]]\nyattl = true\ndscp = \"AF41\"\n"),
              "/etc/ebpf-agent.toml:2:9: rules[0].yattl: YaTTL works with class selectors "
              "CS0..CS5 only, and dscp is AF41");
    EXPECT_EQ(error_of("[[rules]]\nyattl = true\ndscp = \"CS6\"\n"),
              "/etc/ebpf-agent.toml:2:9: rules[0].yattl: YaTTL works with class selectors "
              "CS0..CS5 only, and dscp is CS6");
    parse_ok("[[rules]]\nyattl = true\ndscp = \"CS5\"\n");
}

TEST(AgentConfig, NetStatDcPrefixLengths) {
    // net_stat_dc probes each distinct prefix length: at most 16 per address family.
    std::string text = "[network]\ndatacenters = [\"dc1\"]\ntypes = [\"bb\"]\nlocal_dc = \"dc1\"\n";
    for (int len = 32; len < 32 + 17; ++len) {
        text += "[[networks]]\nprefix = \"2001:db8::/" + std::to_string(len) +
                "\"\ndc = \"dc1\"\ntype = \"bb\"\n";
    }
    EXPECT_EQ(error_of(text),
              "/etc/ebpf-agent.toml:70:10: networks[16].prefix: more than 16 distinct IPv6 prefix "
              "lengths, the most net_stat_dc looks up");
    parse_ok(text + "[programs]\nnet_stat_dc = false\n");
}

TEST(AgentConfig, ReportsEveryMistakeInFileOrder) {
    agent::config c;
    agent::config_error e;
    ASSERT_FALSE(agent::parse_config(
        "[metrics]\nlisten = \"x\"\n[agent]\nstats_interval = -1\nbogus = 1\n", k_file, c, e));
    ASSERT_EQ(e.errors.size(), 3u);
    EXPECT_EQ(e.errors[0].rfind("/etc/ebpf-agent.toml:2:10: metrics.listen:", 0), 0u);
    EXPECT_EQ(e.errors[1],
              "/etc/ebpf-agent.toml:4:18: agent.stats_interval: must be 0..86400, got -1");
    EXPECT_EQ(e.errors[2].rfind("/etc/ebpf-agent.toml:5:1: agent.bogus: unknown key", 0), 0u);
    EXPECT_EQ(e.message, e.errors[0] + " (and 2 more)");
}

TEST(AgentConfig, ValueForms) {
    agent::config c = parse_ok(k_base + R"(
[project_sets]
batch = ["0xABC", 5, 0x3]
db = [7]

[[rules]]
project_set = "db"
project_of = "local"
rto_init = "1.5s"
rto_min = "200us"
dscp = "af41"
congestion = "bbr"
flowlabel = "fixed"

[[rules]]
scope = "cross_dc"
rto_init = 40
rto_min = 5
dscp = "EF"
flowlabel = "rehash"

[[rules]]
dscp = 10

[tcp_tos]
listen_dscp = "CS3"
)");
    ASSERT_EQ(c.project_sets.size(), 2u);
    EXPECT_EQ(c.project_sets[0].name, "batch");
    EXPECT_EQ(c.project_sets[0].projects, (std::vector<uint32_t>{3, 5, 0xabc}));
    EXPECT_EQ(c.project_sets[1].name, "db");
    ASSERT_EQ(c.rules.size(), 3u);
    EXPECT_EQ(c.rules[0].project_set, 1u);
    EXPECT_EQ(c.rules[0].project_of, agent::project_side::local);
    EXPECT_EQ(c.rules[0].rto_init_ms, 1500u);
    EXPECT_EQ(c.rules[0].rto_min_us, 200u);
    EXPECT_EQ(c.rules[0].dscp, 34);
    EXPECT_EQ(c.rules[0].congestion, "bbr");
    EXPECT_EQ(c.rules[0].flowlabel, agent::flowlabel_mode::fixed);
    EXPECT_EQ(c.rules[1].scope, agent::rule_scope::cross_dc);
    EXPECT_EQ(c.rules[1].rto_init_ms, 40u);
    EXPECT_EQ(c.rules[1].rto_min_us, 5000u);
    EXPECT_EQ(c.rules[1].dscp, 46);
    EXPECT_EQ(c.rules[1].flowlabel, agent::flowlabel_mode::rehash);
    EXPECT_EQ(c.rules[2].dscp, 10);
    EXPECT_EQ(c.rules[2].flowlabel, agent::flowlabel_mode::kernel);
    EXPECT_EQ(c.listen_dscp, 24);
    EXPECT_EQ(agent::dscp_name(34), "AF41");
    EXPECT_EQ(agent::dscp_name(10), "AF11");
    EXPECT_EQ(agent::dscp_name(46), "EF");
    EXPECT_EQ(agent::dscp_name(8), "CS1");
    EXPECT_EQ(agent::dscp_name(9), "9");
}

TEST(AgentConfig, RestartOnlyChanges) {
    agent::config running;
    agent::config_error e;
    ASSERT_TRUE(agent::default_config(running, e));
    std::string text(agent::embedded_default_config());

    // Rules, networks and log settings are reloadable.
    std::string reloadable = text;
    reloadable.replace(reloadable.find("rto_init = \"40ms\""), 17, "rto_init = \"60ms\"");
    reloadable.replace(reloadable.find("level = \"info\""), 14, "level = \"debug\"");
    // The peer caches are a generation's own maps: a reload makes new ones of the new size.
    reloadable.replace(reloadable.find("peer_cache_entries = 16384"), 26,
                       "peer_cache_entries = 65536");
    agent::config next = parse_ok(reloadable);
    EXPECT_NE(next.hash(), running.hash());
    EXPECT_TRUE(agent::restart_only_changes(running, next).empty());

    std::string restart = text;
    restart.replace(restart.find("tclass_lock = false"), 19, "tclass_lock = true");
    restart.replace(restart.find("max_dc_entries = 16384"), 22, "max_dc_entries = 1024");
    next = parse_ok(restart);
    EXPECT_EQ(agent::restart_only_changes(running, next),
              (std::vector<std::string>{"programs.tclass_lock: false -> true",
                                        "net_stat.max_dc_entries: 16384 -> 1024"}));

    // Counter keys hold positions: a datacenter or type may be appended, not moved or removed.
    const std::string dcs = "datacenters = [\"dc1\", \"dc2\"]";
    std::string appended = text;
    appended.replace(appended.find(dcs), dcs.size(), "datacenters = [\"dc1\", \"dc2\", \"dc3\"]");
    EXPECT_TRUE(agent::restart_only_changes(running, parse_ok(appended)).empty());
    std::string reordered = text;
    reordered.replace(reordered.find(dcs), dcs.size(), "datacenters = [\"dc2\", \"dc1\"]");
    EXPECT_EQ(agent::restart_only_changes(running, parse_ok(reordered)),
              (std::vector<std::string>{
                  "network.datacenters: [\"dc1\", \"dc2\"] -> [\"dc2\", \"dc1\"] (counters are "
                  "kept by position: names may only be appended)"}));
    // Without the dc programs no counter holds a datacenter id.
    agent::config no_dc = running;
    no_dc.programs.net_stat_dc = false;
    EXPECT_EQ(agent::restart_only_changes(no_dc, parse_ok(reordered)),
              (std::vector<std::string>{"programs.net_stat_dc: false -> true"}));
}

TEST(AgentConfig, HashFollowsContentNotLayout) {
    agent::config a;
    agent::config_error e;
    ASSERT_TRUE(agent::default_config(a, e));
    EXPECT_EQ(a.hash().size(), 16u);
    EXPECT_EQ(a.hash().find_first_not_of("0123456789abcdef"), std::string::npos);

    // Comments, blank lines, spacing and spelling of the same values keep it.
    std::string text(agent::embedded_default_config());
    std::string same = "# leading comment\n\n" + text;
    same.replace(same.find("dscp = \"CS4\""), 12, "dscp   =   32   # CS4");
    same.replace(same.find("rto_init = \"40ms\""), 17, "rto_init = 40");
    agent::config b = parse_ok(same);
    EXPECT_EQ(b.hash(), a.hash());
    EXPECT_EQ(b.canonical(), a.canonical());

    // The canonical dump is a config of its own with the same hash.
    agent::config c = parse_ok(a.canonical());
    EXPECT_EQ(c.hash(), a.hash());

    // Any change of content changes it.
    std::string other = text;
    other.replace(other.find("0x1002"), 6, "0x1003");
    EXPECT_NE(parse_ok(other).hash(), a.hash());
    other = text;
    other.replace(other.find("stats_interval = 10"), 19, "stats_interval = 11");
    EXPECT_NE(parse_ok(other).hash(), a.hash());
}

TEST(AgentConfig, LoadFile) {
    agent::config c;
    agent::config_error e;
    EXPECT_FALSE(agent::load_config_file("/nonexistent/ebpf-agent.toml", c, e));
    EXPECT_EQ(e.message, "/nonexistent/ebpf-agent.toml: cannot open: No such file or directory");

    char path[] = "/tmp/ebpf-agent-config-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    {
        std::ofstream out(path);
        out << "[log]\nformat = \"yaml\"\n";
    }
    EXPECT_FALSE(agent::load_config_file(path, c, e));
    EXPECT_EQ(
        e.message,
        std::string(path) + ":2:10: log.format: unknown format \"yaml\" (expected logfmt or json)");
    {
        std::ofstream out(path);
        out << "[log]\nformat = \"json\"\n";
    }
    ASSERT_TRUE(agent::load_config_file(path, c, e)) << e.message;
    EXPECT_EQ(c.source, path);
    EXPECT_EQ(c.log_format_, agent::log_format::json);
    std::remove(path);
}

}  // namespace
