/* tcp_rto's interface with user space, besides the policy maps (policy.h). */
#ifndef EBPF_AGENT_TCP_RTO_H
#define EBPF_AGENT_TCP_RTO_H

/* tcp_rto_stats (PERCPU_ARRAY of TCP_RTO_STAT_COUNT u64): what the program did and what failed;
 * a failure is counted, never silent. */
#define TCP_RTO_STAT_RTO_INIT 0       /* connections given an initial RTO */
#define TCP_RTO_STAT_YATTL 1          /* SYN retransmits marked with YaTTL */
#define TCP_RTO_STAT_CC_FAILED 2      /* TCP_CONGESTION refused (algorithm not available) */
#define TCP_RTO_STAT_RTO_MIN_FAILED 3 /* TCP_BPF_RTO_MIN refused */
#define TCP_RTO_STAT_LABEL_FAILED 4   /* SO_TXREHASH or IPV6_AUTOFLOWLABEL refused */
#define TCP_RTO_STAT_COUNT 8

#endif
