// The cgroup walk: openat/readdir from the mount down, the inode numbers from readdir (cgroupfs
// gives each directory's kernfs id there, the same number stat() and bpf_skb_cgroup_id() give).
#include "cgroup_names.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace agent {

namespace {

// Calls found(ino, path) for every directory below the one open at `dir_fd` (which it
// closes); `path` is that directory's path ("" for the mount itself). A subdirectory that
// vanishes during the walk is skipped; any other failure ends the walk with its errno, and
// `failed` names the directory.
template <class F>
int walk_dir(int dir_fd, std::string& path, F& found, std::string& failed) {
    DIR* d = ::fdopendir(dir_fd);
    if (!d) {
        int e = errno;
        ::close(dir_fd);
        failed = path.empty() ? "/" : path;
        return e;
    }
    int result = 0;
    for (;;) {
        errno = 0;
        dirent* e = ::readdir(d);
        if (!e) {
            // A directory removed while we read it ends early; that is no error.
            if (errno != 0 && errno != ENOENT) {
                result = errno;
                failed = path.empty() ? "/" : path;
            }
            break;
        }
        const char* name = e->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) {
            continue;
        }
        uint64_t ino = e->d_ino;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st {};
            if (::fstatat(::dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT) {
                    continue;
                }
                result = errno;
                failed = path + "/" + name;
                break;
            }
            if (!S_ISDIR(st.st_mode)) {
                continue;
            }
            ino = st.st_ino;
        } else if (e->d_type != DT_DIR) {
            continue;
        }
        const size_t len = path.size();
        path += '/';
        path += name;
        int child = ::openat(::dirfd(d), name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (child < 0) {
            if (errno != ENOENT) {
                result = errno;
                failed = path;
                break;
            }
            // Removed since readdir listed it: the next walk will not find it.
            path.resize(len);
            continue;
        }
        found(ino, path);
        result = walk_dir(child, path, found, failed);
        path.resize(len);
        if (result != 0) {
            break;
        }
    }
    ::closedir(d);
    return result;
}

}  // namespace

cgroup_names::cgroup_names(std::string mount, cgroup_names_options options)
    : mount_(std::move(mount)), options_(options) {
    while (mount_.size() > 1 && mount_.back() == '/') {
        mount_.pop_back();
    }
}

ebpf::result<void> cgroup_names::walk(clock::time_point now) {
    last_attempt_ = now;
    int root = ::open(mount_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) {
        return ebpf::errno_error("walk the cgroup2 mount " + mount_);
    }
    struct stat st {};
    if (::fstat(root, &st) != 0) {
        auto e = ebpf::errno_error("walk the cgroup2 mount " + mount_, "stat");
        ::close(root);
        return e;
    }
    // Entries found are marked with this walk's number; on success the others are gone. A
    // failed walk leaves the marks of earlier walks in charge (new entries are alive anyway:
    // they were just seen).
    const uint64_t walk = ++attempts_;
    auto found = [&](uint64_t ino, const std::string& path) {
        auto [it, inserted] = known_.try_emplace(ino);
        entry& e = it->second;
        if (inserted || e.path != path) {
            e.path = path;
        }
        e.found_in = walk;
        if (inserted) {
            e.alive = true;
        }
    };
    std::string path;
    found(st.st_ino, "/");
    std::string failed;
    if (int err = walk_dir(root, path, found, failed); err != 0) {
        return ebpf::error(err, "walk the cgroup2 mount " + mount_, "at " + failed);
    }
    ++walks_;
    last_walk_ = now;
    alive_ = 0;
    for (auto& [id, e] : known_) {
        e.alive = e.found_in == walk;
        alive_ += e.alive;
    }
    return {};
}

