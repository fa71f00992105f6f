// Loading and filling a generation (see generation.hpp).
#include "generation.hpp"

#include <optional>
#include <system_error>
#include <thread>
#include <vector>

#include "ebpf/spec/collection_spec.hpp"
#include "embedded_objects.hpp"
#include "net_stat.h"
#include "net_stat_networks.hpp"
#include "policy.h"
#include "programs.hpp"
#include "tables.hpp"
#include "tclass_lock.h"

namespace agent {

ebpf::program* generation::program(std::string_view object, std::string_view name) {
    auto it = objects.find(std::string(object));
    return it == objects.end() ? nullptr : it->second.program(name);
}

ebpf::map* generation::map(std::string_view object, std::string_view name) {
    auto it = objects.find(std::string(object));
    return it == objects.end() ? nullptr : it->second.map(name);
}

namespace {

bool needs_object(const config& cfg, std::string_view object) {
    for (const auto& d : program_defs) {
        if (d.object == object && cfg.programs.*d.enabled) {
            return true;
        }
    }
    return false;
}

bool set_max_entries(ebpf::collection_spec& spec, std::string_view object, const char* map,
                     uint32_t n, std::string& error) {
    ebpf::map_spec* m = spec.map(map);
    if (!m) {
        error = "object " + std::string(object) + ": map " + map + " is missing";
        return false;
    }
    m->max_entries = n;
    return true;
}

// Sizes the peer caches (net_stat's peer_cache, the policy's decisions) where the object has
// them: an object given with --object may do without.
void size_caches(const config& cfg, ebpf::collection_spec& spec) {
    for (const char* name : {"peer_cache", "decisions"}) {
        if (ebpf::map_spec* m = spec.map(name)) {
            m->max_entries = cfg.peer_cache_entries;
        }
    }
}

// Applies the config to the spec before load: constants and map sizes.
bool prepare(const config& cfg, std::string_view object, ebpf::collection_spec& spec,
             std::string& error) {
    size_caches(cfg, spec);
    if (object == "tclass_lock") {
        auto r = spec.set_variable<uint32_t>(TCLASS_LOCK_VAR_LOCK_IP_TOS, cfg.lock_ip_tos ? 1 : 0);
        if (!r) {
            error = "object tclass_lock: " + r.error().message();
            return false;
        }
    }
    if (object == "net_stat") {
        const uint32_t half = dc_map_entries(cfg.net_stat_max_dc_entries);
        return set_max_entries(spec, object, NET_STAT_MAP_CGROUP, cfg.net_stat_max_cgroups,
                               error) &&
               set_max_entries(spec, object, NET_STAT_MAP_DC, half, error) &&
               set_max_entries(spec, object, NET_STAT_MAP_DC_1, half, error);
    }
    return true;
}

bool fill_policy(const policy_tables& t, ebpf::collection& c, std::string_view object,
                 std::string& error) {
    auto fail = [&](const char* what, const ebpf::error& e) {
        error = "object " + std::string(object) + ": fill " + what + ": " + e.message();
        return false;
    };
    ebpf::map* networks = c.map("networks");
    ebpf::map* sets = c.map("project_sets");
    ebpf::map* rules = c.map("rules");
    ebpf::map* cfg = c.map("config");
    if (!networks || !sets || !rules || !cfg) {
        error = "object " + std::string(object) + ": a policy map is missing";
        return false;
    }
    for (const auto& [k, v] : t.networks) {
        if (auto r = networks->update(&k, &v); !r) {
            return fail("networks", r.error());
        }
    }
    for (const auto& [k, v] : t.project_sets) {
        if (auto r = sets->update(&k, &v); !r) {
            return fail("project_sets", r.error());
        }
    }
    for (uint32_t i = 0; i < t.rules.size(); ++i) {
        if (auto r = rules->update(&i, &t.rules[i]); !r) {
            return fail("rules", r.error());
        }
    }
    // Last: the rule count makes the rules visible.
    const uint32_t zero = 0;
    if (auto r = cfg->update(&zero, &t.cfg); !r) {
        return fail("config", r.error());
    }
    return true;
}

// Writes the tables of `cfg` into the maps of a loaded generation.
bool fill_generation(const config& cfg, generation& g, std::string& error) {
    const policy_tables policy = build_policy_tables(cfg);
    for (const char* object : {"tcp_rto", "tcp_tos"}) {
        auto it = g.objects.find(object);
        // tcp_tos works on tcp_rto's policy maps when both are loaded: fill them once.
        const bool shared = it != g.objects.end() && std::string_view(object) == "tcp_tos" &&
                            g.objects.count("tcp_rto");
        if (it != g.objects.end() && !shared && !fill_policy(policy, it->second, object, error)) {
            return false;
        }
    }
    if (auto it = g.objects.find("net_stat"); it != g.objects.end()) {
        ebpf::map* networks = it->second.map(NET_STAT_MAP_NETWORKS);
        ebpf::map* lens = it->second.map(NET_STAT_MAP_NETWORK_LENS);
        if (!networks || !lens) {
            error = "object net_stat: the networks maps are missing";
            return false;
        }
        auto r = net_stat::add_networks(*networks, *lens, build_net_stat_networks(cfg));
        if (!r) {
            error = "object net_stat: fill networks: " + r.error().message();
            return false;
        }
    }
    return true;
}

// Counts the entries of a map by walking its keys.
uint64_t count_entries(const ebpf::map& m) {
    uint64_t n = 0;
    std::vector<std::byte> key(m.key_size()), next(m.key_size());
    const void* prev = nullptr;
    while (true) {
        auto r = m.next_key(prev, next.data());
        if (!r || !*r) {
            break;
        }
        ++n;
        key.swap(next);
        prev = key.data();
    }
    return n;
}

// The fill of every hash and LPM map (arrays are always full), a map shared by two objects
// counted once.
std::vector<map_fill> count_fills(const generation& g) {
    std::vector<map_fill> out;
    std::map<uint32_t, uint64_t> by_id;
    for (const auto& [object, c] : g.objects) {
        for (const auto& [name, m] : c.maps()) {
            if (object == "net_stat" && name.rfind("stat_", 0) == 0) {
                continue;  // the counter maps' fill comes from the scrape
            }
            if (m.type() == BPF_MAP_TYPE_LRU_HASH) {
                continue;  // the peer caches: the programs fill them, not a generation
            }
            if (m.type() == BPF_MAP_TYPE_ARRAY || m.type() == BPF_MAP_TYPE_PERCPU_ARRAY) {
                continue;
            }
            const uint32_t id = m.id().value_or(0);
            auto it = by_id.find(id);
            const uint64_t n = it != by_id.end() && id ? it->second : count_entries(m);
            by_id[id] = n;
            out.push_back({object + "/" + name, n, m.max_entries()});
        }
    }
    return out;
}

// Loads one object as the config says; `rto`, when given, lends tcp_tos its policy maps.
bool load_object(const config& cfg, const generation_options& o, const embedded_object& obj,
                 ebpf::collection* rto, std::optional<ebpf::collection>& out, std::string& error) {
    const std::string name(obj.name);
    auto file = o.object_files.find(name);
    auto spec = file == o.object_files.end() ? ebpf::collection_spec::parse(obj.bytes)
                                             : ebpf::collection_spec::open(file->second);
    if (!spec) {
        error = "object " + name + (file == o.object_files.end() ? "" : " (" + file->second + ")") +
                ": " + spec.error().message();
        return false;
    }
    if (!prepare(cfg, obj.name, *spec, error)) {
        return false;
    }
    // Only the enabled programs are loaded.
    for (auto& p : spec->programs) {
        const program_def* d = find_program_def(p.name);
        p.autoload = d && cfg.programs.*(d->enabled);
    }
    ebpf::collection_options co;
    co.load_programs = o.load_programs;
    // tcp_tos shares tcp_rto's policy maps: one table to fill.
    if (name == "tcp_tos" && rto) {
        for (const char* m : {"networks", "project_sets", "rules", "config", "decisions"}) {
            if (ebpf::map* shared = rto->map(m)) {
                co.replace_maps[m] = shared;
            }
        }
    }
    for (const auto& [key, m] : o.counters) {
        if (key.starts_with(name + "/")) {
            co.replace_maps[key.substr(name.size() + 1)] = m;
        }
    }
    auto c = ebpf::collection::load(*spec, co);
    if (!c) {
        error = "object " + name + ": " + c.error().full_message();
        return false;
    }
    out = std::move(*c);
    return true;
}

}  // namespace

bool load_generation(const config& cfg, const generation_options& o, generation& out,
                     std::string& error) {
    out.objects.clear();
    // The verifier is most of a start: the sock_ops chain (tcp_rto, then tcp_tos on its maps)
    // loads on this thread while the other objects load on a second one.
    std::vector<const embedded_object*> chain, rest;
    for (const auto& obj : embedded_objects()) {
        if (needs_object(cfg, obj.name)) {
            (obj.name == "tcp_rto" || obj.name == "tcp_tos" ? chain : rest).push_back(&obj);
        }
    }
    std::map<std::string, std::optional<ebpf::collection>> loaded;
    for (const auto* obj : chain) {
        loaded[std::string(obj->name)];
    }
    for (const auto* obj : rest) {
        loaded[std::string(obj->name)];
    }
    std::string rest_error;
    bool rest_ok = true;
    auto load_rest = [&] {
        for (const auto* obj : rest) {
            if (!load_object(cfg, o, *obj, nullptr, loaded[std::string(obj->name)], rest_error)) {
                rest_ok = false;
                return;
            }
        }
    };
    std::thread helper;
    try {
        helper = std::thread(load_rest);
    } catch (const std::system_error&) {
        load_rest();  // no thread to be had: one after the other
    }
    bool chain_ok = true;
    ebpf::collection* rto = nullptr;
    for (const auto* obj : chain) {
        auto& slot = loaded[std::string(obj->name)];
        if (!load_object(cfg, o, *obj, rto, slot, error)) {
            chain_ok = false;
            break;
        }
        if (obj->name == "tcp_rto") {
            rto = &*slot;
        }
    }
    if (helper.joinable()) {
        helper.join();
    }
    if (!chain_ok) {
        return false;
    }
    if (!rest_ok) {
        error = rest_error;
        return false;
    }
    for (auto& [name, c] : loaded) {
        out.objects.emplace(name, std::move(*c));
    }
    if (!fill_generation(cfg, out, error)) {
        return false;
    }
    out.fills = count_fills(out);
    return true;
}

}  // namespace agent
