// ebpf-agent: the daemon (`run`) and its command line: check-config, status, stats, reload,
// cleanup, and `object load` for debugging objects. Exit codes: 0 ok, 1 failure, 64 usage,
// 78 bad config.
#include <CLI/CLI.hpp>

#include <iostream>

#include "config.hpp"
#include "daemon.hpp"
#include "log.hpp"
#include "object_load.hpp"
#include "status.hpp"

namespace {

// Loads the config named by --config, or the embedded default; logs a bad one.
bool read_config(const std::string& path, agent::config& cfg) {
    agent::config_error err;
    const bool ok =
        path.empty() ? agent::default_config(cfg, err) : agent::load_config_file(path, cfg, err);
    if (!ok) {
        agent::log_error("bad config", {{"error", err.message}});
        return false;
    }
    agent::log_setup(cfg.log_level_, cfg.log_format_, std::getenv("JOURNAL_STREAM") == nullptr);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "ebpf-agent: runs the host's cgroup BPF programs (tcp_rto, tcp_tos, tclass_lock, "
        "net_stat) and exports their statistics"};
    app.require_subcommand(1);
    std::string config_path;
    auto add_config = [&](CLI::App* cmd) {
        cmd->add_option("-c,--config", config_path,
                        "config file (TOML); without it, the embedded default");
    };
    std::string output = "text";
    auto add_output = [&](CLI::App* cmd) {
        cmd->add_option("-o,--output", output, "text or json")
            ->check(CLI::IsMember({"text", "json"}));
    };

    agent::run_options run_opts;
    std::vector<std::string> object_args;
    auto add_objects = [&](CLI::App* cmd) {
        cmd->add_option("--object", object_args,
                        "NAME=FILE: load object NAME (tcp_rto, tcp_tos, tclass_lock, net_stat) "
                        "from FILE instead of the embedded one (for developers)");
    };
    auto* run = app.add_subcommand("run", "run the daemon in the foreground");
    add_config(run);
    add_objects(run);
    auto* check = app.add_subcommand("check-config", "validate a config file");
    add_config(check);
    add_objects(check);
    bool check_load_flag = false;
    check->add_flag("--load", check_load_flag,
                    "also load the programs through the verifier (nothing is attached)");
    auto* status = app.add_subcommand("status", "programs, attach points, ids, owned or foreign");
    add_config(status);
    add_output(status);
    auto* stats = app.add_subcommand("stats", "per-cgroup and per-datacenter traffic counters");
    add_config(stats);
    add_output(stats);
    auto* reload = app.add_subcommand("reload", "make the running daemon re-read its config");
    add_config(reload);
    int reload_timeout = 10000;
    reload->add_option("--timeout-ms", reload_timeout, "how long to wait for the result");
    auto* cleanup = app.add_subcommand(
        "cleanup", "remove everything the agent owns (pinned links, maps); idempotent");
    add_config(cleanup);
    bool dry_run = false;
    cleanup->add_flag("--dry-run", dry_run, "only say what would be removed");

    auto* object = app.add_subcommand("object", "work with BPF object files");
    object->require_subcommand(1);
    agent::object_load_options load;
    auto* load_cmd = object->add_subcommand(
        "load",
        "open and load objects; print one JSON line per file (file, opened, programs, maps)");
    load_cmd->add_option("files", load.files, "BPF ELF objects")
        ->required()
        ->check(CLI::ExistingFile);
    load_cmd
        ->add_option("--btf", load.btf_path, "target BTF for CO-RE (raw BTF or an ELF with .BTF)")
        ->check(CLI::ExistingFile);
    load_cmd->add_flag("--no-load", load.no_load,
                       "parse and relocate only; touch no kernel object");
    load_cmd->add_option("--pin-path", load.pin_path, "where maps pinned by name live")
        ->capture_default_str();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : agent::exit_usage;
    }
    if (*load_cmd) {
        return agent::object_load(load, std::cout);
    }
    for (const auto& a : object_args) {
        const auto eq = a.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == a.size()) {
            std::cerr << "--object " << a << ": expected NAME=FILE\n";
            return agent::exit_usage;
        }
        run_opts.object_files[a.substr(0, eq)] = a.substr(eq + 1);
    }
    run_opts.config_path = config_path;
    if (*run) {
        return agent::run_daemon(run_opts);
    }
    agent::config cfg;
    if (!read_config(config_path, cfg)) {
        return agent::exit_config;
    }
    const auto format = output == "json" ? agent::output_format::json : agent::output_format::text;
    if (*check) {
        if (check_load_flag) {
            std::string error;
            if (!agent::check_load(cfg, run_opts, error)) {
                agent::log_failure("the programs do not load", error);
                return agent::exit_failure;
            }
        }
        std::cout << cfg.source << ": ok (hash " << cfg.hash() << ")"
                  << (check_load_flag ? ", programs load" : "") << "\n";
        return agent::exit_ok;
    }
    if (*status) {
        return agent::run_status(cfg, format, std::cout);
    }
    if (*stats) {
        return agent::run_stats(cfg, format, std::cout);
    }
    if (*reload) {
        return agent::run_reload(cfg, reload_timeout);
    }
    if (*cleanup) {
        return agent::run_cleanup(cfg, dry_run);
    }
    return agent::exit_usage;
}
