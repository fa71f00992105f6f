// The agent's config (see config.hpp): toml++ reads the text, the schema walk below checks every
// key and value and resolves names to ids. toml++ runs with exceptions off, so none leaves here.
#define TOML_EXCEPTIONS 0
#define TOML_ENABLE_FORMATTERS 0
#include <toml++/toml.h>

#include "config.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "net_stat.h"
#include "net_stat_networks.hpp"
#include "policy.h"

namespace agent {
namespace {

// The embedded default: agent/default_config.toml, made a raw string literal by CMake.
constexpr char k_embedded[] =
#include "default_config.inc"
    ;

constexpr uint32_t k_max_project_sets = 32;
constexpr size_t k_max_policy_networks = 16384;      // max_entries of the policy networks trie
constexpr size_t k_max_net_stat_networks = 65536;    // max_entries of net_stat's networks hash
constexpr size_t k_max_project_ids = 65536;          // max_entries of project_sets
constexpr uint64_t k_rto_init_max_us = 120'000'000;  // TCP_RTO_MAX
constexpr uint64_t k_rto_min_max_us = 200'000;       // TCP_RTO_MIN: the kernel's upper bound
constexpr size_t k_max_file_size = 16u << 20;

// ---- messages ---------------------------------------------------------------------------

struct located_error {
    uint32_t line;
    uint32_t column;
    std::string text;
};

// Collects mistakes with their place; the walk goes on after one so that all are reported.
class checker {
  public:
    explicit checker(const std::string& source) : source_(source) {}

    void fail(const toml::source_region& at, const std::string& path, const std::string& what) {
        std::string text = source_ + ":" + std::to_string(at.begin.line) + ":" +
                           std::to_string(at.begin.column) + ": ";
        if (!path.empty()) {
            text += path + ": ";
        }
        text += what;
        errors_.push_back({at.begin.line, at.begin.column, std::move(text)});
    }
    bool ok() const { return errors_.empty(); }
    config_error error() {
        std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
            return std::tie(a.line, a.column) < std::tie(b.line, b.column);
        });
        config_error e;
        for (auto& x : errors_) {
            e.errors.push_back(x.text);
        }
        e.message = e.errors.front();
        if (e.errors.size() > 1) {
            e.message += " (and " + std::to_string(e.errors.size() - 1) + " more)";
        }
        return e;
    }

  private:
    const std::string& source_;
    std::vector<located_error> errors_;
};

bool is_bare_key(std::string_view k) {
    if (k.empty()) {
        return false;
    }
    return std::all_of(k.begin(), k.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
    });
}

// Renders a TOML basic string.
std::string quoted(std::string_view s) {
    std::string out;
    append_quoted(out, s);
    return out;
}

std::string child_path(const std::string& path, std::string_view key) {
    std::string k = is_bare_key(key) ? std::string(key) : quoted(key);
    return path.empty() ? k : path + "." + k;
}

std::string index_path(const std::string& path, size_t i) {
    return path + "[" + std::to_string(i) + "]";
}

const char* type_name(toml::node_type t) {
    switch (t) {
        case toml::node_type::table:
            return "a table";
        case toml::node_type::array:
            return "an array";
        case toml::node_type::string:
            return "a string";
        case toml::node_type::integer:
            return "an integer";
        case toml::node_type::floating_point:
            return "a float";
        case toml::node_type::boolean:
            return "a boolean";
        case toml::node_type::date:
            return "a date";
        case toml::node_type::time:
            return "a time";
        case toml::node_type::date_time:
            return "a date-time";
        case toml::node_type::none:
            break;
    }
    return "nothing";
}

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) {
        row[j] = j;
    }
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
            diag = up;
        }
    }
    return row[b.size()];
}

std::string join(const std::vector<std::string>& names, std::string_view none = "none") {
    if (names.empty()) {
        return std::string(none);
    }
    std::string s;
    for (const auto& n : names) {
        s += s.empty() ? "" : ", ";
        s += n;
    }
    return s;
}

// ---- values -----------------------------------------------------------------------------

// Whether `s` is a datacenter, network type or project set name: ^[a-z0-9][a-z0-9_-]{0,31}$.
bool valid_name(std::string_view s, std::string& why) {
    auto lower_digit = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    };
    if (s.empty() || s.size() > 32 || !lower_digit(s[0]) ||
        !std::all_of(s.begin(), s.end(),
                     [&](char c) { return lower_digit(c) || c == '_' || c == '-'; })) {
        why = "bad name " + quoted(s) +
              " (expected 1..32 of a-z, 0-9, '_', '-', starting with a letter or digit)";
        return false;
    }
    if (s == "other") {
        why = "\"other\" is reserved (it labels traffic of no declared network)";
        return false;
    }
    return true;
}

// Parses "40ms", "1.5s", "200us" into microseconds.
bool parse_duration_us(std::string_view s, uint64_t& out) {
    size_t i = 0;
    uint64_t whole = 0;
    size_t digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (++digits > 10) {
            return false;
        }
        whole = whole * 10 + uint64_t(s[i++] - '0');
    }
    if (digits == 0) {
        return false;
    }
    uint64_t frac = 0, frac_scale = 1;
    if (i < s.size() && s[i] == '.') {
        ++i;
        size_t frac_digits = 0;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
            if (++frac_digits > 9) {
                return false;
            }
            frac = frac * 10 + uint64_t(s[i++] - '0');
            frac_scale *= 10;
        }
        if (frac_digits == 0) {
            return false;
        }
    }
    std::string_view unit = s.substr(i);
    uint64_t mult;
    if (unit == "us" || unit == "\xc2\xb5s") {
        mult = 1;
    } else if (unit == "ms") {
        mult = 1000;
    } else if (unit == "s") {
        mult = 1'000'000;
    } else {
        return false;
    }
    if (frac * mult % frac_scale != 0) {
        return false;  // finer than a microsecond
    }
    out = whole * mult + frac * mult / frac_scale;
    return true;
}

