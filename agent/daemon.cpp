// The daemon's lifecycle (see daemon.hpp).
#include "daemon.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "ebpf/features.hpp"
#include "ebpf/sys/bpf.hpp"
#include "http_server.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "net_stat.h"
#include "tables.hpp"

namespace agent {

namespace fs = std::filesystem;

std::string links_dir(const config& cfg) {
    return cfg.bpffs_dir + "/links";
}
std::string maps_dir(const config& cfg) {
    return cfg.bpffs_dir + "/maps";
}
std::string state_path(const config& cfg) {
    return cfg.run_dir + "/state.json";
}
std::string labels_pin_path(const config& cfg) {
    return maps_dir(cfg) + "/" + k_label_map;
}

std::optional<label_names> read_pinned_labels(const config& cfg, std::string& error) {
    std::error_code ec;
    const std::string path = labels_pin_path(cfg);
    if (!fs::exists(path, ec)) {
        return std::nullopt;
    }
    auto fail = [&](const ebpf::error& e) {
        error = path + ": " + e.message();
        return std::nullopt;
    };
    auto m = ebpf::map::from_pin(path);
    if (!m) {
        return fail(m.error());
    }
    auto view = ebpf::hash<uint32_t, label_pin_value>::view(*m);  // checks the layout
    if (!view) {
        return fail(view.error());
    }
    auto keys = view->keys();
    if (!keys) {
        return fail(keys.error());
    }
    std::vector<std::pair<uint32_t, label_pin_value>> entries;
    for (uint32_t key : *keys) {
        if (auto v = view->lookup(key); v && *v) {
            entries.push_back({key, **v});
        }
    }
    return labels_from_pin(entries);
}

namespace {

double now_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

std::string errno_text(int e) {
    return std::strerror(e);
}

// Sends a notification to systemd ($NOTIFY_SOCKET), if it asked for them.
void sd_notify(const std::string& message) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path || !*path) {
        return;
    }
    int s = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        return;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    size_t len = std::strlen(path);
    if (len >= sizeof addr.sun_path) {
        ::close(s);
        return;
    }
    std::memcpy(addr.sun_path, path, len);
    if (addr.sun_path[0] == '@') {
        addr.sun_path[0] = 0;  // abstract socket
    }
    ::sendto(s, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
             socklen_t(offsetof(sockaddr_un, sun_path) + len));
    ::close(s);
}

struct link_facts {
    uint32_t id = 0;
    uint32_t prog_id = 0;
    uint64_t cgroup_id = 0;
    uint32_t attach_type = 0;
};

bool read_link(int fd, link_facts& out) {
    bpf_link_info info{};
    uint32_t len = sizeof info;
    if (!ebpf::sys::obj_get_info_by_fd(fd, &info, len)) {
        return false;
    }
    out.id = info.id;
    out.prog_id = info.prog_id;
    out.cgroup_id = info.cgroup.cgroup_id;
    out.attach_type = info.cgroup.attach_type;
    return true;
}

uint32_t program_id(const ebpf::program& p) {
    auto i = p.info();
    return i ? i->id : 0;
}

bool is_bpffs(const std::string& dir) {
    struct statfs st {};
    return ::statfs(dir.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

// mkdir -p for the agent's directories under bpffs (mode 0700).
bool make_dirs(const std::string& dir, std::string& error) {
    std::error_code ec;
    fs::path p(dir);
    std::vector<fs::path> missing;
    for (fs::path q = p; !q.empty() && !fs::exists(q, ec); q = q.parent_path()) {
        missing.push_back(q);
        if (q == q.parent_path()) {
            break;
        }
    }
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
        if (::mkdir(it->c_str(), 0700) != 0 && errno != EEXIST) {
            error = "create directory " + it->string() + ": " + errno_text(errno);
            return false;
        }
    }
    return true;
}

void remove_if_exists(const std::string& path) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        log_warn("cannot remove pin", {{"path", path}, {"error", errno_text(errno)}});
    }
}

void remove_dir_if_empty(const std::string& path) {
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT) {
        log_warn("cannot remove directory", {{"path", path}, {"error", errno_text(errno)}});
    }
}

// Removes the agent's pin directories that are empty (its own last).
void remove_agent_dirs(const config& cfg) {
    std::error_code ec;
    for (const auto& dir : {links_dir(cfg), maps_dir(cfg), cfg.bpffs_dir}) {
        if (fs::exists(dir, ec)) {
            remove_dir_if_empty(dir);
        }
    }
}

bool pid_alive(int pid) {
    if (pid <= 0) {
        return false;
    }
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
        return false;
    }
    // The pid may have been reused: check it is an ebpf-agent.
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    std::getline(comm, name);
    return name.rfind("ebpf-agent", 0) == 0;
}

