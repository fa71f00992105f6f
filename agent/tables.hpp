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

// A counter key holds a datacenter and a type id, not a name. Keep mode therefore pins, next to
// the counter maps, the names their ids stood for: a hash the agent creates itself, key
// (kind << 24) | id, value the name NUL-padded. The next start compares it with its own config.
inline constexpr const char* k_label_map = "stat_labels";
inline constexpr uint32_t k_label_kind_dc = 1;
inline constexpr uint32_t k_label_kind_net_type = 2;
inline constexpr uint32_t k_label_map_max_entries = 65536;

struct label_pin_value {
    char name[32];  // config names are at most 32 characters: NUL-terminated only when shorter
};

// The label map's entries for `l` (ids 1..; "other", id 0, is not stored).
std::vector<std::pair<uint32_t, label_pin_value>> label_pin_entries(const label_names& l);

// The names back from the label map's entries; an id with no entry gets "".
label_names labels_from_pin(const std::vector<std::pair<uint32_t, label_pin_value>>& entries);

// Why counters counted under `pinned` cannot go on under `now`, e.g. `datacenter 2 was "dc2",
// now "dc3"`; empty when every pinned id keeps its name (ids may be added).
std::string label_conflict(const label_names& pinned, const label_names& now);

}  // namespace agent
