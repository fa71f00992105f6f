// A libFuzzer target for the object reader: arbitrary bytes into ebpf::collection_spec::parse,
// and the same bytes into ebpf::btf::spec::parse (and, when they parse, .BTF.ext on top).
//
// Built only with clang, and only on request. On Debian bookworm the fuzzer runtime comes with
// libclang-rt-14-dev:
//   CXX=clang++-14 cmake -S . -B build-fuzz -DEBPF_BUILD_FUZZ=ON -DEBPF_BUILD_BENCH=OFF \
//       -DEBPF_BUILD_AGENT=OFF
//   cmake --build build-fuzz -j1 --target object_fuzz
// Run it seeded with the corpus objects (new inputs land in the first directory, crashes in
// crash-<sha1> files in the working directory):
//   mkdir -p build-fuzz/corpus
//   build-fuzz/tests/object_fuzz -max_total_time=60 build-fuzz/corpus ../shared/corpus/cilium
#include <cstddef>
#include <cstdint>
#include <span>

#include "ebpf/btf/btf.hpp"
#include "ebpf/btf/ext.hpp"
#include "ebpf/spec/collection_spec.hpp"

namespace {

// Reads what a user of a parsed spec reads, so that the sanitizers see any bad pointer.
size_t use(const ebpf::btf::spec& b) {
    size_t sum = 0;
    for (uint32_t id = 1; id < b.count(); ++id) {
        sum += b.name(id).size();
        if (auto size = b.size_of(id)) {
            sum += *size;
        }
        if (auto t = b.skip_modifiers(id)) {
            sum += t->kind();
        }
    }
    sum += b.find("sk_buff").size() + b.find("main", BTF_KIND_FUNC).size();
    return sum;
}

size_t use(const ebpf::collection_spec& c) {
    size_t sum = c.license.size();
    for (const auto& p : c.programs) {
        for (const auto& in : p.insns) {
            sum += in.code;
        }
        sum += p.refs.size() + p.func_info.size() + p.line_info.size() + p.core_relos.size();
    }
    for (const auto& m : c.maps) {
        sum += m.contents.size() + m.name.size();
    }
    for (const auto& v : c.variables) {
        if (auto value = c.variable_value(v.name)) {
            sum += value->size();
        }
    }
    if (c.btf) {
        sum += use(*c.btf);
    }
    return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    volatile size_t sink = 0;
    if (auto c = ebpf::collection_spec::parse(bytes)) {
        sink = sink + use(*c);
    }
    if (auto b = ebpf::btf::spec::parse(bytes)) {
        sink = sink + use(*b);
        if (auto x = ebpf::btf::ext::parse(bytes, *b)) {
            sink = sink + x->sections().size();
        }
    }
    return 0;
}