bool write_file_atomically(const std::string& path, const std::string& text, std::string& error) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::trunc);
        f << text;
        if (!f) {
            error = "write " + tmp + ": " + errno_text(errno);
            return false;
        }
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        error = "rename " + tmp + ": " + errno_text(errno);
        return false;
    }
    return true;
}

}  // namespace

void log_failure(std::string_view message, const std::string& error) {
    const size_t log_at = error.find("\nverifier log:\n");
    log_error(message, {{"error", error.substr(0, log_at)}});
    if (log_at != std::string::npos) {
        std::fprintf(stderr, "%s\n", error.substr(log_at + 1).c_str());
    }
}

bool open_target_cgroup(const config& cfg, target_cgroup& out, std::string& error) {
    auto mount = ebpf::cgroup2_mount();
    if (!mount) {
        error = "find the cgroup2 mount: " + mount.error().message();
        return false;
    }
    out.mount = *mount;
    std::string path = cfg.cgroup;
    if (path.empty()) {
        path = *mount;
    } else if (path[0] != '/') {
        path = *mount + "/" + path;
    }
    std::error_code ec;
    fs::path canon = fs::weakly_canonical(path, ec);
    const std::string mount_canon = fs::weakly_canonical(*mount, ec).string();
    if (canon.string().rfind(mount_canon, 0) != 0) {
        error = "cgroup " + path + " is not under the cgroup2 mount " + *mount;
        return false;
    }
    out.path = canon.string();
    out.label = out.path.substr(mount_canon.size());
    if (out.label.empty()) {
        out.label = "/";
    }
    auto f = ebpf::open_cgroup(out.path);
    if (!f) {
        error = "open cgroup " + out.path + ": " + f.error().message();
        return false;
    }
    struct stat st {};
    if (::fstat(f->get(), &st) != 0) {
        error = "stat cgroup " + out.path + ": " + errno_text(errno);
        return false;
    }
    out.fd = std::move(*f);
    out.id = st.st_ino;
    return true;
}

nlohmann::json read_state_file(const config& cfg) {
    std::ifstream f(state_path(cfg));
    if (!f) {
        return nullptr;
    }
    auto j = nlohmann::json::parse(f, nullptr, false);
    return j.is_discarded() ? nlohmann::json(nullptr) : j;
}

nlohmann::json running_daemon_state(const config& cfg) {
    nlohmann::json j = read_state_file(cfg);
    if (!j.is_object() || !j.contains("pid") || !j["pid"].is_number_integer()) {
        return nullptr;
    }
    const int pid = j["pid"].get<int>();
    return pid != ::getpid() && pid_alive(pid) ? j : nlohmann::json(nullptr);
}

int running_daemon_pid(const config& cfg) {
    const nlohmann::json j = running_daemon_state(cfg);
    return j.is_null() ? 0 : j["pid"].get<int>();
}

bool check_load(const config& cfg, const run_options& o, std::string& error) {
    generation g;
    generation_options go;
    go.object_files = o.object_files;
    return load_generation(cfg, go, g, error);
}

namespace {

// Everything the running daemon holds.
struct daemon {
    config cfg;
    std::string config_path;
    std::map<std::string, std::string> object_files;
    target_cgroup cg;
    generation gen;
    std::vector<attachment> attached;
    bool last_reload_ok = true;
    double last_reload_time = 0;
    std::string last_reload_error;
    uint64_t reload_attempts = 0;
    double started = 0;

    // The statistics, shared with the HTTP thread under `mu`.
    std::mutex mu;
    std::unique_ptr<cgroup_names> names;
    std::unique_ptr<metrics_collector> collector;
    label_names labels;
    // The memory of the last /metrics page, kept for the next one: at 10,000 cgroups x 8 dcs a
    // page is 60 MB, and rendering into fresh memory costs 20 ms more (page faults).
    std::string spare_page;
    http_server server;
    std::string metrics_address;
    std::atomic<bool> ready{false};
    bool have_bpffs = false;

    // Adopted pins, before the attach step consumes them.
    std::map<std::string, ebpf::cgroup_link> pinned_links;
    std::map<std::string, ebpf::map> pinned_maps;

