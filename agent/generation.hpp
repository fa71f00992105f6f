// A generation: the agent's objects loaded for one config, their maps filled, not attached yet.
// A reload builds a new generation and moves each attachment to it atomically.
#pragma once

#include <map>
#include <string>

#include "config.hpp"
#include "ebpf/collection.hpp"
#include "metrics.hpp"

namespace agent {

struct generation {
    // Object name ("net_stat") -> its live maps and programs.
    std::map<std::string, ebpf::collection> objects;
    // How full each hash and LPM map is, counted once after the maps were filled: only the
    // agent writes them (net_stat's counter maps are left out: a scrape reads those).
    std::vector<map_fill> fills;

    ebpf::program* program(std::string_view object, std::string_view name);
    ebpf::map* map(std::string_view object, std::string_view name);
};

struct generation_options {
    // Load the programs (false: create and fill the maps only).
    bool load_programs = true;
    // Counter maps to continue, by "object/map" (a reload's old generation, or adopted pins).
    std::map<std::string, const ebpf::map*> counters;
    // Objects to read from files instead of the embedded ones, by name (for developers and
    // tests: `ebpf-agent run --object tcp_tos=FILE`).
    std::map<std::string, std::string> object_files;
};

// The max_entries of each of net_stat's two dc maps (NET_STAT_MAP_DC, NET_STAT_MAP_DC_1) for
// net_stat.max_dc_entries keys in all: half each, and an eighth more for the halves' imbalance.
constexpr uint32_t dc_map_entries(uint32_t max_dc_entries) {
    return max_dc_entries / 2 + max_dc_entries / 8 + 1;
}

// Loads every object an enabled program needs, sized and set from `cfg`, and fills the maps
// from its tables. On failure, `error` names the object, the program and the verifier log.
bool load_generation(const config& cfg, const generation_options& o, generation& out,
                     std::string& error);

}  // namespace agent
