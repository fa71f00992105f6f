// Writes net_stat's network list from user space: each prefix into the networks hash (address
// masked to its length) and the lengths in use into network_lens (agent, tests, benchmark).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ebpf/typed_map.hpp"
#include "net_stat.h"

namespace net_stat {

namespace detail {
inline bool starts_v4_mapped(const ebpf::lpm_key& p, uint32_t bits) {
    ebpf::lpm_key mapped;
    mapped.addr[10] = 0xff;
    mapped.addr[11] = 0xff;
    mapped.prefixlen = bits;
    ebpf::lpm_key a = p;
    a.prefixlen = bits;
    return a.masked() == mapped.masked();
}
}  // namespace detail

// Whether the prefix holds v4-mapped addresses (it overlaps ::ffff:0:0/96).
inline bool holds_ipv4(const ebpf::lpm_key& p) {
    return detail::starts_v4_mapped(p, std::min<uint32_t>(p.prefixlen, 96));
}
// Whether the prefix holds addresses that are not v4-mapped.
inline bool holds_ipv6(const ebpf::lpm_key& p) {
    return p.prefixlen < 96 || !detail::starts_v4_mapped(p, 96);
}

// Adds `nets` to the (empty) networks and network_lens maps of a loaded net_stat collection:
// the networks first, then the lengths, so that no lookup sees a length without its networks.
inline ebpf::result<void> add_networks(
    ebpf::map& networks, ebpf::map& lens_map,
    const std::vector<std::pair<ebpf::lpm_key, net_stat_network>>& nets) {
    auto table = ebpf::hash<ebpf::lpm_key, net_stat_network>::view(networks);
    EBPF_TRY(table);
    auto lens_view = ebpf::array<net_stat_prefix_lens>::view(lens_map);
    EBPF_TRY(lens_view);
    std::set<uint32_t, std::greater<>> v6, v4;
    for (const auto& [prefix, net] : nets) {
        if (prefix.prefixlen > 128) {
            return ebpf::error(EINVAL, "add network " + prefix.to_string(),
                               "prefix length over 128");
        }
        EBPF_TRY(table->update(prefix.masked(), net));
        if (holds_ipv6(prefix)) {
            v6.insert(prefix.prefixlen);
        }
        if (holds_ipv4(prefix)) {
            v4.insert(prefix.prefixlen);
        }
    }
    if (v6.size() > NET_STAT_MAX_LENS || v4.size() > NET_STAT_MAX_LENS) {
        return ebpf::error(E2BIG, "add networks",
                           "more than " + std::to_string(NET_STAT_MAX_LENS) +
                               " distinct prefix lengths for one address family");
    }
    net_stat_prefix_lens lens{};
    for (uint32_t len : v6) {
        lens.v6[lens.v6_count++] = uint8_t(len);
    }
    for (uint32_t len : v4) {
        lens.v4[lens.v4_count++] = uint8_t(len);
    }
    return lens_view->update(0, lens);
}

}  // namespace net_stat
