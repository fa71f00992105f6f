// Conformance against third-party objects (../shared/corpus/cilium, built by cilium/ebpf):
// every object libbpf 1.1 opens we open; every program it loads we load; and we load more,
// where libbpf fails only because it is old. MANIFEST.tsv records what libbpf did.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ebpf/collection.hpp"
#include "ebpf/kernel_btf.hpp"
#include "kernel_fixture.hpp"

namespace ebpf {
namespace {

const std::string corpus = EBPF_TEST_CORPUS;

struct manifest_row {
    std::string file;  // "cilium/x.elf"
    bool libbpf_opens = false;
    std::string libbpf_loads;  // y, n or partial(k/n)
    size_t program_count = 0;
};

std::vector<manifest_row> read_manifest() {
    std::vector<manifest_row> rows;
    std::ifstream in(corpus + "/MANIFEST.tsv");
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
        std::vector<std::string> cols;
        std::stringstream ss(line);
        std::string col;
        while (std::getline(ss, col, '\t')) {
            cols.push_back(col);
        }
        if (cols.size() < 9) {
            continue;
        }
        rows.push_back({cols[0], cols[6] == "y", cols[7], size_t(std::stoul(cols[8]))});
    }
    return rows;
}

// How many programs libbpf loaded, from "y", "n" or "partial(k/n)".
size_t libbpf_loaded(const manifest_row& r) {
    if (r.libbpf_loads == "y") {
        return r.program_count;
    }
    unsigned k = 0, n = 0;
    if (std::sscanf(r.libbpf_loads.c_str(), "partial(%u/%u)", &k, &n) == 2) {
        return k;
    }
    return 0;
}

// What we expect of each object beyond libbpf: which programs must fail, and why.
struct expectation {
    const char* target_btf = nullptr;  // CO-RE target in the corpus; nullptr: the kernel
    std::map<std::string, std::string> must_fail;  // program -> words of the error
    bool run_returns_zero = false;                 // every loaded program returns 0 under test_run
    std::map<std::string, uint32_t> set_u32;       // global variables set before load
    std::map<std::string, uint32_t> returns = {};  // exceptions to run_returns_zero
};

const std::map<std::string, expectation>& expectations() {
    static const std::map<std::string, expectation> e = {
        // Relocated against its own BTF: each program returns 0 when every relocation was
        // right; the err_* programs are meant to fail on ambiguous candidates.
        // type_ids, from line 70 on, asserts that a type's local and target ids differ: true
        // for cilium, which re-encodes the BTF it loads, not with libbpf's semantics (which we
        // follow), where an object relocated against its own BTF gets the same ids. Every
        // check before line 70 passes.
        {"cilium/btf_testdata_relocs-el.elf",
         {"btf_testdata_relocs-el.elf",
          {{"err_ambiguous", "ambiguous"}, {"err_ambiguous_flavour", "ambiguous"}},
          true,
          {},
          {{"type_ids", 70}}}},
        {"cilium/btf_testdata_relocs_read-el.elf",
         {"btf_testdata_relocs_read_tgt-el.elf", {}, true, {}}},
        {"cilium/btf_testdata_relocs_enum-el.elf",
         {"btf_testdata_relocs_enum-el.elf", {}, true, {}}},
        // A freplace program needs the program it replaces, given by user space.
        {"cilium/testdata_freplace-el.elf",
         {nullptr,
          {{"replacement", "freplace programs need the program they replace"}},
          false,
          {}}},
        // Deliberately missing kfuncs (or bpf_testmod, which is not loaded here).
        {"cilium/testdata_invalid-kfunc-el.elf",
         {nullptr, {{"call_kfunc", "kfunc not found in the kernel's BTF"}}, false, {}}},
        {"cilium/testdata_kfunc-kmod-el.elf",
         {nullptr, {{"call_kfunc", "kfunc not found in the kernel's BTF"}}, false, {}}},
        {"cilium/testdata_struct_ops-el.elf",
         {nullptr, {{"test_1", "struct_ops programs load with their struct_ops map"}}, false, {}}},
        // The sk_lookup program returns a constant that user space must set to 0 or 1 first.
        {"cilium/testdata_constants-el.elf", {nullptr, {}, false, {{"ret", 1}}}},
    };
    return e;
}

class CorpusTest : public test::KernelTest {};

TEST_F(CorpusTest, WeOpenAndLoadAtLeastWhatLibbpfDoes) {
    auto rows = read_manifest();
    ASSERT_GE(rows.size(), 20u) << "the corpus manifest at " << corpus << " is missing";
    test::test_bpffs fs;
    std::string summary;
    for (const auto& row : rows) {
        SCOPED_TRACE(row.file);
        const std::string path = corpus + "/" + row.file;
        auto spec = collection_spec::open(path);
        if (row.libbpf_opens) {
            ASSERT_TRUE(spec) << spec.error().message();
        }
        if (!spec) {
            continue;
        }
        EXPECT_EQ(spec->programs.size(), row.program_count);
        const auto it = expectations().find(row.file);
        const expectation none;
        const expectation& want = it == expectations().end() ? none : it->second;
        for (const auto& [name, value] : want.set_u32) {
            ASSERT_OK(spec->set_variable<uint32_t>(name, value));
        }
        std::optional<btf::spec> target;
        collection_options o;
        o.allow_partial = true;
        o.pin_path = fs.path("");
        o.pin_path.pop_back();
        if (want.target_btf) {
            auto b = btf_from_file(corpus + "/cilium/" + want.target_btf);
            ASSERT_OK(b);
            target = std::move(*b);
            o.target_btf = &*target;
        }
        auto c = collection::load(*spec, o);
        ASSERT_OK(c);
        for (const auto& f : c->map_failures()) {
            ADD_FAILURE() << "map " << f.name << ": " << f.why.message();
        }
        std::set<std::string> failed;
        for (const auto& f : c->failures()) {
            failed.insert(f.name);
            auto expected = want.must_fail.find(f.name);
            if (expected == want.must_fail.end()) {
                ADD_FAILURE() << "program " << f.name << " failed: " << f.why.full_message();
            } else {
                EXPECT_NE(f.why.message().find(expected->second), std::string::npos)
                    << f.why.message();
            }
        }
        for (const auto& [name, why] : want.must_fail) {
            EXPECT_TRUE(failed.count(name)) << name << " should have failed (" << why << ")";
        }
        const size_t loaded = c->programs().size();
        EXPECT_GE(loaded, libbpf_loaded(row)) << "libbpf loaded more";
        if (want.run_returns_zero) {
            for (const auto& [name, prog] : c->programs()) {
                std::array<std::byte, 64> pkt{};
                auto r = prog.test_run({.data_in = pkt});
                ASSERT_OK(r);
                auto special = want.returns.find(name);
                const uint32_t expected = special == want.returns.end() ? 0 : special->second;
                EXPECT_EQ(r->retval, expected)
                    << name << " reports a wrong relocation at line " << r->retval;
            }
        }
        summary += row.file + ": opened, loaded " + std::to_string(loaded) + "/" +
                   std::to_string(spec->programs.size()) + " (libbpf 1.1: " + row.libbpf_loads +
                   ")\n";
    }
    std::printf("%s", summary.c_str());
}

}  // namespace
}  // namespace ebpf