    bool probe(std::string& error) {
        if (!open_target_cgroup(cfg, cg, error)) {
            return false;
        }
        const std::string parent = fs::path(cfg.bpffs_dir).parent_path().string();
        have_bpffs = is_bpffs(parent) || is_bpffs(cfg.bpffs_dir);
        if (!have_bpffs && cfg.on_stop == on_stop_mode::keep) {
            error = "on_stop = \"keep\" needs the BPF filesystem, which is not mounted at " +
                    parent + " (mount -t bpf bpf " + parent + ")";
            return false;
        }
        if (!have_bpffs) {
            log_warn(
                "the BPF filesystem is not mounted: programs pinned by an earlier run in "
                "keep mode cannot be adopted",
                {{"bpffs_dir", cfg.bpffs_dir}});
        }
        auto links = ebpf::features::cgroup_links();
        const bool have_links = links && *links;
        log_info("kernel probed",
                 {{"cgroup", cg.path},
                  {"cgroup_id", std::to_string(cg.id)},
                  {"bpffs", have_bpffs ? cfg.bpffs_dir : "not mounted"},
                  {"btf", fs::exists("/sys/kernel/btf/vmlinux") ? "yes" : "no"},
                  {"cgroup_links", have_links ? "yes" : "no (legacy multi attach)"}});
        // tcp_rto turns flow labels on per socket (IPV6_AUTOFLOWLABEL), which the kernel
        // ignores when the host's sysctl is 0: its fixed/rehash modes then have no label to act
        // on.
        if (cfg.programs.tcp_rto) {
            std::ifstream f("/proc/sys/net/ipv6/auto_flowlabels");
            int v = -1;
            if (f >> v && v == 0) {
                log_warn(
                    "IPv6 flow labels are off on this host (net.ipv6.auto_flowlabels = 0): "
                    "tcp_rto's flow-label modes have no effect",
                    {{"sysctl", "net.ipv6.auto_flowlabels"}});
            }
        }
        return true;
    }

    // Finds the agent's own pins: links to update in place, counter maps to continue.
    void adopt_pins() {
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(links_dir(cfg), ec)) {
            const std::string name = e.path().filename().string();
            const std::string path = e.path().string();
            const program_def* def = find_program_def(name);
            if (!def) {
                log_warn("unknown pin in the agent's directory, left alone", {{"path", path}});
                continue;
            }
            auto l = ebpf::cgroup_link::from_pin(path);
            if (!l) {
                log_warn("cannot open pinned link, removing it",
                         {{"path", path}, {"error", l.error().message()}});
                remove_if_exists(path);
                continue;
            }
            link_facts facts;
            read_link(l->link_fd(), facts);
            if (facts.cgroup_id == 0) {
                log_info("pinned link is defunct (its cgroup is gone), recreating",
                         {{"program", name}, {"link_id", std::to_string(facts.id)}});
                remove_if_exists(path);
                continue;
            }
            if (facts.cgroup_id != cg.id || facts.attach_type != def->attach_type ||
                !(cfg.programs.*def->enabled)) {
                log_info("pinned link no longer wanted, detaching",
                         {{"program", name},
                          {"link_id", std::to_string(facts.id)},
                          {"reason",
                           facts.cgroup_id != cg.id ? "another cgroup" : "disabled in config"}});
                (void)l->detach();
                remove_if_exists(path);
                continue;
            }
            log_info("adopting pinned link", {{"program", name},
                                              {"link_id", std::to_string(facts.id)},
                                              {"old_prog_id", std::to_string(facts.prog_id)}});
            pinned_links.emplace(name, std::move(*l));
        }
        for (const auto& c : counter_map_defs) {
            const std::string path = maps_dir(cfg) + "/" + std::string(c.map);
            if (!fs::exists(path, ec)) {
                continue;
            }
            auto m = ebpf::map::from_pin(path);
            if (!m) {
                log_warn("cannot open pinned map, removing it",
                         {{"path", path}, {"error", m.error().message()}});
                remove_if_exists(path);
                continue;
            }
            pinned_maps.emplace(std::string(c.object) + "/" + std::string(c.map), std::move(*m));
        }
        if (pinned_maps.empty()) {
            return;
        }
        // The dc counters' keys hold ids: they go on only where each id keeps its name, and
        // only where the names were pinned with them (not by an agent from before the label
        // map, nor when a stop ended between the counters' pins and the names').
        const std::string dc_keys[] = {"net_stat/" NET_STAT_MAP_DC, "net_stat/" NET_STAT_MAP_DC_1};
        if (!pinned_maps.count(dc_keys[0]) && !pinned_maps.count(dc_keys[1])) {
            return;
        }
        std::string error;
        auto pinned = read_pinned_labels(cfg, error);
        std::string conflict = pinned ? label_conflict(*pinned, build_label_names(cfg)) : error;
        if (!pinned && conflict.empty()) {
            conflict =
                "the names they were counted under are not pinned (" + labels_pin_path(cfg) + ")";
        }
        if (!conflict.empty()) {
            log_warn(
                "pinned datacenter counters cannot go on under this config's names: they "
                "restart from zero",
                {{"reason", conflict}});
            for (const auto& k : dc_keys) {
                pinned_maps.erase(k);
            }
        }
    }

