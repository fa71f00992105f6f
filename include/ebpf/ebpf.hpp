// The whole library in one include: error model, bpf(2) layer, maps, programs, cgroups, probes.
#pragma once

#include "ebpf/base/result.hpp"
#include "ebpf/cgroup.hpp"
#include "ebpf/features.hpp"
#include "ebpf/map.hpp"
#include "ebpf/program.hpp"
#include "ebpf/spec/insn.hpp"
#include "ebpf/sys/attr.hpp"
#include "ebpf/sys/bpf.hpp"
#include "ebpf/sys/fd.hpp"
#include "ebpf/sys/syscall.hpp"
#include "ebpf/typed_map.hpp"
