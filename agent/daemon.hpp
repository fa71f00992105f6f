// The daemon: start (probe, load, fill, adopt, attach: all or nothing), reload, stop (detach or
// keep), and the files it shares with the CLI verbs (state file, pins).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config.hpp"
#include "ebpf/cgroup.hpp"
#include "generation.hpp"
#include "programs.hpp"
#include "tables.hpp"

namespace agent {

// Exit codes (sysexits).
inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_usage = 64;
inline constexpr int exit_config = 78;

// Logs a failure as one line; a verifier log in `error` follows as it is, line by line.
void log_failure(std::string_view message, const std::string& error);

// Where the agent's pins live under its bpffs directory.
std::string links_dir(const config& cfg);
std::string maps_dir(const config& cfg);
// The state file of a running daemon (JSON: pid, programs, ids), under run_dir.
std::string state_path(const config& cfg);

// Keep mode's label map (tables.hpp): the names the pinned counters' ids stand for.
std::string labels_pin_path(const config& cfg);

// Reads the pinned label names; nullopt when none are pinned, or (with `error` set) when the pin
// cannot be read.
std::optional<label_names> read_pinned_labels(const config& cfg, std::string& error);

// The target cgroup: its path (under the cgroup2 mount), open fd and id.
struct target_cgroup {
    std::string mount;  // the cgroup2 mount point
    std::string path;   // absolute path of the cgroup directory
    std::string label;  // path relative to the mount ("/" for the root)
    ebpf::fd fd;
    uint64_t id = 0;
};
bool open_target_cgroup(const config& cfg, target_cgroup& out, std::string& error);

// One of our programs attached to the target cgroup.
struct attachment {
    const program_def* def = nullptr;
    ebpf::cgroup_link link;
    uint32_t prog_id = 0;
    uint32_t link_id = 0;  // 0: legacy multi attach
    bool adopted = false;  // found pinned at start and updated in place
};

struct run_options {
    std::string config_path;  // empty: the embedded default config
    // Objects read from files instead of the embedded ones (name -> path), for developers.
    std::map<std::string, std::string> object_files;
};

// Runs the daemon in the foreground until SIGTERM/SIGINT; returns the exit code.
int run_daemon(const run_options& o);

// Loads the enabled programs through the verifier without attaching anything.
bool check_load(const config& cfg, const run_options& o, std::string& error);

// Removes everything the agent owns: pinned links (detached), pinned maps, its directories and
// its state file. Idempotent. Refuses while a daemon runs on this config.
int run_cleanup(const config& cfg, bool dry_run);

// Sends SIGHUP to the running daemon and waits for its reload result.
int run_reload(const config& cfg, int timeout_ms);

// The state file's contents (JSON), or null when it is missing or unreadable.
nlohmann::json read_state_file(const config& cfg);

// The running daemon's state file, or null when no daemon runs with this config (no file, or
// its pid is gone or is this process).
nlohmann::json running_daemon_state(const config& cfg);

// Reads the running daemon's pid from the state file; 0 if none runs.
int running_daemon_pid(const config& cfg);

}  // namespace agent
