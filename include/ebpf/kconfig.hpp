// Kernel config values for .kconfig externs: read from /proc/config.gz or
// /boot/config-$(uname -r), and encoded the way each extern's BTF type says (layer: objects).
#pragma once

#include <sys/utsname.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/btf/btf.hpp"
#include "ebpf/spec/collection_spec.hpp"

namespace ebpf {

// CONFIG_* name -> value as written in the config ("y", "m", "250", "\"text\"").
using kconfig_values = std::map<std::string, std::string>;

// Parses the text of a kernel config; "# CONFIG_X is not set" lines mean n.
inline kconfig_values parse_kconfig(std::string_view text) {
    kconfig_values out;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        constexpr std::string_view unset_prefix = "# CONFIG_", unset_suffix = " is not set";
        if (line.size() > unset_prefix.size() + unset_suffix.size() &&
            line.substr(0, unset_prefix.size()) == unset_prefix &&
            line.substr(line.size() - unset_suffix.size()) == unset_suffix) {
            out[std::string(line.substr(2, line.size() - 2 - unset_suffix.size()))] = "n";
            continue;
        }
        if (line.substr(0, 7) != "CONFIG_") {
            continue;
        }
        size_t eq = line.find('=');
        if (eq == std::string_view::npos) {
            continue;
        }
        out[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    }
    return out;
}

// Reads the running kernel's config: /proc/config.gz, else /boot/config-$(uname -r).
inline result<kconfig_values> read_kconfig() {
    std::string text;
    if (gzFile gz = gzopen("/proc/config.gz", "rb")) {
        char buf[1 << 15];
        int n;
        while ((n = gzread(gz, buf, sizeof buf)) > 0) {
            text.append(buf, size_t(n));
        }
        const bool bad = n < 0;
        gzclose(gz);
        if (!bad) {
            return parse_kconfig(text);
        }
        text.clear();
    }
    utsname u;
    if (::uname(&u) != 0) {
        return errno_error("uname");
    }
    const std::string path = std::string("/boot/config-") + u.release;
    FILE* f = std::fopen(path.c_str(), "re");
    if (!f) {
        return error(ENOENT, "read the kernel config",
                     "neither /proc/config.gz nor " + path + " can be read");
    }
    char buf[1 << 15];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        text.append(buf, n);
    }
    std::fclose(f);
    return parse_kconfig(text);
}

// Returns LINUX_VERSION_CODE of the running kernel, from uname's release.
inline uint32_t running_kernel_version() {
    utsname u;
    if (::uname(&u) != 0) {
        return 0;
    }
    unsigned a = 0, b = 0, c = 0;
    std::sscanf(u.release, "%u.%u.%u", &a, &b, &c);
    return (a << 16) + (b << 8) + std::min(c, 255u);
}

// Encodes one extern's value as its BTF type says: bool and tristate-like chars (y=1, m=2,
// n=0), integers, and char arrays (strings). Weak externs the config lacks are zero.
inline result<std::vector<std::byte>> kconfig_value(const kconfig_values& values,
                                                    const extern_spec& e, const btf::spec& b) {
    std::vector<std::byte> out(e.size, std::byte{0});
    auto t = b.skip_modifiers(e.btf_type_id);
    if (!t) {
        return std::move(t).error();
    }
    std::string text;
    if (e.name == "LINUX_KERNEL_VERSION") {
        text = std::to_string(running_kernel_version());
    } else if (auto it = values.find(e.name); it != values.end()) {
        text = it->second;
    } else {
        if (e.weak) {
            return out;
        }
        return error(ENOENT, "kconfig", "the kernel config has no " + e.name);
    }
    auto put = [&](uint64_t v) {
        std::memcpy(out.data(), &v, std::min<size_t>(out.size(), 8));
    };
    if (t->kind() == BTF_KIND_ARRAY) {
        if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
            text = text.substr(1, text.size() - 2);
        }
        std::memcpy(out.data(), text.data(),
                    std::min(text.size(), out.size() ? out.size() - 1 : 0));
        return out;
    }
    if (text == "y") {
        put(1);
    } else if (text == "m") {
        put(2);
    } else if (text == "n") {
        put(0);
    } else {
        char* end = nullptr;
        errno = 0;
        const bool neg = !text.empty() && text[0] == '-';
        uint64_t v = neg ? uint64_t(std::strtoll(text.c_str(), &end, 0))
                         : std::strtoull(text.c_str(), &end, 0);
        if (errno != 0 || !end || *end != '\0' || text.empty()) {
            return error(EINVAL, "kconfig", e.name + "=" + text + " is not a number");
        }
        put(v);
    }
    return out;
}

}  // namespace ebpf