    // Keep mode: pins the names the counters' ids stand for, replacing the last ones.
    bool pin_labels(const label_names& names, std::string& error) {
        auto m = ebpf::map::create({.type = BPF_MAP_TYPE_HASH,
                                    .key_size = sizeof(uint32_t),
                                    .value_size = sizeof(label_pin_value),
                                    .max_entries = k_label_map_max_entries,
                                    .flags = BPF_F_NO_PREALLOC,
                                    .name = k_label_map});
        if (!m) {
            error = "create the label map: " + m.error().message();
            return false;
        }
        for (const auto& [key, v] : label_pin_entries(names)) {
            if (auto r = m->update(&key, &v); !r) {
                error = "fill the label map: " + r.error().message();
                return false;
            }
        }
        // Pinned under a new name, then renamed over the last: a stop at any moment leaves
        // one whole label map.
        const std::string path = labels_pin_path(cfg), fresh = path + "_new";  // bpffs refuses dots
        remove_if_exists(fresh);
        if (auto r = m->pin(fresh); !r) {
            error = "pin " + fresh + ": " + r.error().message();
            return false;
        }
        if (::rename(fresh.c_str(), path.c_str()) != 0) {
            error = "rename " + fresh + " to " + path + ": " + std::strerror(errno);
            remove_if_exists(fresh);
            return false;
        }
        return true;
    }

    bool load(std::string& error) {
        generation_options o;
        o.object_files = object_files;
        for (const auto& [key, m] : pinned_maps) {
            o.counters[key] = &m;
        }
        if (load_generation(cfg, o, gen, error)) {
            if (!pinned_maps.empty()) {
                log_info("counters continue in the pinned maps",
                         {{"maps", std::to_string(pinned_maps.size())}});
            }
            return true;
        }
        if (pinned_maps.empty() || error.find("replace map") == std::string::npos) {
            return false;
        }
        // The pinned counters do not fit the new layout or sizes: start them afresh.
        log_warn("pinned counter maps are incompatible, counters restart from zero",
                 {{"reason", error}});
        pinned_maps.clear();
        error.clear();
        o.counters.clear();
        return load_generation(cfg, o, gen, error);
    }

    // Attaches every enabled program; on failure undoes what it did.
    bool attach(std::string& error) {
        struct undo {
            attachment* a;
            ebpf::program old;  // for an adopted link: the program to put back
        };
        std::vector<undo> done;
        auto rollback = [&] {
            for (auto it = done.rbegin(); it != done.rend(); ++it) {
                if (it->a->adopted) {
                    (void)it->a->link.update(it->old);
                    it->a->link.release();
                } else {
                    (void)it->a->link.detach();
                }
            }
            attached.clear();
        };
        attached.reserve(std::size(program_defs));
        for (const auto& def : program_defs) {
            if (!(cfg.programs.*def.enabled)) {
                continue;
            }
            ebpf::program* p = gen.program(def.object, def.name);
            if (!p) {
                error = "program " + std::string(def.name) + ": not loaded";
                rollback();
                return false;
            }
            attachment a;
            a.def = &def;
            a.prog_id = program_id(*p);
            ebpf::program old;
            if (auto it = pinned_links.find(std::string(def.name)); it != pinned_links.end()) {
                link_facts facts;
                read_link(it->second.link_fd(), facts);
                auto prev = ebpf::program::from_id(facts.prog_id);
                auto r = it->second.update(*p);
                if (!r) {
                    error = "program " + std::string(def.name) + ": replace in pinned link " +
                            std::to_string(facts.id) + ": " + r.error().message();
                    rollback();
                    return false;
                }
                if (prev) {
                    old = std::move(*prev);
                }
                a.link = std::move(it->second);
                pinned_links.erase(it);
                a.adopted = true;
            } else {
                auto l = ebpf::cgroup_link::attach(cg.fd.get(), *p, def.attach_type);
                if (!l) {
                    error = "program " + std::string(def.name) + ": " + l.error().message();
                    rollback();
                    return false;
                }
                a.link = std::move(*l);
            }
            if (a.link.is_link()) {
                link_facts facts;
                read_link(a.link.link_fd(), facts);
                a.link_id = facts.id;
            }
            attached.push_back(std::move(a));
            done.push_back({&attached.back(), std::move(old)});
        }
        return true;
    }

    // Keep mode: pins the links and counter maps. Detach mode: removes the agent's pins, so
    // that nothing outlives the process (not even a SIGKILL).
    bool settle_pins(std::string& error) {
        if (cfg.on_stop == on_stop_mode::keep) {
            if (!make_dirs(links_dir(cfg), error) || !make_dirs(maps_dir(cfg), error)) {
                return false;
            }
            for (const auto& a : attached) {
                const std::string path = links_dir(cfg) + "/" + std::string(a.def->name);
                if (a.adopted) {
                    continue;
                }
                if (!a.link.is_link()) {
                    log_warn("legacy attachment cannot be pinned: it will not be adopted",
                             {{"program", std::string(a.def->name)}});
                    continue;
                }
                if (auto r = a.link.pin(path); !r) {
                    error = "pin link " + path + ": " + r.error().message();
                    return false;
                }
            }
            for (const auto& c : counter_map_defs) {
                ebpf::map* m = gen.map(c.object, c.map);
                if (!m) {
                    continue;
                }
                const std::string path = maps_dir(cfg) + "/" + std::string(c.map);
                auto pinned = ebpf::map::from_pin(path);
                if (pinned && pinned->id().value_or(0) == m->id().value_or(1)) {
                    continue;
                }
                remove_if_exists(path);
                if (auto r = m->pin(path); !r) {
                    error = "pin map " + path + ": " + r.error().message();
                    return false;
                }
            }
            return pin_labels(build_label_names(cfg), error);
        }
        remove_pins();
        return true;
    }

