// The agent's log (see log.hpp).
#include "log.hpp"

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace agent {
namespace {

std::atomic<log_level> g_level{log_level::info};
std::atomic<log_format> g_format{log_format::logfmt};
std::atomic<bool> g_timestamps{true};
std::mutex g_mutex;

const char* level_name(log_level l) {
    switch (l) {
        case log_level::debug:
            return "debug";
        case log_level::info:
            return "info";
        case log_level::warn:
            return "warn";
        case log_level::error:
            return "error";
    }
    return "info";
}

bool needs_quotes(std::string_view v) {
    if (v.empty()) {
        return true;
    }
    for (char c : v) {
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' ||
            static_cast<unsigned char>(c) >= 0x7f) {
            return true;
        }
    }
    return false;
}

std::string now_rfc3339() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm t{};
    gmtime_r(&ts.tv_sec, &t);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", t.tm_year + 1900,
                  t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000);
    return buf;
}

}  // namespace

void append_quoted(std::string& out, std::string_view v) {
    out += '"';
    for (char c : v) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
                    out += buf;
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

void log_setup(log_level level, log_format format, bool timestamps) {
    g_level = level;
    g_format = format;
    g_timestamps = timestamps;
}

void log(log_level level, std::string_view message, std::initializer_list<log_field> fields) {
    if (level < g_level.load()) {
        return;
    }
    std::string line;
    const bool json = g_format.load() == log_format::json;
    auto field = [&](std::string_view k, std::string_view v, bool first) {
        if (json) {
            line += first ? "" : ",";
            append_quoted(line, k);
            line += ':';
            append_quoted(line, v);
        } else {
            line += first ? "" : " ";
            line += k;
            line += '=';
            if (needs_quotes(v)) {
                append_quoted(line, v);
            } else {
                line += v;
            }
        }
    };
    if (json) {
        line += '{';
    }
    bool first = true;
    if (g_timestamps.load()) {
        field("time", now_rfc3339(), first);
        first = false;
    }
    field("level", level_name(level), first);
    field("msg", message, false);
    for (const auto& [k, v] : fields) {
        field(k, v, false);
    }
    line += json ? "}\n" : "\n";
    std::lock_guard lock(g_mutex);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

bool parse_log_level(std::string_view s, log_level& out) {
    for (auto l : {log_level::debug, log_level::info, log_level::warn, log_level::error}) {
        if (s == level_name(l)) {
            out = l;
            return true;
        }
    }
    return false;
}

bool parse_log_format(std::string_view s, log_format& out) {
    if (s == "logfmt") {
        out = log_format::logfmt;
        return true;
    }
    if (s == "json") {
        out = log_format::json;
        return true;
    }
    return false;
}

}  // namespace agent
