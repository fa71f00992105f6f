// The agent's config: a strict TOML file (or the embedded default) read into plain values, with
// every mistake reported as `file:line:column: key.path: what is wrong` (agent).
//
// Schema (every key is optional and takes the default shown; agent/default_config.toml is the
// commented example). Paths in messages index arrays from 0: `rules[2]` is the third rule.
//
//   [agent]
//   cgroup = ""                          # cgroup2 directory (absolute path) the programs attach
//                                        # to; "" = the root of the cgroup2 mount found at start
//   bpffs_dir = "/sys/fs/bpf/ebpf-agent" # the agent's pin directory (absolute path)
//   run_dir = "/run/ebpf-agent"          # the running daemon's state file (pid, ids)
//   on_stop = "detach"                   # "detach": remove all on stop; "keep": leave it pinned
//   stats_interval = 10                  # seconds between foreground statistics lines; 0 = off
//
//   [log]
//   level = "info"                       # debug | info | warn | error
//   format = "logfmt"                    # logfmt | json
//
//   [metrics]
//   listen = "127.0.0.1:9977"            # IPv4:port or [IPv6]:port literal; "" = no endpoint
//   cgroup_depth = 3                     # cgroup paths rolled up to this depth (1..16)
//   max_cgroups = 4096                   # cgroups exported; the rest is cgroup="other"
//
//   [programs]                           # which programs run
//   tcp_rto = true
//   tcp_tos = true
//   tclass_lock = false                  # changes what applications see host-wide
//   net_stat = false                     # per cgroup only (net_stat_dc gives that too)
//   net_stat_dc = true
//
//   [tclass_lock]
//   lock_ip_tos = false                  # also turn setsockopt(IP_TOS) into a no-op
//
//   [net_stat]
//   max_cgroups = 4096                   # entries of stat_cgroup (64..1048576)
//   max_dc_entries = 16384               # (cgroup, dc, net type) keys, over stat_dc and stat_dc_1
//                                        # (64..4194304); each holds both directions
//
//   [network]
//   datacenters = []                     # names; datacenter id = position + 1
//   types = []                           # network type names; type id = position + 1
//   local_dc = ""                        # this host's datacenter; required once a network exists
//   yattl_exclude = []                   # prefixes where YaTTL stays off
//   stateful_services = []               # prefixes (IPVS, NAT64, TUN64) with a fixed flow label
//   peer_cache_entries = 16384           # peers whose network and deciding rule the programs
//                                        # remember (two LRUs; 1024..1048576)
//
//   [[networks]]                         # each: prefix (required), dc and type (required names)
//   prefix = "2001:db8:a100::/40"        # IPv6 or IPv4 CIDR, no host bits; a bare address is
//   dc = "dc1"                           # a /128 or /32
//   type = "backbone"
//
//   [project_sets]                       # at most 32 sets; name = [project ids]
//   batch = [0x1001, "0x1002", 4099]     # ids 1..2^32-1 (integer, or a "0x..." string); 0 is
//                                        # not an id: addresses without a project carry 0
//
//   [[rules]]                            # ordered; the first that matches decides (at most 64)
//   network_type = "backbone"            # match: a declared type; absent = any network
//   scope = "same_dc"                    # match: any | same_dc | cross_dc
//   project_set = "batch"                # match: the project id is in this set
//   project_of = "remote"                # ... of the remote (default) or local address
//   rto_init = "40ms"                    # initial RTO, 1ms..120s ("40ms", "1s", or integer ms)
//   rto_min = "5ms"                      # minimum RTO, 1us..200ms ("200us", or integer ms)
//   congestion = "bbr"                   # congestion control (at most 15 characters)
//   flowlabel = "fixed"                  # fixed | rehash; absent = the kernel's behaviour
//   yattl = true                         # YaTTL on the first SYN retransmit
//   dscp = "CS4"                         # CS0..CS7, AF11..AF43, EF, or 0..63
//   ecn_syn = true                       # ECN on the SYN
//
//   [tcp_tos]
//   listen_dscp = "CS3"                  # class of listeners' SYN-ACKs; absent = untouched
//
// Names of datacenters, network types and project sets match ^[a-z0-9][a-z0-9_-]{0,31}$; "other"
// is reserved (the metrics label of id 0).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ebpf/typed_map.hpp"
#include "log.hpp"

