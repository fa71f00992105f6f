// The running kernel's BTF (vmlinux, and modules' split BTF), read once per process and shared
// by every object; and BTF read from a file a caller names (layer: objects).
#pragma once

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/btf/btf.hpp"
#include "ebpf/elf/elf_file.hpp"

namespace ebpf {

namespace detail {
inline result<std::vector<std::byte>> read_file(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "rbe");
    if (!f) {
        return errno_error("open " + path);
    }
    std::vector<std::byte> out;
    std::byte buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        out.insert(out.end(), buf, buf + n);
    }
    const bool failed = std::ferror(f);
    std::fclose(f);
    if (failed) {
        return error(EIO, "read " + path);
    }
    return out;
}
}  // namespace detail

// Returns the kernel's own BTF (/sys/kernel/btf/vmlinux), parsed on first use (5.4+ with
// CONFIG_DEBUG_INFO_BTF). The spec lives until the process exits.
inline result<const btf::spec*> kernel_btf() {
    static const result<std::unique_ptr<btf::spec>> cached =
        []() -> result<std::unique_ptr<btf::spec>> {
        const std::string path = "/sys/kernel/btf/vmlinux";
        auto bytes = detail::read_file(path);
        if (!bytes) {
            return std::move(bytes).error().context("kernel BTF");
        }
        auto s = btf::spec::parse(std::move(*bytes));
        if (!s) {
            return std::move(s).error().context(path);
        }
        return std::make_unique<btf::spec>(std::move(*s));
    }();
    if (!cached) {
        return cached.error();
    }
    return static_cast<const btf::spec*>(cached->get());
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
    const std::string path = "/sys/kernel/btf/" + name;
    auto bytes = detail::read_file(path);
    if (!bytes) {
        return std::move(bytes).error().context("module BTF");
    }
    auto s = btf::spec::parse(std::move(*bytes), *base);
    if (!s) {
        return std::move(s).error().context(path);
    }
    auto& slot = cache[name];
    slot = std::make_unique<btf::spec>(std::move(*s));
    return static_cast<const btf::spec*>(slot.get());
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