    void remove_pins() {
        for (const auto& d : program_defs) {
            remove_if_exists(links_dir(cfg) + "/" + std::string(d.name));
        }
        for (const auto& c : counter_map_defs) {
            remove_if_exists(maps_dir(cfg) + "/" + std::string(c.map));
        }
        remove_if_exists(labels_pin_path(cfg));
        remove_if_exists(labels_pin_path(cfg) + "_new");
        remove_agent_dirs(cfg);
    }

    nlohmann::json state_json() const {
        nlohmann::json j;
        j["pid"] = ::getpid();
        j["started"] = started;
        j["config"] = cfg.source;
        j["config_hash"] = cfg.hash();
        j["cgroup"] = cg.label;
        j["cgroup_id"] = cg.id;
        j["bpffs_dir"] = cfg.bpffs_dir;
        j["on_stop"] = cfg.on_stop == on_stop_mode::keep ? "keep" : "detach";
        j["metrics"] = metrics_address;
        j["last_reload"] = {{"ok", last_reload_ok},
                            {"time", last_reload_time},
                            {"attempts", reload_attempts},
                            {"error", last_reload_error}};
        nlohmann::json progs = nlohmann::json::array();
        for (const auto& a : attached) {
            progs.push_back({{"name", a.def->name},
                             {"attach_type", a.def->attach_name},
                             {"mode", a.link.is_link() ? "link" : "multi"},
                             {"prog_id", a.prog_id},
                             {"link_id", a.link_id},
                             {"adopted", a.adopted}});
        }
        j["programs"] = progs;
        nlohmann::json maps = nlohmann::json::object();
        for (const auto& [object, c] : gen.objects) {
            for (const auto& [name, m] : c.maps()) {
                maps[object + "/" + name] = m.id().value_or(0);
            }
        }
        j["maps"] = maps;
        return j;
    }

    void write_state() {
        std::string error;
        if (!make_dirs(cfg.run_dir, error) ||
            !write_file_atomically(state_path(cfg), state_json().dump(2) + "\n", error)) {
            log_warn("cannot write the state file", {{"error", error}});
        }
    }

    // The dc map only with the dc programs: the object creates it either way, and as the
    // source of the rows an empty one would hide the per-cgroup counts.
    counter_maps current_counter_maps() {
        const bool dc = cfg.programs.net_stat_dc;
        return {gen.map("net_stat", NET_STAT_MAP_CGROUP),
                dc ? gen.map("net_stat", NET_STAT_MAP_DC) : nullptr,
                gen.map("net_stat", NET_STAT_MAP_ERRORS),
                dc ? gen.map("net_stat", NET_STAT_MAP_DC_1) : nullptr};
    }

    rollup_options rollup() const {
        rollup_options r;
        r.cgroup_depth = cfg.cgroup_depth;
        r.max_cgroups = cfg.max_cgroups;
        return r;
    }

    self_state self() const {
        self_state s;
        s.version = EBPF_AGENT_VERSION;
        s.revision = EBPF_AGENT_REVISION;
        if (cfg.local_dc && cfg.local_dc <= cfg.datacenters.size()) {
            s.local_dc = cfg.datacenters[cfg.local_dc - 1];
        }
        s.config_hash = cfg.hash();
        s.last_reload_ok = last_reload_ok;
        s.last_reload_time = last_reload_time;
        for (const auto& d : program_defs) {
            program_state p;
            p.name = d.name;
            p.attach_type = d.attach_name;
            for (const auto& a : attached) {
                if (a.def == &d) {
                    p.attached = a.link.attached();
                    p.mode = a.link.is_link() ? "link" : "multi";
                    p.prog_id = a.prog_id;
                    p.link_id = a.link_id;
                }
            }
            if (cfg.programs.*d.enabled || p.attached) {
                s.programs.push_back(p);
            }
        }
        s.maps = gen.fills;
        return s;
    }

    // Renders /metrics into `out`, in the memory of the last page sent where it came back.
    void render_metrics(std::string& out) {
        std::lock_guard lock(mu);
        out.swap(spare_page);
        out.clear();
        if (!collector) {
            return;
        }
        const std::string err = collector->scrape(self(), labels.dc, labels.net_type, out);
        if (!err.empty()) {
            log_warn("scrape: reading the counters failed", {{"error", err}});
        }
    }

    // Keeps a sent page's memory for the next render (the larger, with two scrapes at once).
    void recycle_page(std::string&& page) {
        std::lock_guard lock(mu);
        if (page.capacity() > spare_page.capacity()) {
            spare_page = std::move(page);
        }
    }

