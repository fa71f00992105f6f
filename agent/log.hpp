// The agent's log: one line per event on stderr, logfmt (default) or JSON, with a level filter.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace agent {

enum class log_level { debug, info, warn, error };
enum class log_format { logfmt, json };

// Sets the level below which lines are dropped, the format, and whether lines carry a timestamp
// (journald adds its own: drop ours when JOURNAL_STREAM is set).
void log_setup(log_level level, log_format format, bool timestamps);

using log_field = std::pair<std::string_view, std::string>;

// Writes one line: level, message and the fields in order.
void log(log_level level, std::string_view message, std::initializer_list<log_field> fields = {});

inline void log_info(std::string_view m, std::initializer_list<log_field> f = {}) {
    log(log_level::info, m, f);
}
inline void log_warn(std::string_view m, std::initializer_list<log_field> f = {}) {
    log(log_level::warn, m, f);
}
inline void log_error(std::string_view m, std::initializer_list<log_field> f = {}) {
    log(log_level::error, m, f);
}
inline void log_debug(std::string_view m, std::initializer_list<log_field> f = {}) {
    log(log_level::debug, m, f);
}

// Appends `v` as a double-quoted string with the escapes JSON, TOML basic strings and logfmt
// all read (\" \\ \n \t \r, \u00XX for other control characters).
void append_quoted(std::string& out, std::string_view v);

// Parses "debug", "info", "warn", "error"; false for anything else.
bool parse_log_level(std::string_view s, log_level& out);
// Parses "logfmt", "json"; false for anything else.
bool parse_log_format(std::string_view s, log_format& out);

}  // namespace agent
