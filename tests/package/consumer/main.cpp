// A user's program: it only needs the headers and the imported target.
#include <ebpf/ebpf.hpp>

#include <cstdio>

int main() {
    auto key = ebpf::lpm_key::parse("10.0.0.0/8");
    if (!key || key->prefixlen != 104) {
        std::fprintf(stderr, "unexpected prefix key\n");
        return 1;
    }
    return 0;
}