    // The foreground statistics line: totals over every cgroup.
    void log_stats() {
        std::lock_guard lock(mu);
        if (!collector) {
            return;
        }
        if (auto r = collector->collect(); !r) {
            log_warn("stats: reading the counters failed", {{"error", r.error().message()}});
            return;
        }
        traffic_row t;
        std::set<uint64_t> cgroups;
        for (const auto& r : collector->snapshot().rows) {
            t.rx_bytes += r.rx_bytes;
            t.rx_packets += r.rx_packets;
            t.tx_bytes += r.tx_bytes;
            t.tx_packets += r.tx_packets;
            cgroups.insert(r.cgroup_id);
        }
        log_info("stats", {{"cgroups", std::to_string(cgroups.size())},
                           {"rx_bytes", std::to_string(t.rx_bytes)},
                           {"rx_packets", std::to_string(t.rx_packets)},
                           {"tx_bytes", std::to_string(t.tx_bytes)},
                           {"tx_packets", std::to_string(t.tx_packets)}});
    }

    bool start_http(std::string& error) {
        if (cfg.metrics_listen.empty()) {
            return true;
        }
        http_handlers h;
        h.metrics = [this](std::string& body) {
            render_metrics(body);
        };
        h.recycle = [this](std::string&& body) {
            recycle_page(std::move(body));
        };
        h.ready = [this](std::string& reason) {
            if (!ready) {
                reason = "programs not attached yet";
            }
            return ready.load();
        };
        std::string e;
        if (!http_server::start(cfg.metrics_listen, std::move(h), server, e)) {
            error = "metrics endpoint: " + e;
            return false;
        }
        std::string host = cfg.metrics_host;
        if (host.find(':') != std::string::npos) {
            host = "[" + host + "]";
        }
        metrics_address = host + ":" + std::to_string(server.port());
        log_info("metrics endpoint listening", {{"address", metrics_address}});
        return true;
    }

    // Logs the programs at the agent's hooks on its cgroup that are not its own: they are left
    // alone, but operators should know they run next to the agent's.
    void report_foreign() {
        std::set<uint32_t> ours;
        for (const auto& a : attached) {
            ours.insert(a.prog_id);
        }
        for (uint32_t type : agent_attach_types) {
            auto q = ebpf::query_cgroup(cg.fd.get(), type);
            if (!q) {
                continue;
            }
            for (const auto& p : q->programs) {
                if (ours.count(p.prog_id)) {
                    continue;
                }
                auto prog = ebpf::program::from_id(p.prog_id);
                log_warn("a program the agent does not own is attached at its hook; left alone",
                         {{"program", prog ? prog->name() : "?"},
                          {"prog_id", std::to_string(p.prog_id)},
                          {"attach_type", std::string(attach_type_name(type))},
                          {"cgroup", cg.label}});
            }
        }
    }

    bool start(std::string& error) {
        started = now_seconds();
        // Debug lines time each phase of the start.
        auto t = std::chrono::steady_clock::now();
        auto phase = [&](const char* name) {
            const auto now = std::chrono::steady_clock::now();
            char ms[32];
            std::snprintf(ms, sizeof ms, "%.3f",
                          std::chrono::duration<double, std::milli>(now - t).count());
            log_debug("start phase", {{"phase", name}, {"ms", ms}});
            t = now;
        };
        if (int pid = running_daemon_pid(cfg)) {
            error = "another ebpf-agent (pid " + std::to_string(pid) + ") runs with state file " +
                    state_path(cfg);
            return false;
        }
        if (!probe(error)) {
            return false;
        }
        phase("probe");
        if (!start_http(error)) {
            return false;
        }
        phase("http");
        if (have_bpffs) {
            adopt_pins();
        }
        phase("adopt");
        if (!load(error)) {
            return false;
        }
        phase("load");
        if (!attach(error)) {
            return false;
        }
        phase("attach");
        if (!settle_pins(error)) {
            detach_all();
            return false;
        }
        phase("pins");
        report_foreign();
        phase("foreign");
        last_reload_time = started;
        {
            std::lock_guard lock(mu);
            labels = build_label_names(cfg);
            names = std::make_unique<cgroup_names>(cg.mount);
            collector =
                std::make_unique<metrics_collector>(current_counter_maps(), *names, rollup());
        }
        phase("metrics");
        ready = true;
        write_state();
        for (const auto& a : attached) {
            log_info("attached", {{"program", std::string(a.def->name)},
                                  {"attach_type", std::string(a.def->attach_name)},
                                  {"cgroup", cg.label},
                                  {"mode", a.link.is_link() ? "link" : "multi"},
                                  {"prog_id", std::to_string(a.prog_id)},
                                  {"link_id", std::to_string(a.link_id)},
                                  {"adopted", a.adopted ? "yes" : "no"}});
        }
        return true;
    }

