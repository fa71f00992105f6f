/* tclass_lock's interface with user space: the program has no maps; the agent sets one
 * constant before load. */
#ifndef EBPF_AGENT_TCLASS_LOCK_H
#define EBPF_AGENT_TCLASS_LOCK_H

/* Global variable (.rodata) names the agent sets. */
#define TCLASS_LOCK_VAR_LOCK_IP_TOS "lock_ip_tos" /* __u32: 1 = also lock IP_TOS */

#endif
