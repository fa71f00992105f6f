// The whole library in one include: error model, bpf(2) layer, maps, programs, cgroups,
// probes, and the object loader.
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
#include "ebpf/collection.hpp"
#include "ebpf/kconfig.hpp"
#include "ebpf/kernel_btf.hpp"
#include "ebpf/spec/collection_spec.hpp"
#include "ebpf/spec/type_names.hpp"
