// The running kernel's BTF (vmlinux, and modules' split BTF), read once per process and shared
// by every object; and BTF read from a file a caller names (layer: objects).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/btf/btf.hpp"
#include "ebpf/core/candidate_cache.hpp"
#include "ebpf/elf/elf_file.hpp"

namespace ebpf {

namespace detail {
// Reads a whole file, into a buffer of the size fstat reports when it reports one.
inline result<std::vector<std::byte>> read_file(const std::string& path) {
    int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (raw < 0) {
        return errno_error("open " + path);
    }
    struct stat st;
    std::vector<std::byte> out;
    if (::fstat(raw, &st) == 0 && st.st_size > 0) {
        out.resize(size_t(st.st_size));
    }
    size_t have = 0;
    for (;;) {
        if (have == out.size()) {
            out.resize(out.size() < 65536 ? 65536 : out.size() * 2);
        }
        ssize_t n = ::read(raw, out.data() + have, out.size() - have);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;
            ::close(raw);
            return error(e, "read " + path);
        }
        if (n == 0) {
            break;
        }
        have += size_t(n);
    }
    ::close(raw);
    out.resize(have);
    return out;
}

// Maps a file read-only (sysfs BTF can be mapped since 6.16); nullptr where it cannot be.
inline std::shared_ptr<const void> map_file(const std::string& path, size_t& size) {
    int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (raw < 0) {
        return nullptr;
    }
    struct stat st;
    void* p = MAP_FAILED;
    if (::fstat(raw, &st) == 0 && st.st_size > 0) {
        size = size_t(st.st_size);
        p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, raw, 0);
    }
    ::close(raw);
    if (p == MAP_FAILED) {
        return nullptr;
    }
    const size_t len = size;
    return std::shared_ptr<const void>(
        p, [len](const void* q) { ::munmap(const_cast<void*>(q), len); });
}
// Parses a raw BTF file: mapped where the kernel allows it (no copy), else read.
inline result<btf::spec> parse_raw_btf_file(const std::string& path,
                                            const btf::spec* base = nullptr) {
    size_t size = 0;
    if (auto mapped = map_file(path, size)) {
        std::span<const std::byte> bytes(static_cast<const std::byte*>(mapped.get()), size);
        auto s = btf::spec::parse_shared(std::move(mapped), bytes, base);
        if (!s) {
            return std::move(s).error().context(path);
        }
        return s;
    }
    auto bytes = read_file(path);
    if (!bytes) {
        return std::move(bytes).error();
    }
    auto s = btf::spec::parse(std::move(*bytes), base);
    if (!s) {
        return std::move(s).error().context(path);
    }
    return s;
}
}  // namespace detail

// Returns the kernel's own BTF (/sys/kernel/btf/vmlinux), parsed on first use (5.4+ with
// CONFIG_DEBUG_INFO_BTF). The spec lives until the process exits.
inline result<const btf::spec*> kernel_btf() {
    static const result<std::unique_ptr<btf::spec>> cached =
        []() -> result<std::unique_ptr<btf::spec>> {
        auto s = detail::parse_raw_btf_file("/sys/kernel/btf/vmlinux");
        if (!s) {
            return std::move(s).error().context("kernel BTF");
        }
        return std::make_unique<btf::spec>(std::move(*s));
    }();
    if (!cached) {
        return cached.error();
    }
    return static_cast<const btf::spec*>(cached->get());
}

// Returns the CO-RE candidate index over the kernel's BTF, shared by every load in the process
// (built on its first question).
inline result<const core::candidate_cache*> kernel_candidates() {
    auto k = kernel_btf();
    if (!k) {
        return std::move(k).error();
    }
    static const core::candidate_cache cache(**k);
    return &cache;
}

// Returns the split BTF of a kernel module (/sys/kernel/btf/NAME) on top of vmlinux's,
// parsed on first use; modules whose BTF is broken give an error for that module only.
inline result<const btf::spec*> module_btf(const std::string& name) {
    static std::mutex mu;
    static std::map<std::string, std::unique_ptr<btf::spec>> cache;
    auto base = kernel_btf();
    if (!base) {
        return base;
    }
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(name); it != cache.end()) {
        return static_cast<const btf::spec*>(it->second.get());
    }
    auto s = detail::parse_raw_btf_file("/sys/kernel/btf/" + name, *base);
    if (!s) {
        return std::move(s).error().context("module BTF");
    }
    auto& slot = cache[name];
    slot = std::make_unique<btf::spec>(std::move(*s));
    return static_cast<const btf::spec*>(slot.get());
}

// Returns the names of the kernel modules that have BTF (/sys/kernel/btf/*, but vmlinux).
inline std::vector<std::string> kernel_modules_with_btf() {
    std::vector<std::string> out;
    DIR* d = ::opendir("/sys/kernel/btf");
    if (!d) {
        return out;
    }
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name != "." && name != ".." && name != "vmlinux") {
            out.push_back(std::move(name));
        }
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

// Reads BTF from a file: raw BTF (as in /sys/kernel/btf) or an ELF object's .BTF section.
inline result<btf::spec> btf_from_file(const std::string& path) {
    auto bytes = detail::read_file(path);
    if (!bytes) {
        return std::move(bytes).error();
    }
    if (bytes->size() >= 4 && std::memcmp(bytes->data(),
                                          "\x7f"
                                          "ELF",
                                          4) == 0) {
        auto f = elf::file::parse(*bytes);
        if (!f) {
            return std::move(f).error().context(path);
        }
        const elf::section* s = f->find_section(".BTF");
        if (!s) {
            return error(ENOENT, "read BTF from " + path, "the object has no .BTF section");
        }
        auto spec = btf::spec::parse(s->data);
        if (!spec) {
            return std::move(spec).error().context(path);
        }
        return spec;
    }
    auto spec = btf::spec::parse(std::move(*bytes));
    if (!spec) {
        return std::move(spec).error().context(path);
    }
    return spec;
}

}  // namespace ebpf
