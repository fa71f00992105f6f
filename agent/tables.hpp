// The config turned into BPF map contents: the policy maps of tcp_rto and tcp_tos (policy.h),
// net_stat's networks, and the label names the metrics give ids (agent; no syscalls).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config.hpp"
#include "ebpf/typed_map.hpp"
#include "net_stat.h"
#include "policy.h"

namespace agent {

// The contents of the four policy maps, each program's copy the same.
struct policy_tables {
    // networks trie: declared networks and the yattl_exclude / stateful_services prefixes, one
    // entry per prefix, sorted by address then length. An entry carries the dc and type of the
    // longest declared network containing it (0/0 when none) and the flags of every flagged
    // prefix containing it, so the longest match alone decides.
    std::vector<std::pair<policy_key, policy_network>> networks;
    // project_sets hash: project id -> bitmask of set ids (set id = index in
    // config::project_sets), ascending by project id.
    std::vector<std::pair<uint32_t, uint32_t>> project_sets;
    // rules array, in order: index i holds rules[i].
    std::vector<policy_rule> rules;
    // config array, index 0.
    policy_config cfg;
};

// Builds the policy maps' contents from a validated config.
policy_tables build_policy_tables(const config& c);

// Builds net_stat's network list (declared networks only, in declaration order) for
// net_stat::add_networks().
std::vector<std::pair<ebpf::lpm_key, net_stat_network>> build_net_stat_networks(const config& c);

// Label values of the ids in counter keys: index = id; [0] = "other".
struct label_names {
    std::vector<std::string> dc;
    std::vector<std::string> net_type;
};

// Returns the names of datacenter and network type ids.
label_names build_label_names(const config& c);

}  // namespace agent
