// ebpf-agent: the command line. For now it has one verb, `object load`, for debugging objects
// and conformance runs; the daemon arrives with its own issue.
#include <CLI/CLI.hpp>

#include <iostream>

#include "object_load.hpp"

int main(int argc, char** argv) {
    CLI::App app{"ebpf-agent: runs BPF programs on Linux hosts"};
    app.require_subcommand(1);

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
        return app.exit(e) == 0 ? 0 : 64;
    }
    if (*load_cmd) {
        return agent::object_load(load, std::cout);
    }
    return 64;
}
