// The agent's cgroup id -> path resolver: walks the cgroup2 mount, caches what it found, and
// tells which ids no longer exist (agent).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/sys/fd.hpp"

namespace agent {

// What the resolver knows of one cgroup id.
struct cgroup_path {
    // The path relative to the cgroup2 mount ("/" for the root, "/system.slice/x.service"), or
    // nullptr when the id cannot be resolved (its traffic goes to cgroup="other").
    const std::string* path = nullptr;
    // True while the id is new and no walk has looked for it yet: leave it out of this scrape
    // rather than count it as "other" now and under its own path a moment later.
    bool hold = false;
};

struct cgroup_names_options {
    // The least time between two walks made because an unknown id showed up.
    std::chrono::steady_clock::duration min_rewalk = std::chrono::seconds(1);
    // The most time between two walks: how soon a removed cgroup is noticed when no new id
    // shows up.
    std::chrono::steady_clock::duration max_age = std::chrono::seconds(60);
    // Names a new id by opening its cgroup by handle (open_by_handle_at: cgroupfs takes the id
    // as the handle) before falling back to a walk: ~7 us an id against ~60 ms for a walk of
    // 10,000 cgroups. Needs CAP_DAC_READ_SEARCH; without it (EPERM) every new id waits for a walk.
    bool open_by_handle = true;
};

// Resolves cgroup ids (on cgroup v2 the cgroupfs inode number of the cgroup's directory, which
// is what bpf_skb_cgroup_id() returns) to paths by walking the cgroup2 mount.
//
// An id is *gone* when a walk did not find it although the cgroup existed when that walk
// began: either an earlier walk found it, or update() was first given the id before the walk
// started (the counter maps held it, so the cgroup existed). A walk that fails for any reason
// but a directory vanishing under it (ENOENT) changes nothing, so a permission problem never
// makes live cgroups look removed. A gone id keeps its last path (so that its final counts
// still go to its label) until an update() no longer lists it.
class cgroup_names {
  public:
    using clock = std::chrono::steady_clock;

    // Makes a resolver for the cgroup2 file system mounted at `mount` (see
    // ebpf::cgroup2_mount()); it walks nothing until asked.
    explicit cgroup_names(std::string mount, cgroup_names_options options = {});

    // Looks up the ids a scrape found in the counter maps (each id once). Walks the mount again
    // when one of them is unknown (at most once per min_rewalk) or when the last walk is older
    // than max_age. Returns the ids that are gone. A failed walk is reported in `walk_error`
    // (cleared otherwise) and only delays resolution. Forgets the ids that are neither alive
    // nor listed.
    std::vector<uint64_t> update(std::span<const uint64_t> ids, std::string& walk_error,
                                 clock::time_point now = clock::now());

    // Returns what is known of `id` after the last update(). The path pointer stays valid until
    // the next update() or walk().
    cgroup_path lookup(uint64_t id) const;

    // Walks the mount now, ignoring the rate limit.
    ebpf::result<void> walk(clock::time_point now = clock::now());

    const std::string& mount() const { return mount_; }
    // Returns how many cgroups the last successful walk found.
    size_t alive() const { return alive_; }
    // Returns how many walks succeeded.
    uint64_t walks() const { return walks_; }
    // Returns how many ids were named by handle, without a walk.
    uint64_t opened_by_handle() const { return by_handle_; }

  private:
    struct entry {
        std::string path;
        bool alive = true;
        uint64_t found_in = 0;  // the walk attempt that last found it
        uint64_t listed = 0;    // the update() that last listed it
    };
    struct pending {
        uint64_t walks_before = 0;  // walks_ when update() first listed it
        uint64_t listed = 0;
    };

    // The path of the cgroup whose id is `id`, relative to the mount, found by its handle;
    // false when that cannot tell (a walk must).
    bool path_by_handle(uint64_t id, std::string& path);

    std::string mount_;
    cgroup_names_options options_;
    ebpf::fd mount_fd_;  // opened on the first handle lookup
    uint64_t by_handle_ = 0;
    std::unordered_map<uint64_t, entry> known_;
    std::unordered_map<uint64_t, pending> pending_;
    clock::time_point last_walk_{};     // the last walk that succeeded
    clock::time_point last_attempt_{};  // the last walk started
    uint64_t walks_ = 0;                // walks that succeeded
    uint64_t attempts_ = 0;             // walks started
    uint64_t updates_ = 0;
    size_t alive_ = 0;
};

}  // namespace agent
