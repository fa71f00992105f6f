// `ebpf-agent object load FILE...`: opens and loads BPF objects with the library and prints
// one JSON line per file, for users debugging objects and for conformance runs.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace agent {

struct object_load_options {
    std::vector<std::string> files;
    std::string btf_path;  // target BTF for CO-RE; empty: the running kernel's
    bool no_load = false;  // parse and relocate only
    std::string pin_path = "/sys/fs/bpf";
};

// Returns 0 when every file opened and (unless no_load) every map and program loaded; 1 when
// anything failed; 2 when the target BTF cannot be read.
int object_load(const object_load_options& o, std::ostream& out);

}  // namespace agent
