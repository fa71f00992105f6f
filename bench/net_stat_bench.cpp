// Per-packet cost of net_stat_tx and net_stat_dc_tx over an empty cgroup_skb program (the
// floor), with BPF_PROG_TEST_RUN. Needs root.
//
// Each round runs the floor, net_stat_tx and net_stat_dc_tx back to back, `repeat` times each
// on the same 1 KB IPv6 TCP packet, in an order that rotates from round to round; the kernel
// reports the average time per run. The result is the median over the rounds of each
// program's time minus the floor's time in the same round, checked against the targets
// (net_stat +50 ns, net_stat_dc +100 ns). net_stat_dc_tx looks the destination up among a few
// hundred prefixes (/32 to /64 and some IPv4), as an operator's network list would have.
//
//   net_stat_bench [rounds] [repeat]      (default 21 rounds of 1,000,000 runs)

#include <arpa/inet.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "../bpf/include/net_stat.h"
#include "../bpf/include/net_stat_networks.hpp"
#include "ebpf/ebpf.hpp"

namespace {

// The floor: a cgroup_skb program that only returns 1.
ebpf::result<ebpf::program> load_floor() {
    static const bpf_insn insns[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 1},
        {.code = BPF_JMP | BPF_EXIT, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},
    };
    return ebpf::program::load({.type = BPF_PROG_TYPE_CGROUP_SKB,
                                .insns = insns,
                                .name = "floor",
                                .expected_attach_type = BPF_CGROUP_INET_EGRESS});
}

// A few hundred networks: IPv6 /32, /48, /56 and /64 prefixes and IPv4 /16 to /24.
ebpf::result<void> fill_networks(ebpf::collection& c) {
    std::vector<std::pair<ebpf::lpm_key, net_stat_network>> nets;
    uint32_t dc = 1;
    auto add = [&](const std::string& prefix, uint32_t type) -> ebpf::result<void> {
        auto k = ebpf::lpm_key::parse(prefix);
        if (!k) {
            return std::move(k).error();
        }
        nets.emplace_back(*k, net_stat_network{1 + dc++ % 8, type});
        return {};
    };
    char buf[64];
    for (int i = 0; i < 16; ++i) {
        std::snprintf(buf, sizeof buf, "fd00:%x::/32", i);
        EBPF_TRY(add(buf, 1));
        for (int j = 0; j < 4; ++j) {
            std::snprintf(buf, sizeof buf, "fd00:%x:%x::/48", i, j * 0x100 + 1);
            EBPF_TRY(add(buf, 2));
            for (int k = 0; k < 4; ++k) {
                std::snprintf(buf, sizeof buf, "fd00:%x:%x:%x00::/56", i, j * 0x100 + 1, k + 1);
                EBPF_TRY(add(buf, 1));
                std::snprintf(buf, sizeof buf, "fd00:%x:%x:%x01::/64", i, j * 0x100 + 1, k + 1);
                EBPF_TRY(add(buf, 2));
            }
        }
    }
    for (int i = 0; i < 32; ++i) {
        std::snprintf(buf, sizeof buf, "10.%d.0.0/16", i);
        EBPF_TRY(add(buf, 1));
        std::snprintf(buf, sizeof buf, "10.%d.%d.0/24", i, i + 1);
        EBPF_TRY(add(buf, 2));
    }
    return net_stat::add_networks(*c.map(NET_STAT_MAP_NETWORKS), *c.map(NET_STAT_MAP_NETWORK_LENS),
                                  nets);
}

// An Ethernet frame with a 1 KB IPv6 TCP packet to `dst`.
std::vector<std::byte> packet(const char* dst) {
    std::vector<std::byte> f(14 + 1000);
    f[12] = std::byte{0x86};
    f[13] = std::byte{0xdd};
    uint8_t* ip = reinterpret_cast<uint8_t*>(f.data() + 14);
    ip[0] = 0x60;
    ip[4] = uint8_t((1000 - 40) >> 8);
    ip[5] = uint8_t(1000 - 40);
    ip[6] = 6;
    ip[7] = 64;
    ::inet_pton(AF_INET6, "fd00:3:201:301::1", ip + 8);
    ::inet_pton(AF_INET6, dst, ip + 24);
    ip[40 + 12] = 5 << 4;  // TCP data offset
    return f;
}

int64_t median(std::vector<int64_t> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int fail(const ebpf::error& e) {
    std::fprintf(stderr, "net_stat_bench: %s\n", e.full_message().c_str());
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 21;
    const uint32_t repeat = argc > 2 ? uint32_t(std::atol(argv[2])) : 1000000;

    auto spec = ebpf::collection_spec::open(EBPF_BENCH_NET_STAT_OBJECT);
    if (!spec) {
        return fail(spec.error());
    }
    auto coll = ebpf::collection::load(*spec);
    if (!coll) {
        return fail(coll.error());
    }
    if (auto r = fill_networks(*coll); !r) {
        return fail(r.error());
    }
    auto floor = load_floor();
    if (!floor) {
        return fail(floor.error());
    }
    // The peer is in a /64 of the list (the longest length: one probe), or in no network
    // (every length is probed; reported, without a target).
    const auto in_list = packet("fd00:7:301:201::2");
    const auto unknown = packet("fd00:ffff::2");
    struct bench_case {
        const char* name;
        const ebpf::program* prog;
        const std::vector<std::byte>* data;
        int64_t target;  // ns over the floor; 0: none
    };
    const bench_case cases[] = {
        {"floor", &*floor, &in_list, 0},
        {"net_stat_tx", coll->program("net_stat_tx"), &in_list, 50},
        {"net_stat_dc_tx", coll->program("net_stat_dc_tx"), &in_list, 100},
        {"net_stat_dc_tx, unknown peer", coll->program("net_stat_dc_tx"), &unknown, 0},
    };
    constexpr int n = std::size(cases);

    std::vector<int64_t> floors, over[n];
    for (int round = 0; round < rounds; ++round) {
        int64_t ns[n] = {};
        for (int i = 0; i < n; ++i) {
            const int which = (round + i) % n;
            auto r = cases[which].prog->test_run({.data_in = *cases[which].data, .repeat = repeat});
            if (!r) {
                return fail(r.error());
            }
            if (r->retval != 1) {
                std::fprintf(stderr, "net_stat_bench: %s returned %u\n", cases[which].name,
                             r->retval);
                return 2;
            }
            ns[which] = r->duration_ns;
        }
        floors.push_back(ns[0]);
        for (int i = 1; i < n; ++i) {
            over[i].push_back(ns[i] - ns[0]);
        }
    }

    std::printf("net_stat per packet, BPF_PROG_TEST_RUN, %d rounds of %u runs, 1 KB IPv6 packet\n",
                rounds, repeat);
    std::printf("  %-30s %5lld ns\n", "floor (empty program)", (long long)median(floors));
    bool ok = true;
    for (int i = 1; i < n; ++i) {
        const int64_t m = median(over[i]);
        if (cases[i].target == 0) {
            std::printf("  %-30s %+5lld ns over the floor\n", cases[i].name, (long long)m);
            continue;
        }
        const bool pass = m <= cases[i].target;
        ok = ok && pass;
        std::printf("  %-30s %+5lld ns over the floor (target +%lld)  %s\n", cases[i].name,
                    (long long)m, (long long)cases[i].target, pass ? "PASS" : "FAIL");
    }
    return ok ? 0 : 1;
}