bool cgroup_names::path_by_handle(uint64_t id, std::string& path) {
    if (!options_.open_by_handle) {
        return false;
    }
    if (mount_fd_.get() < 0) {
        mount_fd_ = ebpf::fd(::open(mount_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (mount_fd_.get() < 0) {
            return false;
        }
    }
    // A kernfs file handle: 8 bytes, the node's id (FILEID_KERNFS).
    struct {
        unsigned int bytes = 8;
        int type = 0xfe;
        uint64_t id;
    } handle{.id = id};
    ebpf::fd dir(::open_by_handle_at(mount_fd_.get(), reinterpret_cast<file_handle*>(&handle),
                                     O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0) {
        // No permission, or no such handles here: stop trying. A gone id (ESTALE) is for a walk
        // to declare.
        if (errno == EPERM || errno == EOPNOTSUPP || errno == EINVAL) {
            options_.open_by_handle = false;
        }
        return false;
    }
    char link[64];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", dir.get());
    char buf[4096];
    const ssize_t n = ::readlink(link, buf, sizeof buf);
    if (n <= 0 || size_t(n) >= sizeof buf) {
        return false;
    }
    const std::string_view full(buf, size_t(n));
    // The mount itself, or a directory below it (not one removed meanwhile: " (deleted)").
    if (full.substr(0, mount_.size()) != mount_ || full.ends_with(" (deleted)")) {
        return false;
    }
    const std::string_view rest = full.substr(mount_.size() == 1 ? 0 : mount_.size());
    if (!rest.empty() && rest[0] != '/') {
        return false;
    }
    path = rest.empty() ? "/" : std::string(rest);
    return true;
}

std::vector<uint64_t> cgroup_names::update(std::span<const uint64_t> ids, std::string& walk_error,
                                           clock::time_point now) {
    ++updates_;
    walk_error.clear();
    // Failed walks count for the rate limit too: a broken mount is not walked on every scrape.
    const bool due = attempts_ == 0 || now - last_attempt_ >= options_.min_rewalk;
    const bool stale = walks_ == 0 || now - last_walk_ >= options_.max_age;
    // A walk this update makes anyway names every id: no handle lookups before it (the first
    // scrape of 10,000 cgroups would pay ~70 ms of them, then the walk).
    const bool walk_certain = due && stale;
    bool unknown = false;
    for (uint64_t id : ids) {
        if (auto it = known_.find(id); it != known_.end()) {
            it->second.listed = updates_;
            continue;
        }
        if (std::string path; !walk_certain && !pending_.count(id) && path_by_handle(id, path)) {
            // Alive now; the next walk confirms it like any other (found_in: the last one).
            known_.emplace(id, entry{std::move(path), true, attempts_, updates_});
            ++alive_;
            ++by_handle_;
            continue;
        }
        auto [it, inserted] = pending_.try_emplace(id, pending{walks_, updates_});
        it->second.listed = updates_;
        // Not looked for yet: only a walk can say whether it lives.
        unknown |= it->second.walks_before == walks_;
    }
    if (due && (stale || unknown)) {
        if (auto r = walk(now); !r) {
            walk_error = r.error().message();
        }
    }

    std::vector<uint64_t> gone;
    for (uint64_t id : ids) {
        if (auto it = known_.find(id); it != known_.end()) {
            it->second.listed = updates_;  // a pending id the walk just found
            if (!it->second.alive) {
                gone.push_back(id);
            }
            continue;
        }
        if (auto it = pending_.find(id); it != pending_.end() && it->second.walks_before < walks_) {
            gone.push_back(id);
        }
    }
    std::erase_if(known_,
                  [&](const auto& kv) { return !kv.second.alive && kv.second.listed != updates_; });
    std::erase_if(pending_, [&](const auto& kv) {
        return kv.second.listed != updates_ || known_.count(kv.first) != 0;
    });
    return gone;
}

cgroup_path cgroup_names::lookup(uint64_t id) const {
    if (auto it = known_.find(id); it != known_.end()) {
        return {&it->second.path, false};
    }
    if (auto it = pending_.find(id); it != pending_.end()) {
        return {nullptr, it->second.walks_before == walks_};
    }
    return {};
}

}  // namespace agent
