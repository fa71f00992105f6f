// `ebpf-agent object load`: one JSON line per object file.
#include "object_load.hpp"

#include <ebpf/collection.hpp>
#include <ebpf/core/relocate.hpp>
#include <ebpf/spec/collection_spec.hpp>
#include <ebpf/spec/type_names.hpp>

#include <nlohmann/json.hpp>

#include <optional>

namespace agent {
namespace {

using json = nlohmann::ordered_json;

std::string log_tail(const std::string& log, size_t lines) {
    size_t pos = log.size();
    while (pos > 0 && (log[pos - 1] == '\n' || log[pos - 1] == '\0')) {
        --pos;
    }
    size_t start = pos;
    for (size_t n = 0; start > 0 && n < lines; --start) {
        if (log[start - 1] == '\n' && ++n == lines) {
            break;
        }
    }
    return log.substr(start, pos - start);
}

json error_json(const ebpf::error& e) {
    json j = e.message();
    return j;
}

// Relocates a program's CO-RE records against `target` without loading anything.
std::optional<ebpf::error> relocate_only(const ebpf::program_spec& p, const ebpf::btf::spec& local,
                                         const ebpf::btf::spec* target,
                                         ebpf::core::candidate_cache* cache) {
    std::vector<bpf_insn> insns = p.insns;
    for (size_t i = 0; i < p.core_relos.size(); ++i) {
        if (!target || !cache) {
            return ebpf::error(ENOENT, "CO-RE relocation #" + std::to_string(i), "no target BTF");
        }
        auto r = ebpf::core::apply(insns, p.core_relos[i].insn_off, p.core_relos[i], local, *target,
                                   *cache);
        if (!r) {
            return std::move(r).error().context("CO-RE relocation #" + std::to_string(i));
        }
    }
    return std::nullopt;
}

}  // namespace

int object_load(const object_load_options& o, std::ostream& out) {
    std::optional<ebpf::btf::spec> custom;
    if (!o.btf_path.empty()) {
        auto b = ebpf::btf_from_file(o.btf_path);
        if (!b) {
            out << json{{"btf", o.btf_path}, {"error", error_json(b.error())}}.dump() << "\n";
            return 2;
        }
        custom = std::move(*b);
    }
    int status = 0;
    for (const auto& file : o.files) {
        json j;
        j["file"] = file;
        auto spec = ebpf::collection_spec::open(file);
        if (!spec) {
            j["opened"] = false;
            j["error"] = error_json(spec.error());
            out << j.dump() << "\n";
            status = 1;
            continue;
        }
        j["opened"] = true;
        json programs = json::array();
        json maps = json::array();
        if (o.no_load) {
            const ebpf::btf::spec* target = custom ? &*custom : nullptr;
            if (!target) {
                auto k = ebpf::kernel_btf();
                target = k ? *k : nullptr;
            }
            std::optional<ebpf::core::candidate_cache> cache;
            if (target) {
                cache.emplace(*target);
            }
            for (const auto& p : spec->programs) {
                json pj{{"name", p.name},
                        {"section", p.section},
                        {"type", ebpf::prog_type_name(p.type)}};
                auto err = spec->btf
                               ? relocate_only(p, *spec->btf, target, cache ? &*cache : nullptr)
                               : std::nullopt;
                pj["relocated"] = !err;
                if (err) {
                    pj["error"] = error_json(*err);
                    status = 1;
                }
                programs.push_back(std::move(pj));
            }
            for (const auto& m : spec->maps) {
                maps.push_back({{"name", m.name}, {"type", ebpf::map_type_name(m.type)}});
            }
        } else {
            ebpf::collection_options co;
            co.pin_path = o.pin_path;
            co.target_btf = custom ? &*custom : nullptr;
            co.allow_partial = true;
            auto c = ebpf::collection::load(*spec, co);
            if (!c) {
                j["error"] = error_json(c.error());
                status = 1;
            } else {
                for (const auto& p : spec->programs) {
                    json pj{{"name", p.name},
                            {"section", p.section},
                            {"type", ebpf::prog_type_name(p.type)}};
                    if (!p.autoload) {
                        pj["loaded"] = false;
                        pj["skipped"] = "not loaded by default ('?' section)";
                    } else if (c->program(p.name)) {
                        pj["loaded"] = true;
                    } else {
                        pj["loaded"] = false;
                        status = 1;
                        for (const auto& f : c->failures()) {
                            if (f.name == p.name) {
                                pj["error"] = error_json(f.why);
                                if (!f.why.log().empty()) {
                                    pj["verifier_log_tail"] = log_tail(f.why.log(), 8);
                                }
                            }
                        }
                    }
                    programs.push_back(std::move(pj));
                }
                for (const auto& m : spec->maps) {
                    json mj{{"name", m.name}, {"type", ebpf::map_type_name(m.type)}};
                    mj["created"] = c->map(m.name) != nullptr;
                    for (const auto& f : c->map_failures()) {
                        if (f.name == m.name) {
                            mj["error"] = error_json(f.why);
                            status = 1;
                        }
                    }
                    maps.push_back(std::move(mj));
                }
                if (!c->notes().empty()) {
                    j["notes"] = c->notes();
                }
            }
        }
        j["programs"] = std::move(programs);
        j["maps"] = std::move(maps);
        out << j.dump() << "\n";
    }
    return status;
}

}  // namespace agent