std::string format_duration_us(uint64_t us) {
    if (us % 1'000'000 == 0) {
        return std::to_string(us / 1'000'000) + "s";
    }
    if (us % 1000 == 0) {
        return std::to_string(us / 1000) + "ms";
    }
    return std::to_string(us) + "us";
}

// Parses a DSCP class name: CS0..CS7, AF11..AF43, EF (any case).
bool parse_dscp_name(std::string_view s, uint8_t& out) {
    std::string u;
    for (char c : s) {
        u += (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c;
    }
    if (u == "EF") {
        out = 46;
        return true;
    }
    if (u.size() == 3 && u.compare(0, 2, "CS") == 0 && u[2] >= '0' && u[2] <= '7') {
        out = uint8_t((u[2] - '0') * 8);
        return true;
    }
    if (u.size() == 4 && u.compare(0, 2, "AF") == 0 && u[2] >= '1' && u[2] <= '4' && u[3] >= '1' &&
        u[3] <= '3') {
        out = uint8_t((u[2] - '0') * 8 + (u[3] - '0') * 2);
        return true;
    }
    return false;
}

// Parses "192.0.2.1:80" or "[2001:db8::1]:80".
bool parse_listen(std::string_view s, std::string& host, uint16_t& port, std::string& why) {
    std::string_view h, p;
    if (!s.empty() && s[0] == '[') {
        auto close = s.find("]:");
        if (close == std::string_view::npos) {
            why = "expected [IPv6]:port";
            return false;
        }
        h = s.substr(1, close - 1);
        p = s.substr(close + 2);
        in6_addr a;
        if (::inet_pton(AF_INET6, std::string(h).c_str(), &a) != 1) {
            why = quoted(h) + " is not an IPv6 address";
            return false;
        }
    } else {
        auto colon = s.rfind(':');
        if (colon == std::string_view::npos) {
            why = "expected IPv4:port or [IPv6]:port";
            return false;
        }
        h = s.substr(0, colon);
        p = s.substr(colon + 1);
        if (h.find(':') != std::string_view::npos) {
            why = "an IPv6 address goes in brackets, e.g. [::1]:9977";
            return false;
        }
        in_addr a;
        if (::inet_pton(AF_INET, std::string(h).c_str(), &a) != 1) {
            why = quoted(h) + " is not an IPv4 address (host names are not resolved)";
            return false;
        }
    }
    if (p.empty() || p.size() > 5 ||
        !std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoul(std::string(p)) > 65535) {
        why = "port " + quoted(p) + " is not a number 0..65535";
        return false;
    }
    host = std::string(h);
    port = uint16_t(std::stoul(std::string(p)));
    return true;
}

// Parses a prefix ("2001:db8::/32", "192.0.2.0/24", or a bare address) with no host bits set.
bool parse_prefix(std::string_view s, ebpf::lpm_key& out, std::string& why) {
    auto key = ebpf::lpm_key::parse(s);
    if (!key) {
        why = "bad prefix " + quoted(s) + ": " + key.error().detail();
        return false;
    }
    auto addr = ebpf::lpm_key::parse(s.substr(0, s.find('/')));
    if (addr && std::memcmp(addr->addr, key->addr, 16) != 0) {
        why = "bad prefix " + quoted(s) + ": bits are set past the prefix length (the network is " +
              key->to_string() + ")";
        return false;
    }
    out = *key;
    return true;
}

bool key_less(const ebpf::lpm_key& a, const ebpf::lpm_key& b) {
    int c = std::memcmp(a.addr, b.addr, 16);
    return c != 0 ? c < 0 : a.prefixlen < b.prefixlen;
}

// ---- the schema walk --------------------------------------------------------------------

// One table of the file and its path; reads its keys with type and range checks.
class section {
  public:
    section(checker& c, const toml::table& t, std::string path)
        : c_(c), t_(t), path_(std::move(path)) {}

    const toml::table& table() const { return t_; }
    const std::string& path() const { return path_; }
    std::string at(std::string_view key) const { return child_path(path_, key); }
    const toml::node* node(std::string_view key) const { return t_.get(key); }

    void fail(std::string_view key, const std::string& what) const {
        c_.fail(t_.get(key)->source(), at(key), what);
    }
    void fail_here(const std::string& what) const { c_.fail(t_.source(), path_, what); }
    void fail_missing(std::string_view key) const {
        c_.fail(t_.source(), at(key), "missing (required)");
    }
    void wrong_type(std::string_view key, const char* expected) const {
        fail(key, std::string("expected ") + expected + ", got " + type_name(t_.get(key)->type()));
    }

    // Reports the keys outside `known`, suggesting a near one.
    void check_keys(std::initializer_list<std::string_view> known) const {
        for (auto&& [k, v] : t_) {
            if (std::find(known.begin(), known.end(), k.str()) != known.end()) {
                continue;
            }
            std::string_view near;
            size_t best = 3;
            std::vector<std::string> all;
            for (auto n : known) {
                all.emplace_back(n);
                size_t d = edit_distance(k.str(), n);
                if (d < best) {
                    best = d;
                    near = n;
                }
            }
            std::string what = "unknown key";
            what += near.empty() ? " (expected one of: " + join(all) + ")"
                                 : " (did you mean " + quoted(near) + "?)";
            c_.fail(k.source(), at(k.str()), what);
        }
    }

    std::optional<section> sub(std::string_view key) const {
        const toml::node* n = node(key);
        if (!n) {
            return std::nullopt;
        }
        if (!n->is_table()) {
            wrong_type(key, "a table");
            return std::nullopt;
        }
        return section(c_, *n->as_table(), at(key));
    }
    const toml::array* array(std::string_view key) const {
        const toml::node* n = node(key);
        if (n && !n->is_array()) {
            wrong_type(key, "an array");
            return nullptr;
        }
        return n ? n->as_array() : nullptr;
    }
    bool string(std::string_view key, std::string& out) const {
        const toml::node* n = node(key);
        if (!n) {
            return false;
        }
        if (!n->is_string()) {
            wrong_type(key, "a string");
            return false;
        }
        out = n->as_string()->get();
        return true;
    }
    bool boolean(std::string_view key, bool& out) const {
        const toml::node* n = node(key);
        if (!n) {
            return false;
        }
        if (!n->is_boolean()) {
            wrong_type(key, "a boolean (true or false)");
            return false;
        }
        out = n->as_boolean()->get();
        return true;
    }
    template <class T>
    bool integer(std::string_view key, int64_t lo, int64_t hi, T& out) const {
        const toml::node* n = node(key);
        if (!n) {
            return false;
        }
        if (!n->is_integer()) {
            wrong_type(key, "an integer");
            return false;
        }
        int64_t v = n->as_integer()->get();
        if (v < lo || v > hi) {
            fail(key, "must be " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                          std::to_string(v));
            return false;
        }
        out = T(v);
        return true;
    }
    // Reads one of `choices`, storing its position.
    bool choice(std::string_view key, std::initializer_list<std::string_view> choices,
                size_t& out) const {
        std::string s;
        if (!string(key, s)) {
            return false;
        }
        std::vector<std::string> names;
        for (auto c : choices) {
            if (c == s) {
                out = names.size();
                return true;
            }
            names.push_back(quoted(c));
        }
        fail(key, "unknown value " + quoted(s) + " (expected " + join(names) + ")");
        return false;
    }

  private:
    checker& c_;
    const toml::table& t_;
    std::string path_;
};

// Names declared in a list ([network] datacenters and types); id = position + 1.
struct name_table {
    std::vector<std::string> names;
    std::string what;  // "datacenter", "network type"

    uint32_t find(std::string_view n) const {
        auto it = std::find(names.begin(), names.end(), n);
        return it == names.end() ? 0 : uint32_t(it - names.begin() + 1);
    }
    std::string unknown(std::string_view n) const {
        std::vector<std::string> q;
        for (const auto& x : names) {
            q.push_back(quoted(x));
        }
        return "unknown " + what + " " + quoted(n) + " (declared in network." +
               (what == "datacenter" ? "datacenters" : "types") + ": " + join(q) + ")";
    }
};

void read_names(checker& c, const section& s, std::string_view key, name_table& out) {
    const toml::array* a = s.array(key);
    if (!a) {
        return;
    }
    for (size_t i = 0; i < a->size(); ++i) {
        const toml::node& n = *a->get(i);
        std::string path = index_path(s.at(key), i);
        if (!n.is_string()) {
            c.fail(n.source(), path, std::string("expected a string, got ") + type_name(n.type()));
            continue;
        }
        const std::string& name = n.as_string()->get();
        std::string why;
        if (!valid_name(name, why)) {
            c.fail(n.source(), path, why);
        } else if (out.find(name)) {
            c.fail(n.source(), path, out.what + " " + quoted(name) + " is declared twice");
            continue;
        }
        out.names.push_back(name);
    }
}

void read_prefix_list(checker& c, const section& s, std::string_view key,
                      std::vector<ebpf::lpm_key>& out) {
    const toml::array* a = s.array(key);
    if (!a) {
        return;
    }
    for (size_t i = 0; i < a->size(); ++i) {
        const toml::node& n = *a->get(i);
        std::string path = index_path(s.at(key), i);
        if (!n.is_string()) {
            c.fail(n.source(), path, std::string("expected a string, got ") + type_name(n.type()));
            continue;
        }
        ebpf::lpm_key k;
        std::string why;
        if (!parse_prefix(n.as_string()->get(), k, why)) {
            c.fail(n.source(), path, why);
            continue;
        }
        if (std::find(out.begin(), out.end(), k) != out.end()) {
            c.fail(n.source(), path, k.to_string() + " is listed twice");
            continue;
        }
        out.push_back(k);
    }
}

// Reads a DSCP: a class name or 0..63.
bool read_dscp(const section& s, std::string_view key, std::optional<uint8_t>& out) {
    const toml::node* n = s.node(key);
    if (!n) {
        return false;
    }
    if (n->is_integer()) {
        int64_t v = n->as_integer()->get();
        if (v < 0 || v > 63) {
            s.fail(key, "DSCP " + std::to_string(v) + " is out of range (expected 0..63)");
            return false;
        }
        out = uint8_t(v);
        return true;
    }
    if (!n->is_string()) {
        s.wrong_type(key, "a class name or an integer");
        return false;
    }
    uint8_t v;
    if (!parse_dscp_name(n->as_string()->get(), v)) {
        s.fail(key, "unknown class " + quoted(n->as_string()->get()) +
                        " (expected CS0..CS7, AFxy, EF or 0..63)");
        return false;
    }
    out = v;
    return true;
}

// Reads a duration: a string with a unit, or an integer number of milliseconds.
bool read_duration(const section& s, std::string_view key, uint64_t min_us, uint64_t max_us,
                   uint64_t& out) {
    const toml::node* n = s.node(key);
    if (!n) {
        return false;
    }
    uint64_t us = 0;
    if (n->is_integer()) {
        int64_t v = n->as_integer()->get();
        if (v < 0 || v > int64_t(max_us / 1000)) {
            s.fail(key, "must be " + format_duration_us(min_us) + ".." +
                            format_duration_us(max_us) + ", got " + std::to_string(v) + "ms");
            return false;
        }
        us = uint64_t(v) * 1000;
    } else if (n->is_string()) {
        if (!parse_duration_us(n->as_string()->get(), us)) {
            s.fail(key, "bad duration " + quoted(n->as_string()->get()) +
                            " (expected a number and a unit: us, ms or s, e.g. \"40ms\")");
            return false;
        }
    } else {
        s.wrong_type(key, "a duration string (\"40ms\") or an integer (ms)");
        return false;
    }
    if (us < min_us || us > max_us) {
        s.fail(key, "must be " + format_duration_us(min_us) + ".." + format_duration_us(max_us) +
                        ", got " + format_duration_us(us));
        return false;
    }
    out = us;
    return true;
}

void read_agent(checker&, const section& s, config& c) {
    s.check_keys({"cgroup", "bpffs_dir", "run_dir", "on_stop", "stats_interval"});
    if (s.string("cgroup", c.cgroup)) {
        if (!c.cgroup.empty() && c.cgroup[0] != '/') {
            s.fail("cgroup",
                   "must be an absolute path (or \"\" for the root of the cgroup2 mount)");
        } else if (c.cgroup.find('\0') != std::string::npos) {
            s.fail("cgroup", "contains a NUL character");
        }
    }
    if (s.string("bpffs_dir", c.bpffs_dir)) {
        if (c.bpffs_dir.size() < 2 || c.bpffs_dir[0] != '/') {
            s.fail("bpffs_dir", "must be an absolute path below a bpffs mount");
        } else if (c.bpffs_dir.find('\0') != std::string::npos) {
            s.fail("bpffs_dir", "contains a NUL character");
        }
    }
    if (s.string("run_dir", c.run_dir)) {
        if (c.run_dir.size() < 2 || c.run_dir[0] != '/') {
            s.fail("run_dir", "must be an absolute path");
        } else if (c.run_dir.find('\0') != std::string::npos) {
            s.fail("run_dir", "contains a NUL character");
        }
    }
    size_t mode;
    if (s.choice("on_stop", {"detach", "keep"}, mode)) {
        c.on_stop = mode == 0 ? on_stop_mode::detach : on_stop_mode::keep;
    }
    s.integer("stats_interval", 0, 86400, c.stats_interval);
}

void read_log(checker&, const section& s, config& c) {
    s.check_keys({"level", "format"});
    std::string v;
    if (s.string("level", v) && !parse_log_level(v, c.log_level_)) {
        s.fail("level", "unknown level " + quoted(v) + " (expected debug, info, warn or error)");
    }
    if (s.string("format", v) && !parse_log_format(v, c.log_format_)) {
        s.fail("format", "unknown format " + quoted(v) + " (expected logfmt or json)");
    }
}

void read_metrics(checker&, const section& s, config& c) {
    s.check_keys({"listen", "cgroup_depth", "max_cgroups"});
    if (s.string("listen", c.metrics_listen)) {
        c.metrics_host.clear();
        c.metrics_port = 0;
        std::string why;
        if (!c.metrics_listen.empty() &&
            !parse_listen(c.metrics_listen, c.metrics_host, c.metrics_port, why)) {
            s.fail("listen", "bad address " + quoted(c.metrics_listen) + ": " + why);
        }
    }
    s.integer("cgroup_depth", 1, 16, c.cgroup_depth);
    s.integer("max_cgroups", 1, 1 << 20, c.max_cgroups);
}

void read_programs(checker&, const section& s, config& c) {
    s.check_keys({"tcp_rto", "tcp_tos", "tclass_lock", "net_stat", "net_stat_dc"});
    s.boolean("tcp_rto", c.programs.tcp_rto);
    s.boolean("tcp_tos", c.programs.tcp_tos);
    s.boolean("tclass_lock", c.programs.tclass_lock);
    s.boolean("net_stat", c.programs.net_stat);
    s.boolean("net_stat_dc", c.programs.net_stat_dc);
}

// Where each declared prefix came from, for duplicate messages.
struct prefix_origin {
    std::string path;
    uint32_t line;
};

void read_networks(checker& chk, const section& root, const name_table& dcs,
                   const name_table& types, config& c) {
    const toml::array* a = root.array("networks");
    if (!a) {
        return;
    }
    std::vector<std::pair<ebpf::lpm_key, prefix_origin>> seen;
    for (size_t i = 0; i < a->size(); ++i) {
        const toml::node& n = *a->get(i);
        std::string path = index_path("networks", i);
        if (!n.is_table()) {
            chk.fail(n.source(), path, std::string("expected a table, got ") + type_name(n.type()));
            continue;
        }
        section s(chk, *n.as_table(), path);
        s.check_keys({"prefix", "dc", "type"});
        network_entry e;
        bool ok = true;
        std::string v;
        if (s.string("prefix", v)) {
            std::string why;
            if (!parse_prefix(v, e.prefix, why)) {
                s.fail("prefix", why);
                ok = false;
            } else {
                auto dup = std::find_if(seen.begin(), seen.end(),
                                        [&](const auto& p) { return p.first == e.prefix; });
                if (dup != seen.end()) {
                    s.fail("prefix", e.prefix.to_string() + " is declared twice (also " +
                                         dup->second.path + ", line " +
                                         std::to_string(dup->second.line) + ")");
                    ok = false;
                } else {
                    seen.push_back(
                        {e.prefix, {s.at("prefix"), s.node("prefix")->source().begin.line}});
                }
            }
        } else {
            ok = false;
            if (!s.node("prefix")) {
                s.fail_missing("prefix");
            }
        }
        // A required name declared in `table`: its id, or 0 after reporting the mistake.
        auto required_name = [&](const char* key, const name_table& table) -> uint32_t {
            if (!s.string(key, v)) {
                if (!s.node(key)) {
                    s.fail_missing(key);
                }
                return 0;
            }
            const uint32_t id = table.find(v);
            if (!id) {
                s.fail(key, table.unknown(v));
            }
            return id;
        };
        e.dc = required_name("dc", dcs);
        e.net_type = required_name("type", types);
        ok = ok && e.dc && e.net_type;
        if (ok) {
            c.networks.push_back(e);
        }
    }
}

// Reads a project id: an integer 1..2^32-1, or a "0x..." string.
bool read_project_id(checker& chk, const toml::node& n, const std::string& path, uint32_t& out) {
    int64_t v = -1;
    if (n.is_integer()) {
        v = n.as_integer()->get();
    } else if (n.is_string()) {
        const std::string& s = n.as_string()->get();
        if (s.size() > 2 && s.size() <= 10 &&
            (s.compare(0, 2, "0x") == 0 || s.compare(0, 2, "0X") == 0) &&
            std::all_of(s.begin() + 2, s.end(),
                        [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
            v = int64_t(std::stoull(s.substr(2), nullptr, 16));
        } else {
            chk.fail(
                n.source(), path,
                "bad project id " + quoted(s) + " (expected an integer or a \"0x...\" string)");
            return false;
        }
    } else {
        chk.fail(
            n.source(), path,
            std::string("expected an integer or a \"0x...\" string, got ") + type_name(n.type()));
        return false;
    }
    if (v == 0) {
        chk.fail(n.source(), path,
                 "project id 0 never matches (addresses without a project carry 0)");
        return false;
    }
    if (v < 0 || v > int64_t(UINT32_MAX)) {
        chk.fail(n.source(), path,
                 "project id " + std::to_string(v) + " is out of range (expected 1..4294967295)");
        return false;
    }
    out = uint32_t(v);
    return true;
}

void read_project_sets(checker& chk, const section& s, config& c) {
    size_t count = 0;
    for (auto&& [k, v] : s.table()) {
        std::string name(k.str());
        std::string path = s.at(name);
        if (++count == k_max_project_sets + 1) {
            chk.fail(k.source(), path,
                     "too many project sets (at most " + std::to_string(k_max_project_sets) + ")");
        }
        std::string why;
        if (!valid_name(name, why)) {
            chk.fail(k.source(), path, why);
        }
        project_set_entry e{name, {}};
        if (!v.is_array()) {
            chk.fail(v.source(), path,
                     std::string("expected an array of project ids, got ") + type_name(v.type()));
        } else {
            const toml::array& a = *v.as_array();
            for (size_t i = 0; i < a.size(); ++i) {
                uint32_t id;
                std::string ipath = index_path(path, i);
                if (!read_project_id(chk, *a.get(i), ipath, id)) {
                    continue;
                }
                if (std::find(e.projects.begin(), e.projects.end(), id) != e.projects.end()) {
                    char buf[16];
                    std::snprintf(buf, sizeof buf, "0x%" PRIx32, id);
                    chk.fail(a.get(i)->source(), ipath,
                             std::string("project ") + buf + " is listed twice");
                    continue;
                }
                e.projects.push_back(id);
            }
        }
        std::sort(e.projects.begin(), e.projects.end());
        c.project_sets.push_back(std::move(e));
    }
}

void read_rules(checker& chk, const section& root, const name_table& types, config& c) {
    const toml::array* a = root.array("rules");
    if (!a) {
        return;
    }
    for (size_t i = 0; i < a->size(); ++i) {
        const toml::node& n = *a->get(i);
        std::string path = index_path("rules", i);
        if (i == POLICY_MAX_RULES) {
            chk.fail(n.source(), path,
                     "too many rules (at most " + std::to_string(POLICY_MAX_RULES) + ")");
        }
        if (!n.is_table()) {
            chk.fail(n.source(), path, std::string("expected a table, got ") + type_name(n.type()));
            continue;
        }
        section s(chk, *n.as_table(), path);
        s.check_keys({"network_type", "scope", "project_set", "project_of", "rto_init", "rto_min",
                      "congestion", "flowlabel", "yattl", "dscp", "ecn_syn"});
        rule_entry r;
        std::string v;
        if (s.string("network_type", v)) {
            r.net_type = types.find(v);
            if (!r.net_type) {
                s.fail("network_type", types.unknown(v));
            }
        }
        size_t pick;
        if (s.choice("scope", {"any", "same_dc", "cross_dc"}, pick)) {
            r.scope = rule_scope(pick);
        }
        if (s.string("project_set", v)) {
            auto it = std::find_if(c.project_sets.begin(), c.project_sets.end(),
                                   [&](const auto& p) { return p.name == v; });
            if (it == c.project_sets.end()) {
                std::vector<std::string> q;
                for (const auto& p : c.project_sets) {
                    q.push_back(quoted(p.name));
                }
                s.fail("project_set",
                       "unknown project set " + quoted(v) + " (declared: " + join(q) + ")");
            } else {
                r.project_set = uint32_t(it - c.project_sets.begin());
            }
        }
        if (s.choice("project_of", {"remote", "local"}, pick)) {
            r.project_of = project_side(pick);
            if (!s.node("project_set")) {
                s.fail("project_of", "has no effect without project_set");
            }
        }
        uint64_t us;
        if (read_duration(s, "rto_init", 1000, k_rto_init_max_us, us)) {
            if (us % 1000 != 0) {
                s.fail("rto_init",
                       format_duration_us(us) + " is not a whole number of milliseconds");
            }
            r.rto_init_ms = uint32_t(us / 1000);
        }
        if (read_duration(s, "rto_min", 1, k_rto_min_max_us, us)) {
            r.rto_min_us = uint32_t(us);
        }
        if (s.string("congestion", r.congestion)) {
            if (r.congestion.empty() || r.congestion.size() > 15 ||
                !std::all_of(r.congestion.begin(), r.congestion.end(), [](char ch) {
                    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
                })) {
                s.fail("congestion", "bad algorithm name " + quoted(r.congestion) +
                                         " (1..15 letters, digits, '_' or '-')");
            }
        }
        if (s.choice("flowlabel", {"rehash", "fixed"}, pick)) {
            r.flowlabel = pick == 0 ? flowlabel_mode::rehash : flowlabel_mode::fixed;
        }
        s.boolean("yattl", r.yattl);
        read_dscp(s, "dscp", r.dscp);
        if (r.yattl && r.dscp && (*r.dscp % 8 != 0 || *r.dscp > 40)) {
            // tcp_rto marks the retransmitted SYN as the class selector + 1: CS0..CS5 only.
            s.fail("yattl", "YaTTL works with class selectors CS0..CS5 only, and dscp is " +
                                dscp_name(*r.dscp));
        }
        s.boolean("ecn_syn", r.ecn_syn);
        if (i < POLICY_MAX_RULES) {
            c.rules.push_back(std::move(r));
        }
    }
}

// Number of entries the policy networks trie gets: declared networks and flagged prefixes,
// those at the same prefix merged.
size_t policy_entry_count(const config& c) {
    std::vector<ebpf::lpm_key> all;
    for (const auto& n : c.networks) {
        all.push_back(n.prefix);
    }
    all.insert(all.end(), c.yattl_exclude.begin(), c.yattl_exclude.end());
    all.insert(all.end(), c.stateful_services.begin(), c.stateful_services.end());
    std::sort(all.begin(), all.end(), key_less);
    return size_t(std::unique(all.begin(), all.end()) - all.begin());
}

bool parse_into(std::string_view text, const std::string& source, config& c, checker& chk) {
    toml::parse_result parsed = toml::parse(text, std::string_view(source));
    if (!parsed) {
        const toml::parse_error& e = parsed.error();
        chk.fail(e.source(), "", "TOML syntax: " + std::string(e.description()));
        return false;
    }
    const toml::table& t = parsed.table();
    section root(chk, t, "");
    root.check_keys({"agent", "log", "metrics", "programs", "tclass_lock", "net_stat", "network",
                     "networks", "project_sets", "rules", "tcp_tos"});
    if (auto s = root.sub("agent")) {
        read_agent(chk, *s, c);
    }
    if (auto s = root.sub("log")) {
        read_log(chk, *s, c);
    }
    if (auto s = root.sub("metrics")) {
        read_metrics(chk, *s, c);
    }
    if (auto s = root.sub("programs")) {
        read_programs(chk, *s, c);
    }
    if (auto s = root.sub("tclass_lock")) {
        s->check_keys({"lock_ip_tos"});
        s->boolean("lock_ip_tos", c.lock_ip_tos);
    }
    if (auto s = root.sub("net_stat")) {
        s->check_keys({"max_cgroups", "max_dc_entries"});
        s->integer("max_cgroups", 64, 1 << 20, c.net_stat_max_cgroups);
        s->integer("max_dc_entries", 64, 1 << 22, c.net_stat_max_dc_entries);
    }

    name_table dcs{{}, "datacenter"}, types{{}, "network type"};
    std::string local_dc;
    auto net = root.sub("network");
    if (net) {
        net->check_keys({"datacenters", "types", "local_dc", "yattl_exclude", "stateful_services",
                         "peer_cache_entries"});
        net->integer("peer_cache_entries", 1024, 1 << 20, c.peer_cache_entries);
        read_names(chk, *net, "datacenters", dcs);
        read_names(chk, *net, "types", types);
        read_prefix_list(chk, *net, "yattl_exclude", c.yattl_exclude);
        read_prefix_list(chk, *net, "stateful_services", c.stateful_services);
        if (net->string("local_dc", local_dc) && !local_dc.empty()) {
            c.local_dc = dcs.find(local_dc);
            if (!c.local_dc) {
                net->fail("local_dc", dcs.unknown(local_dc));
            }
        }
    }
    c.datacenters = dcs.names;
    c.net_types = types.names;
    read_networks(chk, root, dcs, types, c);
    if (const toml::array* a = root.array("networks"); a && !a->empty() && local_dc.empty()) {
        const std::string what =
            "required when networks are declared (it tells same_dc from cross_dc)";
        if (net) {
            chk.fail(
                net->node("local_dc") ? net->node("local_dc")->source() : net->table().source(),
                "network.local_dc", what);
        } else {
            chk.fail(a->get(0)->source(), "network.local_dc", what);
        }
    }
    if (auto s = root.sub("project_sets")) {
        read_project_sets(chk, *s, c);
    }
    read_rules(chk, root, types, c);
    if (auto s = root.sub("tcp_tos")) {
        s->check_keys({"listen_dscp"});
        read_dscp(*s, "listen_dscp", c.listen_dscp);
    }

    // Limits of the maps the tables go into.
    if (policy_entry_count(c) > k_max_policy_networks) {
        chk.fail(t.source(), "networks",
                 "networks, yattl_exclude and stateful_services make " +
                     std::to_string(policy_entry_count(c)) + " prefixes (at most " +
                     std::to_string(k_max_policy_networks) + ")");
    }
    if (c.networks.size() > k_max_net_stat_networks) {
        chk.fail(t.source(), "networks",
                 "too many networks (at most " + std::to_string(k_max_net_stat_networks) + ")");
    }
    std::set<uint32_t> ids;
    for (const auto& p : c.project_sets) {
        ids.insert(p.projects.begin(), p.projects.end());
    }
    if (ids.size() > k_max_project_ids) {
        chk.fail(t.source(), "project_sets",
                 std::to_string(ids.size()) + " distinct project ids (at most " +
                     std::to_string(k_max_project_ids) + ")");
    }
    if (c.programs.net_stat_dc && chk.ok()) {
        // net_stat_dc probes one hash lookup per prefix length in use, NET_STAT_MAX_LENS at most.
        std::set<uint32_t> v6, v4;
        const toml::array* a = root.array("networks");
        for (size_t i = 0; i < c.networks.size(); ++i) {
            const auto& p = c.networks[i].prefix;
            if (net_stat::holds_ipv6(p)) {
                v6.insert(p.prefixlen);
            }
            if (net_stat::holds_ipv4(p)) {
                v4.insert(p.prefixlen);
            }
            if (v6.size() > NET_STAT_MAX_LENS || v4.size() > NET_STAT_MAX_LENS) {
                chk.fail(a->get(i)->as_table()->get("prefix")->source(),
                         index_path("networks", i) + ".prefix",
                         "more than " + std::to_string(NET_STAT_MAX_LENS) + " distinct " +
                             (v6.size() > NET_STAT_MAX_LENS ? "IPv6" : "IPv4") +
                             " prefix lengths, the most net_stat_dc looks up");
                break;
            }
        }
    }
    return chk.ok();
}

}  // namespace

std::string dscp_name(uint8_t d) {
    if (d == 46) {
        return "EF";
    }
    if (d % 8 == 0 && d < 64) {
        return "CS" + std::to_string(d / 8);
    }
    if (d / 8 >= 1 && d / 8 <= 4 && d % 8 >= 2 && d % 8 <= 6 && d % 2 == 0) {
        return "AF" + std::to_string(d / 8) + std::to_string(d % 8 / 2);
    }
    return std::to_string(d);
}

bool parse_config(std::string_view text, const std::string& source, config& out,
                  config_error& err) {
    config c;
    c.source = source;
    checker chk(source);
    if (!parse_into(text, source, c, chk)) {
        err = chk.error();
        return false;
    }
    out = std::move(c);
    return true;
}

bool load_config_file(const std::string& path, config& out, config_error& err) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        int e = errno;
        err.message = path + ": cannot open: " + std::strerror(e);
        err.errors = {err.message};
        return false;
    }
    std::string text;
    char buf[65536];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        text.append(buf, size_t(in.gcount()));
        if (text.size() > k_max_file_size) {
            err.message = path + ": larger than " + std::to_string(k_max_file_size >> 20) +
                          " MiB: not a config file";
            err.errors = {err.message};
            return false;
        }
    }
    if (in.bad()) {
        int e = errno;
        err.message = path + ": cannot read: " + std::strerror(e);
        err.errors = {err.message};
        return false;
    }
    return parse_config(text, path, out, err);
}

