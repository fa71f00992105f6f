// Attaching programs to cgroups: a bpf_link first, the legacy multi attach where links are
// missing; atomic replace, detach, pin, and queries (layer: objects).
#pragma once

#include <fcntl.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/program.hpp"
#include "ebpf/sys/bpf.hpp"
#include "ebpf/sys/fd.hpp"

namespace ebpf {

// Returns where the cgroup v2 hierarchy is mounted, read from /proc/mounts.
inline result<std::string> cgroup2_mount() {
    FILE* f = std::fopen("/proc/mounts", "re");
    if (!f) {
        return errno_error("open /proc/mounts");
    }
    char dev[256], dir[4096], type[64];
    std::string found;
    while (std::fscanf(f, "%255s %4095s %63s %*[^\n]", dev, dir, type) == 3) {
        if (std::strcmp(type, "cgroup2") == 0) {
            found = dir;
            break;
        }
    }
    std::fclose(f);
    if (found.empty()) {
        return error(ENOENT, "find the cgroup2 mount", "no cgroup2 file system in /proc/mounts");
    }
    return found;
}

// Opens a cgroup directory for attaching and querying.
inline result<fd> open_cgroup(const std::string& path) {
    int raw = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (raw < 0) {
        return errno_error("open cgroup " + path);
    }
    return fd::adopt(raw);
}

// How to attach: a link where the kernel has cgroup links (5.7+), else the legacy way.
enum class attach_mode { automatic, link, legacy };

// A program attached to a cgroup with multi semantics (never exclusive: an exclusive attach on
// a parent would stop every child cgroup from attaching its own programs).
//
// A link detaches when its last fd closes unless it is pinned. A legacy attachment outlives its
// process in the kernel; this object detaches it on destruction unless release()d, so both
// kinds behave the same for the caller.
class cgroup_link {
  public:
    cgroup_link() = default;
    cgroup_link(cgroup_link&& o) noexcept = default;
    cgroup_link& operator=(cgroup_link&& o) noexcept {
        if (this != &o) {
            drop();
            link_ = std::move(o.link_);
            cgroup_ = std::move(o.cgroup_);
            prog_ = std::move(o.prog_);
            attach_type_ = o.attach_type_;
        }
        return *this;
    }
    ~cgroup_link() { drop(); }

    // Attaches `prog` to the cgroup open at `cgroup_fd` at `attach_type` (e.g.
    // BPF_CGROUP_SOCK_OPS). automatic: LINK_CREATE (flags 0: cgroup links are always multi),
    // and where the kernel has no cgroup links, PROG_ATTACH with BPF_F_ALLOW_MULTI.
    static result<cgroup_link> attach(int cgroup_fd, const program& prog, uint32_t attach_type,
                                      attach_mode mode = attach_mode::automatic) {
        cgroup_link l;
        l.attach_type_ = attach_type;
        auto ctx = [&] {
            return "attach program " + prog.name() + " to cgroup (attach type " +
                   std::to_string(attach_type) + ")";
        };
        auto p = fd::duplicate(prog.fd());
        if (!p) [[unlikely]] {
            return std::move(p).error().context(ctx());
        }
        l.prog_ = std::move(*p);
        std::string link_failure;
        if (mode != attach_mode::legacy) {
            sys::link_create_attr attr{};
            attr.prog_fd = prog.fd();
            attr.target_fd = cgroup_fd;
            attr.attach_type = attach_type;
            attr.flags = 0;
            auto f = sys::link_create(attr);
            if (f) [[likely]] {
                l.link_ = std::move(*f);
                return l;
            }
            const int e = f.error().code();
            const bool no_links = e == EINVAL || e == EOPNOTSUPP || e == 524 /* ENOTSUPP */;
            if (mode == attach_mode::link || !no_links) {
                return std::move(f).error().context(ctx());
            }
            link_failure = f.error().message();
        }
        auto c = fd::duplicate(cgroup_fd);
        if (!c) [[unlikely]] {
            return std::move(c).error().context(ctx());
        }
        l.cgroup_ = std::move(*c);
        sys::prog_attach_attr attr{};
        attr.target_fd = cgroup_fd;
        attr.attach_bpf_fd = prog.fd();
        attr.attach_type = attach_type;
        attr.attach_flags = BPF_F_ALLOW_MULTI;
        auto r = sys::prog_attach(attr);
        if (!r) [[unlikely]] {
            auto e = std::move(r).error();
            if (!link_failure.empty()) {
                e.context("after " + link_failure);
            }
            return std::move(e).context(ctx());
        }
        return l;
    }

    // Opens a pinned cgroup link.
    static result<cgroup_link> from_pin(const std::string& path) {
        auto f = sys::obj_get(path.c_str());
        if (!f) [[unlikely]] {
            return std::move(f).error();
        }
        bpf_link_info info{};
        uint32_t len = sizeof info;
        EBPF_TRY_CTX(sys::obj_get_info_by_fd(f->get(), &info, len), "link pinned at " + path);
        if (info.type != BPF_LINK_TYPE_CGROUP) {
            return error(EINVAL, "open link pinned at " + path,
                         "link type " + std::to_string(info.type) + " is not a cgroup link");
        }
        auto p = sys::prog_get_fd_by_id(info.prog_id);
        if (!p) [[unlikely]] {
            return std::move(p).error().context("program of link pinned at " + path);
        }
        cgroup_link l;
        l.link_ = std::move(*f);
        l.prog_ = std::move(*p);
        l.attach_type_ = info.cgroup.attach_type;
        return l;
    }

