// The agent's log lines: logfmt quoting and JSON escaping, and the level filter.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdio>
#include <string>

#include "log.hpp"

namespace {

// Runs fn with stderr redirected to a temporary file and returns what it wrote.
template <typename Fn>
std::string capture_stderr(Fn fn) {
    std::fflush(stderr);
    FILE* tmp = std::tmpfile();
    int saved = dup(fileno(stderr));
    dup2(fileno(tmp), fileno(stderr));
    fn();
    std::fflush(stderr);
    dup2(saved, fileno(stderr));
    close(saved);
    std::string out;
    std::rewind(tmp);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, tmp)) > 0) {
        out.append(buf, n);
    }
    std::fclose(tmp);
    return out;
}

TEST(AgentLog, LogfmtQuotesOnlyWhatNeedsIt) {
    agent::log_setup(agent::log_level::info, agent::log_format::logfmt, false);
    auto out = capture_stderr([] {
        agent::log_info("attached", {{"program", "tcp_rto"}, {"error", "a \"b\" c"}});
    });
    EXPECT_EQ(out, "level=info msg=attached program=tcp_rto error=\"a \\\"b\\\" c\"\n");
}

TEST(AgentLog, JsonLinesParse) {
    agent::log_setup(agent::log_level::info, agent::log_format::json, true);
    auto out = capture_stderr([] { agent::log_error("load failed", {{"log", "line1\nline2"}}); });
    auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j["level"], "error");
    EXPECT_EQ(j["msg"], "load failed");
    EXPECT_EQ(j["log"], "line1\nline2");
    EXPECT_TRUE(j.contains("time"));
}

TEST(AgentLog, LevelFilters) {
    agent::log_setup(agent::log_level::warn, agent::log_format::logfmt, false);
    auto out = capture_stderr([] {
        agent::log_info("hidden");
        agent::log_warn("shown");
    });
    EXPECT_EQ(out, "level=warn msg=shown\n");
    agent::log_level l;
    EXPECT_TRUE(agent::parse_log_level("debug", l));
    EXPECT_EQ(l, agent::log_level::debug);
    EXPECT_FALSE(agent::parse_log_level("verbose", l));
}

}  // namespace
