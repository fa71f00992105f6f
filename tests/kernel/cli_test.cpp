// `ebpf-agent object load`, run as a user would, its JSON lines read back.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "kernel_fixture.hpp"

namespace ebpf {
namespace {

using json = nlohmann::json;

struct run_result {
    int status;
    std::vector<json> lines;
};

run_result run_agent(const std::string& args) {
    const std::string cmd = std::string(EBPF_AGENT_BINARY) + " " + args + " 2>/dev/null";
    FILE* p = ::popen(cmd.c_str(), "re");
    run_result r{-1, {}};
    if (!p) {
        return r;
    }
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
        out.append(buf, n);
    }
    const int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    size_t pos = 0;
    while (pos < out.size()) {
        size_t end = out.find('\n', pos);
        if (end == std::string::npos) {
            end = out.size();
        }
        r.lines.push_back(json::parse(out.substr(pos, end - pos), nullptr, false));
        pos = end + 1;
    }
    return r;
}

class CliTest : public test::KernelTest {};

TEST_F(CliTest, ObjectLoadPrintsOneJsonLinePerFile) {
    const std::string bad = "/tmp/ebpf-cli-test-not-elf";
    std::ofstream(bad) << "not an object";
    auto r = run_agent(std::string("object load ") + EBPF_TEST_OBJECT_LOADER + " " + bad);
    ::unlink(bad.c_str());
    EXPECT_EQ(r.status, 1) << "one file failed to open";
    ASSERT_EQ(r.lines.size(), 2u);
    const json& ok = r.lines[0];
    ASSERT_FALSE(ok.is_discarded());
    EXPECT_EQ(ok["opened"], true);
    size_t loaded = 0;
    for (const auto& p : ok["programs"]) {
        if (p["name"] == "not_by_default") {
            EXPECT_EQ(p["loaded"], false);
            continue;
        }
        EXPECT_EQ(p["loaded"], true) << p.dump();
        EXPECT_EQ(p["type"], "socket_filter");
        loaded += p["loaded"] == true;
    }
    EXPECT_EQ(loaded, 12u);
    for (const auto& m : ok["maps"]) {
        EXPECT_EQ(m["created"], true) << m.dump();
    }
    const json& fail = r.lines[1];
    EXPECT_EQ(fail["opened"], false);
    EXPECT_NE(fail["error"].get<std::string>().find("not an ELF file"), std::string::npos)
        << fail.dump();
}

TEST_F(CliTest, NoLoadRelocatesAgainstAGivenBtfWithoutTheKernel) {
    const std::string corpus = std::string(EBPF_TEST_CORPUS) + "/cilium/";
    auto r =
        run_agent("object load --no-load --btf " + corpus + "btf_testdata_relocs_read_tgt-el.elf " +
                  corpus + "btf_testdata_relocs_read-el.elf");
    EXPECT_EQ(r.status, 0);
    ASSERT_EQ(r.lines.size(), 1u);
    EXPECT_EQ(r.lines[0]["programs"][0]["relocated"], true) << r.lines[0].dump();
    // Against the kernel's BTF the same object's relocations are ambiguous or missing.
    auto k = run_agent("object load " + corpus + "btf_testdata_relocs_read-el.elf");
    EXPECT_EQ(k.status, 1);
    ASSERT_EQ(k.lines.size(), 1u);
    const std::string why = k.lines[0]["programs"][0]["error"];
    EXPECT_NE(why.find("CO-RE"), std::string::npos) << why;
}

TEST_F(CliTest, VerifierRejectionsShowTheLogsTail) {
    auto r = run_agent("object load " + std::string(EBPF_TEST_CORPUS) +
                       "/cilium/testdata_constants-el.elf");
    EXPECT_EQ(r.status, 1);
    ASSERT_EQ(r.lines.size(), 1u);
    const json& p = r.lines[0]["programs"][0];
    EXPECT_EQ(p["loaded"], false);
    const std::string tail = p["verifier_log_tail"];
    EXPECT_NE(tail.find("should have been in [0, 1]"), std::string::npos) << tail;
}

}  // namespace
}  // namespace ebpf