    // True when this attachment is a bpf_link (false: legacy PROG_ATTACH).
    bool is_link() const { return link_.valid(); }
    bool attached() const { return link_.valid() || cgroup_.valid(); }
    uint32_t attach_type() const { return attach_type_; }
    // Returns the link's fd (-1 for a legacy attachment).
    int link_fd() const { return link_.get(); }

    // Replaces the program atomically: no packet or socket sees neither program. Fails with
    // ENOENT/EPERM-style errors if someone else replaced it meanwhile.
    result<void> update(const program& next) {
        auto p = fd::duplicate(next.fd());
        if (!p) [[unlikely]] {
            return std::move(p).error().context("replace with program " + next.name());
        }
        if (link_.valid()) {
            sys::link_update_attr attr{};
            attr.link_fd = link_.get();
            attr.new_prog_fd = next.fd();
            attr.flags = BPF_F_REPLACE;
            attr.old_prog_fd = prog_.get();
            EBPF_TRY_CTX(sys::link_update(attr), "replace with program " + next.name());
        } else if (cgroup_.valid()) {
            sys::prog_attach_attr attr{};
            attr.target_fd = cgroup_.get();
            attr.attach_bpf_fd = next.fd();
            attr.attach_type = attach_type_;
            attr.attach_flags = BPF_F_ALLOW_MULTI | BPF_F_REPLACE;
            attr.replace_bpf_fd = prog_.get();
            EBPF_TRY_CTX(sys::prog_attach(attr), "replace with program " + next.name());
        } else {
            return error(EBADF, "replace with program " + next.name(), "not attached");
        }
        prog_ = std::move(*p);
        return {};
    }

    // Detaches now (a pinned link too: its pin stays but is defunct until removed).
    result<void> detach() {
        if (link_.valid()) {
            EBPF_TRY_CTX(sys::link_detach(link_.get()), "detach");
            link_.reset();
        } else if (cgroup_.valid()) {
            sys::prog_attach_attr attr{};
            attr.target_fd = cgroup_.get();
            attr.attach_bpf_fd = prog_.get();
            attr.attach_type = attach_type_;
            EBPF_TRY_CTX(sys::prog_detach(attr), "detach");
            cgroup_.reset();
        }
        prog_.reset();
        return {};
    }

    // Pins the link at `path`, so the attachment survives this process (links only).
    result<void> pin(const std::string& path) const {
        if (!link_.valid()) {
            return error(EOPNOTSUPP, "pin " + path, "a legacy cgroup attachment cannot be pinned");
        }
        return sys::obj_pin(path.c_str(), link_.get());
    }

    // Forgets the attachment without detaching it: a legacy attachment stays in the kernel
    // (until detached or its cgroup is removed); a link stays only if pinned.
    void release() {
        link_.reset();
        cgroup_.reset();
        prog_.reset();
    }

  private:
    void drop() {
        if (cgroup_.valid()) {
            (void)detach();
        }
    }

    fd link_;
    fd cgroup_;  // legacy only: where to replace and detach
    fd prog_;    // the attached program, for compare-and-swap replace and legacy detach
    uint32_t attach_type_ = 0;
};

// One program attached directly to a cgroup.
struct cgroup_program {
    uint32_t prog_id = 0;
    uint32_t attach_flags = 0;  // per program (5.19+): BPF_F_ALLOW_MULTI etc.; 0 for links
    uint32_t link_id = 0;       // the link that holds it, where the kernel reports it (6.6+
                                // for mprog hooks; 6.18 leaves it 0 for cgroups)
};

// What is attached to a cgroup at one attach type.
struct cgroup_query {
    uint32_t attach_flags = 0;  // the cgroup's mode for this type: 0, OVERRIDE or MULTI
    uint64_t revision = 0;      // 6.6+
    std::vector<cgroup_program> programs;
};

// Lists the programs attached to the cgroup at `attach_type` (BPF_PROG_QUERY); with
// `effective`, the programs that run there including inherited ones.
inline result<cgroup_query> query_cgroup(int cgroup_fd, uint32_t attach_type,
                                         bool effective = false) {
    auto ctx = [&] {
        return "query cgroup programs (attach type " + std::to_string(attach_type) + ")";
    };
    for (uint32_t cap = 16;; cap *= 4) {
        std::vector<uint32_t> ids(cap), flags(cap), links(cap), link_flags(cap);
        sys::prog_query_attr attr{};
        attr.target_fd = cgroup_fd;
        attr.attach_type = attach_type;
        attr.query_flags = effective ? BPF_F_QUERY_EFFECTIVE : 0;
        attr.prog_ids = sys::ptr(ids.data());
        attr.prog_cnt = cap;
        if (!effective) {
            attr.prog_attach_flags = sys::ptr(flags.data());
            attr.link_ids = sys::ptr(links.data());
            attr.link_attach_flags = sys::ptr(link_flags.data());
        }
        auto r = sys::prog_query(attr);
        if (!r && r.error().code() == ENOSPC && cap < (1u << 20)) {
            continue;
        }
        EBPF_TRY_CTX(std::move(r), ctx());
        cgroup_query out;
        out.attach_flags = attr.attach_flags;
        out.revision = attr.revision;
        for (uint32_t i = 0; i < attr.prog_cnt && i < cap; ++i) {
            out.programs.push_back({ids[i], flags[i], links[i]});
        }
        return out;
    }
}

}  // namespace ebpf
