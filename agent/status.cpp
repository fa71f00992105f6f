// `status` and `stats` (see status.hpp).
#include "status.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "daemon.hpp"
#include "ebpf/program.hpp"
#include "ebpf/sys/bpf.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "net_stat.h"
#include "tables.hpp"

namespace agent {

namespace fs = std::filesystem;

namespace {

struct pinned_link {
    std::string name;
    uint32_t link_id = 0;
    uint32_t prog_id = 0;
    uint64_t cgroup_id = 0;
};

std::vector<pinned_link> read_pinned_links(const config& cfg) {
    std::vector<pinned_link> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(links_dir(cfg), ec)) {
        pinned_link p;
        p.name = e.path().filename().string();
        auto f = ebpf::sys::obj_get(e.path().c_str());
        if (f) {
            bpf_link_info info{};
            uint32_t len = sizeof info;
            if (ebpf::sys::obj_get_info_by_fd(f->get(), &info, len)) {
                p.link_id = info.id;
                p.prog_id = info.prog_id;
                p.cgroup_id = info.cgroup.cgroup_id;
            }
        }
        out.push_back(p);
    }
    return out;
}

}  // namespace

int run_status(const config& cfg, output_format format, std::ostream& out) {
    target_cgroup cg;
    std::string error;
    if (!open_target_cgroup(cfg, cg, error)) {
        log_error("status", {{"error", error}});
        return exit_failure;
    }
    const nlohmann::json state = running_daemon_state(cfg);
    const auto pins = read_pinned_links(cfg);

    // Program ids the agent owns, with what it knows of each.
    std::map<uint32_t, nlohmann::json> owned;
    if (!state.is_null()) {
        for (const auto& p : state["programs"]) {
            owned[p["prog_id"].get<uint32_t>()] = p;
        }
    }
    for (const auto& p : pins) {
        if (!owned.count(p.prog_id)) {
            owned[p.prog_id] = {{"name", p.name}, {"link_id", p.link_id}, {"mode", "link"}};
        }
    }

    nlohmann::json j;
    j["cgroup"] = cg.label;
    j["cgroup_id"] = cg.id;
    j["bpffs_dir"] = cfg.bpffs_dir;
    j["config_hash"] = cfg.hash();
    if (state.is_null()) {
        j["daemon"] = {{"running", false}};
    } else {
        j["daemon"] = {{"running", true},
                       {"pid", state["pid"]},
                       {"config", state["config"]},
                       {"config_hash", state["config_hash"]},
                       {"on_stop", state["on_stop"]},
                       {"last_reload", state["last_reload"]}};
    }
    nlohmann::json programs = nlohmann::json::array();
    std::set<uint32_t> seen;
    for (uint32_t type : agent_attach_types) {
        auto q = ebpf::query_cgroup(cg.fd.get(), type);
        if (!q) {
            log_warn("query failed", {{"attach_type", std::string(attach_type_name(type))},
                                      {"error", q.error().message()}});
            continue;
        }
        for (const auto& p : q->programs) {
            std::string name = "?";
            if (auto prog = ebpf::program::from_id(p.prog_id)) {
                name = prog->name();
            }
            nlohmann::json e = {
                {"name", name}, {"attach_type", attach_type_name(type)}, {"prog_id", p.prog_id}};
            auto it = owned.find(p.prog_id);
            e["owner"] = it != owned.end() ? "ebpf-agent" : "foreign";
            if (it != owned.end()) {
                e["link_id"] = it->second.value("link_id", 0u);
                e["mode"] = it->second.value("mode", "link");
                e["adopted"] = it->second.value("adopted", false);
            } else {
                e["mode"] = p.attach_flags & BPF_F_ALLOW_MULTI ? "multi" : "link or single";
            }
            bool pinned = false;
            for (const auto& pin : pins) {
                pinned |= pin.prog_id == p.prog_id;
            }
            e["pinned"] = pinned;
            seen.insert(p.prog_id);
            programs.push_back(e);
        }
    }
    j["programs"] = programs;
    nlohmann::json defunct = nlohmann::json::array();
    for (const auto& p : pins) {
        if (p.cgroup_id == 0 || !seen.count(p.prog_id)) {
            defunct.push_back({{"name", p.name}, {"link_id", p.link_id}});
        }
    }
    j["defunct_pins"] = defunct;

    if (format == output_format::json) {
        out << j.dump(2) << "\n";
        return exit_ok;
    }
    if (state.is_null()) {
        out << "daemon: not running\n";
    } else {
        out << "daemon: running, pid " << state["pid"] << ", config "
            << state["config"].get<std::string>() << " (hash "
            << state["config_hash"].get<std::string>() << "), on_stop "
            << state["on_stop"].get<std::string>() << "\n";
    }
    out << "cgroup: " << cg.label << " (id " << cg.id << ")\n\n";
    char line[256];
    std::snprintf(line, sizeof line, "%-16s %-11s %8s %8s %-6s %-11s %s\n", "PROGRAM", "HOOK",
                  "PROG_ID", "LINK_ID", "MODE", "OWNER", "PINNED");
    out << line;
    for (const auto& p : programs) {
        std::snprintf(line, sizeof line, "%-16s %-11s %8u %8u %-6s %-11s %s\n",
                      p["name"].get<std::string>().c_str(),
                      p["attach_type"].get<std::string>().c_str(), p["prog_id"].get<uint32_t>(),
                      p.value("link_id", 0u), p["mode"].get<std::string>().c_str(),
                      p["owner"].get<std::string>().c_str(),
                      p["pinned"].get<bool>() ? "yes" : "no");
        out << line;
    }
    for (const auto& d : defunct) {
        out << "defunct pin: " << d["name"].get<std::string>() << " (link "
            << d["link_id"].get<uint32_t>() << ")\n";
    }
    return exit_ok;
}

}  // namespace agent