    void detach_all() {
        for (auto it = attached.rbegin(); it != attached.rend(); ++it) {
            if (auto r = it->link.detach(); !r) {
                log_warn("detach failed",
                         {{"program", std::string(it->def->name)}, {"error", r.error().message()}});
            }
        }
        attached.clear();
        remove_pins();
    }

    void stop() {
        ready = false;
        server.stop();
        {
            std::lock_guard lock(mu);
            collector.reset();
        }
        if (cfg.on_stop == on_stop_mode::keep) {
            size_t kept = 0;
            for (auto& a : attached) {
                kept += a.link.is_link();
                a.link.release();
            }
            attached.clear();
            log_info("stopped; programs left attached and pinned",
                     {{"links", std::to_string(kept)}, {"bpffs_dir", cfg.bpffs_dir}});
        } else {
            const size_t n = attached.size();
            detach_all();
            log_info("stopped; programs detached and unloaded", {{"programs", std::to_string(n)}});
        }
        gen.objects.clear();
        ::unlink(state_path(cfg).c_str());
    }

    // SIGHUP: validate, build a new generation, move each attachment to it atomically.
    void reload() {
        sd_notify("RELOADING=1");
        ++reload_attempts;
        auto fail = [&](const std::string& why) {
            last_reload_ok = false;
            last_reload_error = why;
            log_failure("reload failed; the running config stays", why);
            write_state();
            sd_notify("READY=1\nSTATUS=reload failed: " + why);
        };
        config next;
        config_error cerr;
        const bool ok = config_path.empty() ? default_config(next, cerr)
                                            : load_config_file(config_path, next, cerr);
        if (!ok) {
            fail(cerr.message);
            return;
        }
        if (auto changes = restart_only_changes(cfg, next); !changes.empty()) {
            std::string list;
            for (const auto& c : changes) {
                list += (list.empty() ? "" : ", ") + c;
            }
            fail("these changes need a restart: " + list);
            return;
        }
        generation_options o;
        o.object_files = object_files;
        for (const auto& c : counter_map_defs) {
            if (ebpf::map* m = gen.map(c.object, c.map)) {
                o.counters[std::string(c.object) + "/" + std::string(c.map)] = m;
            }
        }
        generation next_gen;
        std::string error;
        if (!load_generation(next, o, next_gen, error)) {
            fail(error);
            return;
        }
        // The flip: each link moves to its new program atomically. On a failure the links
        // already moved go back, so the running config stays whole.
        size_t moved = 0;
        for (; moved < attached.size(); ++moved) {
            auto& a = attached[moved];
            ebpf::program* p = next_gen.program(a.def->object, a.def->name);
            auto r = p ? a.link.update(*p) : ebpf::result<void>(ebpf::error(ENOENT, "reload"));
            if (!r) {
                error = "program " + std::string(a.def->name) + ": " + r.error().message();
                break;
            }
        }
        if (moved < attached.size()) {
            for (size_t i = 0; i < moved; ++i) {
                auto& a = attached[i];
                if (ebpf::program* p = gen.program(a.def->object, a.def->name)) {
                    (void)a.link.update(*p);
                }
            }
            fail(error);
            return;
        }
        for (auto& a : attached) {
            a.prog_id = program_id(*next_gen.program(a.def->object, a.def->name));
        }
        label_names next_labels = build_label_names(next);
        const bool renamed = next_labels.dc != labels.dc || next_labels.net_type != labels.net_type;
        {
            std::lock_guard lock(mu);
            gen = std::move(next_gen);
            cfg = std::move(next);
            labels = std::move(next_labels);
            collector->set_maps(current_counter_maps());
            collector->set_options(rollup());
        }
        log_setup(cfg.log_level_, cfg.log_format_, std::getenv("JOURNAL_STREAM") == nullptr);
        if (std::string pin_error;
            renamed && cfg.on_stop == on_stop_mode::keep && !pin_labels(labels, pin_error)) {
            log_warn("the new names are not pinned: the next start may restart the counters",
                     {{"error", pin_error}});
        }
        last_reload_ok = true;
        last_reload_error.clear();
        last_reload_time = now_seconds();
        write_state();
        log_info("reloaded", {{"config", cfg.source}, {"hash", cfg.hash()}});
        sd_notify("READY=1\nSTATUS=running (reloaded)");
    }
};

}  // namespace

namespace {

// The process's peak resident set (VmHWM), in KiB.
long peak_rss_kib() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmHWM:", 0) == 0) {
            return std::atol(line.c_str() + 6);
        }
    }
    return 0;
}

}  // namespace