const std::string_view embedded_default_config() {
    return std::string_view(k_embedded, sizeof k_embedded - 1);
}

bool default_config(config& out, config_error& err) {
    return parse_config(embedded_default_config(), "<embedded>", out, err);
}

std::string config::canonical() const {
    std::ostringstream o;
    auto b = [](bool v) {
        return v ? "true" : "false";
    };
    auto prefixes = [&](std::vector<ebpf::lpm_key> v) {
        std::sort(v.begin(), v.end(), key_less);
        std::string s = "[";
        for (const auto& k : v) {
            s += (s.size() > 1 ? ", " : "") + quoted(k.to_string());
        }
        return s + "]";
    };
    auto names = [&](const std::vector<std::string>& v) {
        std::string s = "[";
        for (const auto& n : v) {
            s += (s.size() > 1 ? ", " : "") + quoted(n);
        }
        return s + "]";
    };
    const char* levels[] = {"debug", "info", "warn", "error"};
    o << "[agent]\ncgroup = " << quoted(cgroup) << "\nbpffs_dir = " << quoted(bpffs_dir)
      << "\nrun_dir = " << quoted(run_dir)
      << "\non_stop = " << (on_stop == on_stop_mode::detach ? "\"detach\"" : "\"keep\"")
      << "\nstats_interval = " << stats_interval << "\n\n";
    o << "[log]\nlevel = \"" << levels[int(log_level_)] << "\"\nformat = \""
      << (log_format_ == log_format::json ? "json" : "logfmt") << "\"\n\n";
    o << "[metrics]\nlisten = " << quoted(metrics_listen) << "\ncgroup_depth = " << cgroup_depth
      << "\nmax_cgroups = " << max_cgroups << "\n\n";
    o << "[programs]\ntcp_rto = " << b(programs.tcp_rto) << "\ntcp_tos = " << b(programs.tcp_tos)
      << "\ntclass_lock = " << b(programs.tclass_lock) << "\nnet_stat = " << b(programs.net_stat)
      << "\nnet_stat_dc = " << b(programs.net_stat_dc) << "\n\n";
    o << "[tclass_lock]\nlock_ip_tos = " << b(lock_ip_tos) << "\n\n";
    o << "[net_stat]\nmax_cgroups = " << net_stat_max_cgroups
      << "\nmax_dc_entries = " << net_stat_max_dc_entries << "\n\n";
    o << "[network]\ndatacenters = " << names(datacenters) << "\ntypes = " << names(net_types)
      << "\nlocal_dc = " << quoted(local_dc ? datacenters[local_dc - 1] : "")
      << "\nyattl_exclude = " << prefixes(yattl_exclude)
      << "\nstateful_services = " << prefixes(stateful_services)
      << "\npeer_cache_entries = " << peer_cache_entries << "\n\n";
    o << "[tcp_tos]\n";
    if (listen_dscp) {
        o << "listen_dscp = " << quoted(dscp_name(*listen_dscp)) << "\n";
    }
    o << "\n[project_sets]\n";
    for (const auto& p : project_sets) {
        o << child_path("", p.name) << " = [";
        for (size_t i = 0; i < p.projects.size(); ++i) {
            char buf[16];
            std::snprintf(buf, sizeof buf, "0x%" PRIx32, p.projects[i]);
            o << (i ? ", " : "") << buf;
        }
        o << "]\n";
    }
    std::vector<network_entry> nets = networks;
    std::sort(nets.begin(), nets.end(),
              [](const auto& x, const auto& y) { return key_less(x.prefix, y.prefix); });
    for (const auto& n : nets) {
        o << "\n[[networks]]\nprefix = " << quoted(n.prefix.to_string())
          << "\ndc = " << quoted(datacenters[n.dc - 1])
          << "\ntype = " << quoted(net_types[n.net_type - 1]) << "\n";
    }
    const char* scopes[] = {"any", "same_dc", "cross_dc"};
    for (const auto& r : rules) {
        o << "\n[[rules]]\n";
        if (r.net_type) {
            o << "network_type = " << quoted(net_types[r.net_type - 1]) << "\n";
        }
        o << "scope = \"" << scopes[int(r.scope)] << "\"\n";
        if (r.project_set) {
            o << "project_set = " << quoted(project_sets[*r.project_set].name) << "\nproject_of = "
              << (r.project_of == project_side::remote ? "\"remote\"" : "\"local\"") << "\n";
        }
        if (r.rto_init_ms) {
            o << "rto_init = " << quoted(format_duration_us(uint64_t(r.rto_init_ms) * 1000))
              << "\n";
        }
        if (r.rto_min_us) {
            o << "rto_min = " << quoted(format_duration_us(r.rto_min_us)) << "\n";
        }
        if (!r.congestion.empty()) {
            o << "congestion = " << quoted(r.congestion) << "\n";
        }
        if (r.flowlabel != flowlabel_mode::kernel) {
            o << "flowlabel = "
              << (r.flowlabel == flowlabel_mode::fixed ? "\"fixed\"" : "\"rehash\"") << "\n";
        }
        o << "yattl = " << b(r.yattl) << "\n";
        if (r.dscp) {
            o << "dscp = " << quoted(dscp_name(*r.dscp)) << "\n";
        }
        o << "ecn_syn = " << b(r.ecn_syn) << "\n";
    }
    return o.str();
}