namespace agent {

enum class on_stop_mode { detach, keep };

struct program_set {
    bool tcp_rto = true;
    bool tcp_tos = true;
    bool tclass_lock = false;
    bool net_stat = false;  // net_stat_dc's maps give the per-cgroup totals too
    bool net_stat_dc = true;
};

// A declared network: one prefix in one datacenter, of one type.
struct network_entry {
    ebpf::lpm_key prefix;   // bits past the length cleared; IPv4 v4-mapped (prefixlen + 96)
    uint32_t dc = 0;        // datacenter id: index in config::datacenters + 1
    uint32_t net_type = 0;  // network type id: index in config::net_types + 1
};

struct project_set_entry {
    std::string name;
    std::vector<uint32_t> projects;  // ascending, no duplicates
};

enum class rule_scope { any, same_dc, cross_dc };
enum class project_side { remote, local };
enum class flowlabel_mode { kernel, rehash, fixed };

struct rule_entry {
    // match
    uint32_t net_type = 0;  // 0: any
    rule_scope scope = rule_scope::any;
    std::optional<uint32_t> project_set;  // index in config::project_sets
    project_side project_of = project_side::remote;
    // settings
    uint32_t rto_init_ms = 0;  // 0: the kernel's default
    uint32_t rto_min_us = 0;   // 0: unset
    std::string congestion;    // "": unset
    flowlabel_mode flowlabel = flowlabel_mode::kernel;
    bool yattl = false;
    std::optional<uint8_t> dscp;  // 0..63
    bool ecn_syn = false;
};

struct config {
    std::string source;  // the file's path, or "<embedded>"

    // [agent]
    std::string cgroup;
    std::string bpffs_dir = "/sys/fs/bpf/ebpf-agent";
    std::string run_dir = "/run/ebpf-agent";  // the running daemon's state file
    on_stop_mode on_stop = on_stop_mode::detach;
    unsigned stats_interval = 10;

    // [log]
    log_level log_level_ = log_level::info;
    log_format log_format_ = log_format::logfmt;

    // [metrics]
    std::string metrics_listen = "127.0.0.1:9977";  // "" = off
    std::string metrics_host = "127.0.0.1";         // the address part, without brackets
    uint16_t metrics_port = 9977;
    unsigned cgroup_depth = 3;
    unsigned max_cgroups = 4096;

    program_set programs;

    // [tclass_lock]
    bool lock_ip_tos = false;

    // [net_stat]
    uint32_t net_stat_max_cgroups = 4096;      // stat_cgroup's max_entries
    uint32_t net_stat_max_dc_entries = 16384;  // see dc_map_entries() in generation.hpp
    uint32_t peer_cache_entries = 16384;       // max_entries of peer_cache and decisions

    // [network], [[networks]], [project_sets], [[rules]], [tcp_tos]
    std::vector<std::string> datacenters;  // id = index + 1
    std::vector<std::string> net_types;    // id = index + 1
    uint32_t local_dc = 0;                 // 0: none declared
    std::vector<network_entry> networks;   // declaration order
    std::vector<ebpf::lpm_key> yattl_exclude;
    std::vector<ebpf::lpm_key> stateful_services;
    std::vector<project_set_entry> project_sets;  // set id = index; sorted by name
    std::vector<rule_entry> rules;                // in order
    std::optional<uint8_t> listen_dscp;

    // Renders the effective config as TOML: every key, defaults included, sets and prefix lists
    // sorted; parse_config() reads it back to an equal config.
    std::string canonical() const;
    // Returns 16 hex digits: FNV-1a 64 of canonical(), so comments, layout and spelling (CS1 or
    // 8, "1s" or 1000) do not change it.
    std::string hash() const;
};

struct config_error {
    std::string message;              // the first mistake in file order, one line
    std::vector<std::string> errors;  // every mistake found, in file order (message first)
};

// Parses and validates `text`; `source` names it in messages. On failure `out` is unchanged.
bool parse_config(std::string_view text, const std::string& source, config& out, config_error& err);
// Reads and parses the file at `path`; a file that cannot be read is an error too.
bool load_config_file(const std::string& path, config& out, config_error& err);
// Returns the TOML text of the embedded default config (agent/default_config.toml).
const std::string_view embedded_default_config();
// Parses the embedded default config (source "<embedded>").
bool default_config(config& out, config_error& err);
// Lists what differs between the running config and `next` that a reload cannot apply (program
// set, agent.cgroup, bpffs_dir, on_stop, metrics.listen, map sizes, tclass_lock.lock_ip_tos,
// which is fixed at load), one "key: old -> new" line each; empty when a reload can apply all.
std::vector<std::string> restart_only_changes(const config& running, const config& next);

// Returns the class name of a DSCP value ("CS1", "AF41", "EF") or its number.
std::string dscp_name(uint8_t dscp);

}  // namespace agent