int run_daemon(const run_options& ro) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string& config_path = ro.config_path;
    config cfg;
    config_error cerr;
    const bool ok =
        config_path.empty() ? default_config(cfg, cerr) : load_config_file(config_path, cfg, cerr);
    if (!ok) {
        log_error("bad config", {{"error", cerr.message}});
        return exit_config;
    }
    log_setup(cfg.log_level_, cfg.log_format_, std::getenv("JOURNAL_STREAM") == nullptr);

    // Signals are taken synchronously by the main loop; block them before any thread starts.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) {
        sigaddset(&set, s);
    }
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    daemon d;
    d.cfg = cfg;
    d.config_path = config_path;
    d.object_files = ro.object_files;
    log_info("starting",
             {{"config", cfg.source}, {"hash", cfg.hash()}, {"pid", std::to_string(::getpid())}});
    std::string error;
    if (!d.start(error)) {
        log_failure("start failed; nothing is attached", error);
        return exit_failure;
    }
    sd_notify("READY=1\nSTATUS=running");
    const double startup_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    char ms[32];
    std::snprintf(ms, sizeof ms, "%.2f", startup_ms);
    log_info("ready", {{"programs", std::to_string(d.attached.size())},
                       {"cgroup", d.cg.label},
                       {"startup_ms", ms},
                       {"peak_rss_kib", std::to_string(peak_rss_kib())}});

    auto next_stats = std::chrono::steady_clock::now() + std::chrono::seconds(d.cfg.stats_interval);
    for (;;) {
        timespec timeout{1, 0};
        siginfo_t info{};
        int sig = sigtimedwait(&set, &info, &timeout);
        if (d.cfg.stats_interval && std::chrono::steady_clock::now() >= next_stats) {
            d.log_stats();
            next_stats =
                std::chrono::steady_clock::now() + std::chrono::seconds(d.cfg.stats_interval);
        }
        if (sig == SIGHUP) {
            d.reload();
        } else if (sig == SIGTERM || sig == SIGINT) {
            log_info("stopping",
                     {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
                      {"on_stop", d.cfg.on_stop == on_stop_mode::keep ? "keep" : "detach"}});
            sd_notify("STOPPING=1");
            break;
        }
    }
    d.stop();
    return exit_ok;
}

int run_cleanup(const config& cfg, bool dry_run) {
    if (int pid = running_daemon_pid(cfg)) {
        log_error("an ebpf-agent runs with this config; stop it first",
                  {{"pid", std::to_string(pid)}});
        return exit_failure;
    }
    size_t removed = 0;
    std::error_code ec;
    for (const auto& d : program_defs) {
        const std::string path = links_dir(cfg) + "/" + std::string(d.name);
        if (!fs::exists(path, ec)) {
            continue;
        }
        ++removed;
        log_info(dry_run ? "would detach and unpin" : "detaching and unpinning", {{"path", path}});
        if (dry_run) {
            continue;
        }
        if (auto l = ebpf::cgroup_link::from_pin(path)) {
            (void)l->detach();
        }
        remove_if_exists(path);
    }
    for (const auto& c : counter_map_defs) {
        const std::string path = maps_dir(cfg) + "/" + std::string(c.map);
        if (!fs::exists(path, ec)) {
            continue;
        }
        ++removed;
        log_info(dry_run ? "would unpin" : "unpinning", {{"path", path}});
        if (!dry_run) {
            remove_if_exists(path);
        }
    }
    for (const std::string& path : {labels_pin_path(cfg), labels_pin_path(cfg) + "_new"}) {
        if (fs::exists(path, ec)) {
            ++removed;
            log_info(dry_run ? "would unpin" : "unpinning", {{"path", path}});
            if (!dry_run) {
                remove_if_exists(path);
            }
        }
    }
    if (!dry_run) {
        remove_agent_dirs(cfg);
        ::unlink(state_path(cfg).c_str());
    }
    log_info(removed ? "cleanup done" : "nothing to clean up",
             {{"removed", std::to_string(removed)}, {"bpffs_dir", cfg.bpffs_dir}});
    return exit_ok;
}

int run_reload(const config& cfg, int timeout_ms) {
    const int pid = running_daemon_pid(cfg);
    if (!pid) {
        log_error("no running ebpf-agent found", {{"state_file", state_path(cfg)}});
        return exit_failure;
    }
    auto read_reload = [&]() -> nlohmann::json {
        const nlohmann::json j = read_state_file(cfg);
        return j.is_object() ? j.value("last_reload", nlohmann::json{}) : nlohmann::json{};
    };
    const nlohmann::json before = read_reload();
    if (::kill(pid, SIGHUP) != 0) {
        log_error("cannot signal the agent",
                  {{"pid", std::to_string(pid)}, {"error", errno_text(errno)}});
        return exit_failure;
    }
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        nlohmann::json now = read_reload();
        if (!now.is_null() && now != before) {
            if (now.value("ok", false)) {
                log_info("reloaded", {{"pid", std::to_string(pid)}});
                return exit_ok;
            }
            log_error("reload failed; the agent keeps its running config",
                      {{"error", now.value("error", std::string())}});
            return exit_config;
        }
    }
    log_error("no reload result in time", {{"pid", std::to_string(pid)}});
    return exit_failure;
}

}  // namespace agent
