// Private networks for the sock_ops kernel tests (tcp_rto, tcp_tos together): a veth whose peers
// never answer (SYN and SYN-ACK retransmits), loopback connections whose peer drops what it
// gets once established (data retransmits), SYN injection, and checks of YaTTL on the wire.
// Everything runs in a child process that has made a network namespace of its own.
#pragma once

#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "capture.hpp"
#include "ebpf/spec/insn.hpp"
#include "test_programs.hpp"

namespace ebpf::test {

// Prints one mismatch as "what: why: got, expected want" and returns 1 (a count of failures).
inline int report(const char* what, const char* why, double got, double want) {
    std::fprintf(stderr, "%s: %s: %g, expected %g\n", what, why, got, want);
    return 1;
}

// The private network: v0 <-> v1, and peers that are static neighbours with no host behind, so
// nothing ever answers. fd00:1::/64 and 192.0.2.0/24 on v0, fd00:3::/64 routed through it.
inline bool make_network() {
    if (::unshare(CLONE_NEWNET) != 0) {
        std::perror("unshare");
        return false;
    }
    return std::system(
               "ip link set lo up && ip link add v0 type veth peer name v1 && "
               "ip link set v0 up && ip link set v1 up && "
               "ip -6 addr add fd00:1::10d:5ae7:0:1/64 dev v0 nodad && "
               "ip addr add 192.0.2.1/24 dev v0 && "
               "ip -6 route add fd00:3::/64 dev v0 && "
               "for a in fd00:1::7777:0:9 fd00:1::5:0:9 fd00:1::6:0:9 fd00:3::9; do "
               "ip -6 neigh add $a lladdr 02:00:00:00:00:09 dev v0 nud permanent || exit 1; done "
               "&& "
               "ip neigh add 192.0.2.9 lladdr 02:00:00:00:00:09 dev v0 nud permanent") == 0;
}

// A private namespace whose lo carries `addresses` (IPv6, /128), with the kernel's flow-label
// defaults stated rather than inherited: labels on (auto_flowlabels 1), a new hash on every
// RTO (txrehash 1).
inline bool make_loopback(const std::vector<std::string>& addresses) {
    if (::unshare(CLONE_NEWNET) != 0) {
        std::perror("unshare");
        return false;
    }
    std::string cmd =
        "ip link set lo up && "
        "sysctl -q -w net.core.txrehash=1 net.ipv6.auto_flowlabels=1 >/dev/null";
    for (const auto& a : addresses) {
        cmd += " && ip -6 addr add " + a + "/128 dev lo nodad";
    }
    return std::system(cmd.c_str()) == 0;
}

// Moves the calling process into the cgroup at `path`; sockets it creates from now on belong
// to that cgroup (and keep it when the process moves again).
inline bool join_cgroup(const std::string& path) {
    FILE* f = std::fopen((path + "/cgroup.procs").c_str(), "we");
    if (!f) {
        std::perror("join cgroup");
        return false;
    }
    const bool ok = std::fprintf(f, "%d\n", ::getpid()) > 0;
    return std::fclose(f) == 0 && ok;
}

// Closes with a reset: nothing lingers in the namespace retransmitting a FIN.
inline void close_now(int fd) {
    if (fd < 0) {
        return;
    }
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd);
}

// cgroup_skb: while the u64 at key 0 of the array `map_fd` is not 0, drops the packet and
// counts it down; then passes. At a peer's ingress it makes the other end retransmit: 1 loses
// the first SYN, a large count makes the peer deaf.
inline std::vector<bpf_insn> drop_program(int map_fd) {
    return at_key0(map_fd, {
                               jmp_imm(BPF_JEQ, r0, 0, 6),
                               ldx_mem(BPF_DW, r1, r0, 0),
                               jmp_imm(BPF_JEQ, r1, 0, 4),
                               alu64_imm(BPF_ADD, r1, -1),
                               stx_mem(BPF_DW, r0, r1, 0),
                               mov64_imm(r0, 0),
                               exit(),
                               mov64_imm(r0, 1),
                               exit(),
                           });
}

inline sockaddr_in6 ipv6_address(const char* addr, uint16_t port) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    ::inet_pton(AF_INET6, addr, &a.sin6_addr);
    return a;
}

struct attempt {
    std::vector<seen> syns;
    uint32_t rto_us = 0;  // TCP_INFO right after connect()
};

// Starts a connect() to a peer that never answers, watches for `wait_ms`, and returns the SYNs.
inline attempt syns_to(capture& cap, int family, const char* addr, uint16_t port, int wait_ms) {
    attempt a;
    sockaddr_storage ss{};
    socklen_t sl;
    if (family == AF_INET) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        ::inet_pton(AF_INET, addr, &s4->sin_addr);
        sl = sizeof *s4;
    } else {
        *reinterpret_cast<sockaddr_in6*>(&ss) = ipv6_address(addr, port);
        sl = sizeof(sockaddr_in6);
    }
    int c = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    ::connect(c, reinterpret_cast<sockaddr*>(&ss), sl);
    tcp_info info{};
    socklen_t il = sizeof info;
    if (::getsockopt(c, SOL_TCP, TCP_INFO, &info, &il) == 0) {
        a.rto_us = info.tcpi_rto;
    }
    const auto packets = cap.collect(port, wait_ms);
    ::close(c);
    for (const auto& p : packets) {
        if ((p.flags & (TH_SYN | TH_ACK)) == TH_SYN) {
            a.syns.push_back(p);
        }
    }
    return a;
}