namespace agent {

namespace {

// Opens net_stat's counter maps: the running daemon's (by id) or the pinned ones.
bool open_counter_maps(const config& cfg, std::map<std::string, ebpf::map>& out,
                       std::string& where) {
    const nlohmann::json state = running_daemon_state(cfg);
    for (const char* name :
         {NET_STAT_MAP_CGROUP, NET_STAT_MAP_DC, NET_STAT_MAP_DC_1, NET_STAT_MAP_ERRORS}) {
        const std::string key = std::string("net_stat/") + name;
        if (!state.is_null() && state["maps"].contains(key)) {
            if (auto m = ebpf::map::from_id(state["maps"][key].get<uint32_t>())) {
                out.emplace(name, std::move(*m));
            }
            where = "the running agent (pid " + std::to_string(state["pid"].get<int>()) + ")";
        } else if (auto m = ebpf::map::from_pin(maps_dir(cfg) + "/" + name)) {
            out.emplace(name, std::move(*m));
            where = "the pins in " + maps_dir(cfg);
        }
    }
    return !out.empty();
}

std::string name_of(const std::vector<std::string>& names, uint32_t id) {
    return id < names.size() ? names[id] : "other";
}

}  // namespace

int run_stats(const config& cfg, output_format format, std::ostream& out) {
    std::map<std::string, ebpf::map> maps;
    std::string where;
    if (!open_counter_maps(cfg, maps, where)) {
        log_error("no counters: no ebpf-agent runs with this config and none left pinned maps",
                  {{"state_file", state_path(cfg)}, {"maps_dir", maps_dir(cfg)}});
        return exit_failure;
    }
    auto get = [&](const char* n) -> ebpf::map* {
        auto it = maps.find(n);
        return it == maps.end() ? nullptr : &it->second;
    };
    // As the daemon reads them: the dc map is the source only with the dc programs enabled.
    const bool dc = cfg.programs.net_stat_dc;
    counter_maps cm{get(NET_STAT_MAP_CGROUP), dc ? get(NET_STAT_MAP_DC) : nullptr,
                    get(NET_STAT_MAP_ERRORS), dc ? get(NET_STAT_MAP_DC_1) : nullptr};
    counter_snapshot snap;
    if (auto r = read_counters(cm, snap); !r) {
        log_error("read the counters", {{"error", r.error().message()}});
        return exit_failure;
    }
    auto mount = ebpf::cgroup2_mount();
    cgroup_names names(mount ? *mount : std::string("/sys/fs/cgroup"));
    std::vector<uint64_t> ids;
    for (const auto& r : snap.rows) {
        ids.push_back(r.cgroup_id);
    }
    std::string walk_error;
    (void)names.walk();
    (void)names.update(ids, walk_error);
    // The names the daemon counted under where it pinned them (keep mode), else the config's.
    std::string label_error;
    const label_names labels =
        read_pinned_labels(cfg, label_error).value_or(build_label_names(cfg));
    if (!label_error.empty()) {
        log_warn(
            "the pinned datacenter and type names cannot be read: the config's are used, "
            "which may not be the ones the counters were counted under",
            {{"error", label_error}});
    }

    struct line {
        std::string cgroup, dc, net;
        uint64_t id;
        traffic_row r;
    };
    std::vector<line> lines;
    for (const auto& r : snap.rows) {
        const cgroup_path p = names.lookup(r.cgroup_id);
        lines.push_back({p.path ? *p.path : "(removed)", name_of(labels.dc, r.dc),
                         name_of(labels.net_type, r.net_type), r.cgroup_id, r});
    }
    std::sort(lines.begin(), lines.end(), [](const line& a, const line& b) {
        return std::tie(a.cgroup, a.dc, a.net) < std::tie(b.cgroup, b.dc, b.net);
    });
    if (format == output_format::json) {
        nlohmann::json j;
        j["source"] = where;
        nlohmann::json rows = nlohmann::json::array();
        for (const auto& l : lines) {
            rows.push_back({{"cgroup", l.cgroup},
                            {"cgroup_id", l.id},
                            {"dc", l.dc},
                            {"net", l.net},
                            {"rx_bytes", l.r.rx_bytes},
                            {"rx_packets", l.r.rx_packets},
                            {"tx_bytes", l.r.tx_bytes},
                            {"tx_packets", l.r.tx_packets}});
        }
        j["rows"] = rows;
        nlohmann::json uncounted = nlohmann::json::object();
        for (size_t i = 0; i < NET_STAT_ERR_MAX; ++i) {
            const uncounted_slot& u = uncounted_slots[i];
            uncounted[u.map][u.direction] = {{"bytes", snap.uncounted[i].bytes},
                                             {"packets", snap.uncounted[i].packets}};
        }
        j["uncounted"] = uncounted;
        out << j.dump(2) << "\n";
        return exit_ok;
    }
    out << "counters from " << where << "\n";
    char buf[512];
    std::snprintf(buf, sizeof buf, "%-48s %-10s %-10s %14s %10s %14s %10s\n", "CGROUP", "DC", "NET",
                  "RX_BYTES", "RX_PKTS", "TX_BYTES", "TX_PKTS");
    out << buf;
    for (const auto& l : lines) {
        std::snprintf(buf, sizeof buf, "%-48s %-10s %-10s %14llu %10llu %14llu %10llu\n",
                      l.cgroup.c_str(), l.dc.c_str(), l.net.c_str(),
                      (unsigned long long)l.r.rx_bytes, (unsigned long long)l.r.rx_packets,
                      (unsigned long long)l.r.tx_bytes, (unsigned long long)l.r.tx_packets);
        out << buf;
    }
    return exit_ok;
}

}  // namespace agent
