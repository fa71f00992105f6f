// A packet capture for the kernel tests: an AF_PACKET socket on one interface that reads back
// the TCP packets this host sent, with their IP class, flow label, flags and time.
#pragma once

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace ebpf::test {

// One captured TCP packet.
struct seen {
    bool ipv4;
    uint8_t tclass;      // IPv6 traffic class or IPv4 TOS
    uint32_t flowlabel;  // IPv6 only
    uint8_t flags;       // TCP flags
    uint16_t sport, dport;
    size_t payload;
    double ms;  // when it was read, CLOCK_MONOTONIC milliseconds
};

class capture {
  public:
    explicit capture(const char* ifname) {
        fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
        sockaddr_ll sll{};
        sll.sll_family = AF_PACKET;
        sll.sll_protocol = htons(ETH_P_ALL);
        sll.sll_ifindex = int(::if_nametoindex(ifname));
        ok_ = fd_ >= 0 && sll.sll_ifindex > 0 &&
              ::bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof sll) == 0;
    }
    ~capture() { ::close(fd_); }
    capture(const capture&) = delete;
    capture& operator=(const capture&) = delete;
    bool ok() const { return ok_; }

    // Returns the outgoing TCP packets with `port` on either side captured so far.
    std::vector<seen> drain(uint16_t port) {
        std::vector<seen> out;
        unsigned char buf[2048];
        for (;;) {
            sockaddr_ll from{};
            iovec iov{buf, sizeof buf};
            alignas(cmsghdr) char ctl[256];
            msghdr msg{};
            msg.msg_name = &from;
            msg.msg_namelen = sizeof from;
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = ctl;
            msg.msg_controllen = sizeof ctl;
            ssize_t n = ::recvmsg(fd_, &msg, 0);
            if (n <= 0) {
                return out;
            }
            if (from.sll_pkttype != PACKET_OUTGOING || n < 14) {
                continue;
            }
            seen s{};
            // The time of reading: packet timestamps of outgoing TCP carry the stack's own
            // departure times, which are not when the packet left.
            s.ms = now_ms();
            const unsigned char* ip = buf + 14;
            const size_t len = size_t(n) - 14;
            size_t ip_total = 0, ip_hdr = 0;
            if ((ip[0] >> 4) == 6 && len >= 60 && ip[6] == IPPROTO_TCP) {
                s.tclass = uint8_t(((ip[0] & 0x0f) << 4) | (ip[1] >> 4));
                s.flowlabel = (uint32_t(ip[1] & 0x0f) << 16) | (uint32_t(ip[2]) << 8) | ip[3];
                ip_hdr = 40;
                ip_total = 40 + ((size_t(ip[4]) << 8) | ip[5]);
            } else if ((ip[0] >> 4) == 4 && len >= 40 && ip[9] == IPPROTO_TCP) {
                s.ipv4 = true;
                s.tclass = ip[1];
                ip_hdr = size_t(ip[0] & 0x0f) * 4;
                ip_total = (size_t(ip[2]) << 8) | ip[3];
            } else {
                continue;
            }
            const unsigned char* tcp = ip + ip_hdr;
            s.sport = uint16_t((tcp[0] << 8) | tcp[1]);
            s.dport = uint16_t((tcp[2] << 8) | tcp[3]);
            s.flags = tcp[13];
            s.payload = ip_total - ip_hdr - size_t(tcp[12] >> 4) * 4;
            if (s.sport == port || s.dport == port) {
                out.push_back(s);
            }
        }
    }

    // Reads packets as they come for `ms` milliseconds (timing from when each was read) and
    // returns those with `port` on either side.
    std::vector<seen> collect(uint16_t port, int ms) {
        std::vector<seen> out;
        const double end = now_ms() + ms;
        for (double left = ms; left > 0; left = end - now_ms()) {
            pollfd p{fd_, POLLIN, 0};
            ::poll(&p, 1, int(left) + 1);
            for (auto& s : drain(port)) {
                out.push_back(s);
            }
        }
        return out;
    }

    static double now_ms() {
        timespec ts;
        ::clock_gettime(CLOCK_MONOTONIC, &ts);
        return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
    }

  private:
    int fd_ = -1;
    bool ok_ = false;
};

}  // namespace ebpf::test