// YaTTL as the issue defines it: SYN 2 has the class selector + 1 and SYN 1's label; SYN 3 has
// the class back and (rehash mode) a new label. `base` is the DSCP byte (ECN bits 0) that SYN 1
// carries: 0, or the class another program set.
inline int check_yattl(const char* what, const attempt& a, bool yattl, bool fixed, bool ipv4,
                       uint8_t base = 0) {
    if (a.syns.size() < 3) {
        return report(what, "SYNs seen", double(a.syns.size()), 3);
    }
    const seen &s1 = a.syns[0], &s2 = a.syns[1], &s3 = a.syns[2];
    const uint8_t second = yattl ? uint8_t(base | 0x04) : base;
    if ((s1.tclass & 0xfc) != base) {
        return report(what, "class of the first SYN", s1.tclass, base);
    }
    if ((s2.tclass & 0xfc) != second) {
        return report(what, "class of the second SYN", s2.tclass, second);
    }
    if ((s3.tclass & 0xfc) != base) {
        return report(what, "class of the third SYN", s3.tclass, base);
    }
    if (ipv4) {
        return 0;
    }
    if (s1.flowlabel == 0) {
        return report(what, "flow label of the first SYN (must not be 0)", 0, 1);
    }
    if (yattl || fixed) {
        if (s2.flowlabel != s1.flowlabel) {
            return report(what, "flow label of the second SYN", s2.flowlabel, s1.flowlabel);
        }
    } else if (s2.flowlabel == s1.flowlabel) {
        return report(what, "flow label of the second SYN (must change)", s2.flowlabel, -1);
    }
    if (fixed && s3.flowlabel != s1.flowlabel) {
        return report(what, "flow label of the third SYN (fixed)", s3.flowlabel, s1.flowlabel);
    }
    if (!fixed && s3.flowlabel == s2.flowlabel) {
        return report(what, "flow label of the third SYN (must change)", s3.flowlabel, -1);
    }
    return 0;
}

// Sends one IPv6 TCP SYN into v0 from the peer `src` (as if it came over the wire), so a listener
// answers with SYN-ACKs that go nowhere. Returns false if it could not be sent.
inline bool inject_syn(const char* src, const char* dst, uint16_t sport, uint16_t dport) {
    unsigned char f[14 + 40 + 20] = {};
    // v0's MAC (sysfs shows the namespace that mounted it, so ask with an ioctl).
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "v0");
    int q = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const bool have_mac = ::ioctl(q, SIOCGIFHWADDR, &ifr) == 0;
    ::close(q);
    if (!have_mac) {
        std::perror("inject SYN: v0's MAC");
        return false;
    }
    for (int i = 0; i < 6; ++i) {
        f[i] = static_cast<unsigned char>(ifr.ifr_hwaddr.sa_data[i]);  // to v0
    }
    const unsigned char peer_mac[6] = {0x02, 0, 0, 0, 0, 0x09};
    std::memcpy(f + 6, peer_mac, 6);
    f[12] = 0x86;
    f[13] = 0xdd;
    unsigned char* ip = f + 14;
    ip[0] = 0x60;
    ip[5] = 20;  // payload length
    ip[6] = IPPROTO_TCP;
    ip[7] = 64;
    ::inet_pton(AF_INET6, src, ip + 8);
    ::inet_pton(AF_INET6, dst, ip + 24);
    unsigned char* tcp = ip + 40;
    tcp[0] = uint8_t(sport >> 8);
    tcp[1] = uint8_t(sport);
    tcp[2] = uint8_t(dport >> 8);
    tcp[3] = uint8_t(dport);
    tcp[7] = 1;        // seq
    tcp[12] = 5 << 4;  // data offset
    tcp[13] = TH_SYN;
    tcp[14] = 0xff;
    tcp[15] = 0xff;  // window
    uint32_t sum = 0;
    auto add = [&](const unsigned char* p, size_t n) {
        for (size_t i = 0; i + 1 < n; i += 2) {
            sum += uint32_t(p[i] << 8 | p[i + 1]);
        }
    };
    add(ip + 8, 32);  // pseudo-header: addresses, length, next header
    sum += 20 + IPPROTO_TCP;
    add(tcp, 20);
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    const uint16_t csum = uint16_t(~sum);
    tcp[16] = uint8_t(csum >> 8);
    tcp[17] = uint8_t(csum);
    int s = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = int(::if_nametoindex("v1"));
    to.sll_halen = 6;
    std::memcpy(to.sll_addr, f, 6);
    const bool ok = ::sendto(s, f, sizeof f, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
                    ssize_t(sizeof f);
    if (!ok) {
        std::perror("inject SYN");
    }
    ::close(s);
    return ok;
}

// The SYN-ACKs a listener on `dst`:dport sends for one SYN injected from `src`, seen for `ms`.
inline std::vector<seen> synacks_for(capture& cap, const char* src, const char* dst, uint16_t sport,
                                     uint16_t dport, int ms) {
    std::vector<seen> out;
    if (!inject_syn(src, dst, sport, dport)) {
        return out;
    }
    for (const auto& p : cap.collect(dport, ms)) {
        if ((p.flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK)) {
            out.push_back(p);
        }
    }
    return out;
}

}  // namespace ebpf::test