std::string config::hash() const {
    uint64_t h = 14695981039346656037ull;
    for (unsigned char ch : canonical()) {
        h ^= ch;
        h *= 1099511628211ull;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, h);
    return buf;
}

std::vector<std::string> restart_only_changes(const config& running, const config& next) {
    std::vector<std::string> out;
    auto b = [](bool v) {
        return std::string(v ? "true" : "false");
    };
    auto cmp = [&](const char* key, const std::string& a, const std::string& z) {
        if (a != z) {
            out.push_back(std::string(key) + ": " + a + " -> " + z);
        }
    };
    const program_set& p = running.programs;
    const program_set& q = next.programs;
    cmp("programs.tcp_rto", b(p.tcp_rto), b(q.tcp_rto));
    cmp("programs.tcp_tos", b(p.tcp_tos), b(q.tcp_tos));
    cmp("programs.tclass_lock", b(p.tclass_lock), b(q.tclass_lock));
    cmp("programs.net_stat", b(p.net_stat), b(q.net_stat));
    cmp("programs.net_stat_dc", b(p.net_stat_dc), b(q.net_stat_dc));
    cmp("agent.cgroup", quoted(running.cgroup), quoted(next.cgroup));
    cmp("agent.bpffs_dir", quoted(running.bpffs_dir), quoted(next.bpffs_dir));
    cmp("agent.run_dir", quoted(running.run_dir), quoted(next.run_dir));
    auto mode = [](on_stop_mode m) {
        return std::string(m == on_stop_mode::detach ? "\"detach\"" : "\"keep\"");
    };
    cmp("agent.on_stop", mode(running.on_stop), mode(next.on_stop));
    cmp("metrics.listen", quoted(running.metrics_listen), quoted(next.metrics_listen));
    cmp("net_stat.max_cgroups", std::to_string(running.net_stat_max_cgroups),
        std::to_string(next.net_stat_max_cgroups));
    cmp("net_stat.max_dc_entries", std::to_string(running.net_stat_max_dc_entries),
        std::to_string(next.net_stat_max_dc_entries));
    cmp("tclass_lock.lock_ip_tos", b(running.lock_ip_tos), b(next.lock_ip_tos));
    // The dc counters' keys hold ids (positions), not names: a name may be added at the end, but
    // one that moves or goes would give the counts already made to another name.
    auto names = [&](const char* key, const std::vector<std::string>& a,
                     const std::vector<std::string>& z) {
        if (z.size() < a.size() || !std::equal(a.begin(), a.end(), z.begin())) {
            std::vector<std::string> qa, qz;
            for (const auto& n : a) {
                qa.push_back(quoted(n));
            }
            for (const auto& n : z) {
                qz.push_back(quoted(n));
            }
            out.push_back(std::string(key) + ": [" + join(qa, "") + "] -> [" + join(qz, "") +
                          "] (counters are kept by position: names may only be appended)");
        }
    };
    if (running.programs.net_stat_dc) {  // the only counters keyed by these ids
        names("network.datacenters", running.datacenters, next.datacenters);
        names("network.types", running.net_types, next.net_types);
    }
    return out;
}

}  // namespace agent
