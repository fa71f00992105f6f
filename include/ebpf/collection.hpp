// ebpf::collection: the live maps and programs of a collection_spec, created and loaded into
// the running kernel (layer: objects).
#pragma once

#include <linux/bpf.h>
#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ebpf/base/result.hpp"
#include "ebpf/btf/btf.hpp"
#include "ebpf/btf/builder.hpp"
#include "ebpf/btf/sanitize.hpp"
#include "ebpf/core/relocate.hpp"
#include "ebpf/kconfig.hpp"
#include "ebpf/kernel_btf.hpp"
#include "ebpf/map.hpp"
#include "ebpf/program.hpp"
#include "ebpf/spec/collection_spec.hpp"
#include "ebpf/sys/bpf.hpp"

namespace ebpf {

struct collection_options {
    // Where maps marked for pinning by name are pinned and looked for.
    std::string pin_path = "/sys/fs/bpf";
    // The BTF CO-RE relocations are resolved against; nullptr: the running kernel's.
    const btf::spec* target_btf = nullptr;
    // Kernel config values for .kconfig externs; nullopt: read the running kernel's.
    std::optional<kconfig_values> kconfig = std::nullopt;
    sys::log_options log = {};
    // Load the programs (false: create maps only).
    bool load_programs = true;
    // Keep going when a program fails: the collection holds the others and the failures.
    bool allow_partial = false;
    // Existing maps to use instead of creating the spec's map of the same name (e.g. counters
    // that must continue across a reload). Each must match the spec (type, sizes, max_entries,
    // flags), else load fails naming the difference. The collection holds its own reference.
    std::map<std::string, const ebpf::map*> replace_maps = {};
};

// A map or program that failed, with why.
struct object_failure {
    std::string name;
    error why;
};

class collection {
  public:
    collection() = default;
    collection(collection&&) noexcept = default;
    collection& operator=(collection&&) noexcept = default;

    // Creates the spec's maps and loads its programs (those marked autoload).
    static result<collection> load(const collection_spec& spec, const collection_options& o = {});

    ebpf::map* map(std::string_view name) {
        auto it = maps_.find(std::string(name));
        return it == maps_.end() ? nullptr : &it->second;
    }
    ebpf::program* program(std::string_view name) {
        auto it = programs_.find(std::string(name));
        return it == programs_.end() ? nullptr : &it->second;
    }
    const std::map<std::string, ebpf::map>& maps() const { return maps_; }
    const std::map<std::string, ebpf::program>& programs() const { return programs_; }
    // Programs that failed to load, and maps that could not be created (only with
    // allow_partial; otherwise the first failure is load's error).
    const std::vector<object_failure>& failures() const { return failures_; }
    const std::vector<object_failure>& map_failures() const { return map_failures_; }
    // Notes on what the loader had to work around (e.g. BTF the kernel refused).
    const std::vector<std::string>& notes() const { return notes_; }

  private:
    friend class detail_loader;
    std::map<std::string, ebpf::map> maps_;
    std::map<std::string, ebpf::program> programs_;
    std::vector<object_failure> failures_;
    std::vector<object_failure> map_failures_;
    std::vector<std::string> notes_;
    fd btf_fd_;
};

namespace detail {

// Which BTF kinds the kernel takes, probed once by loading a tiny BTF of each.
inline const btf::kernel_support& probe_btf_support() {
    static const btf::kernel_support k = [] {
        auto accepts = [](auto add) {
            btf::builder b;
            add(b);
            auto bytes = b.bytes();
            sys::btf_load_attr attr{};
            attr.btf = sys::ptr(bytes.data());
            attr.btf_size = uint32_t(bytes.size());
            sys::log_options quiet{.level = 0, .initial_size = 128, .max_size = 128};
            return bool(sys::btf_load(attr, quiet));
        };
        btf::kernel_support s;
        s.datasec = accepts([](btf::builder& b) {
            uint32_t i = b.add_int("int", 4, BTF_INT_SIGNED);
            uint32_t v = b.add_var("x", i);
            b.add_datasec(".data", 4, {{v, 0, 4}});
        });
        s.float_kind = accepts([](btf::builder& b) { b.add_float("float", 4); });
        s.decl_tag = accepts([](btf::builder& b) {
            uint32_t i = b.add_int("int", 4, BTF_INT_SIGNED);
            uint32_t v = b.add_var("x", i);
            b.add_decl_tag("tag", v);
        });
        s.type_tag = accepts([](btf::builder& b) {
            uint32_t i = b.add_int("int", 4, BTF_INT_SIGNED);
            b.add_ptr(b.add_type_tag("tag", i));
        });
        s.enum64 = accepts([](btf::builder& b) { b.add_enum64("e", 8, {{"A", 1}}); });
        s.func_global = accepts([](btf::builder& b) {
            uint32_t i = b.add_int("int", 4, BTF_INT_SIGNED);
            uint32_t p = b.add_func_proto(i, {});
            b.add_func("f", p, BTF_FUNC_GLOBAL);
        });
        return s;
    }();
    return k;
}

// Finds the kernel BTF id a tracing, LSM or iterator program attaches to.
inline result<uint32_t> attach_btf_id(const program_spec& p, const btf::spec& kernel) {
    std::string name;
    uint32_t kind = BTF_KIND_FUNC;
    switch (p.expected_attach_type) {
        case BPF_TRACE_RAW_TP:
            name = "btf_trace_" + p.attach_to;
            kind = BTF_KIND_TYPEDEF;
            break;
        case BPF_LSM_MAC:
        case BPF_LSM_CGROUP:
            name = "bpf_lsm_" + p.attach_to;
            break;
        case BPF_TRACE_ITER:
            name = "bpf_iter_" + p.attach_to;
            break;
        default:
            name = p.attach_to;
    }
    auto ids = kernel.find(name, kind);
    if (ids.empty()) {
        return error(ENOENT, "find attach target " + name, "not in the kernel's BTF");
    }
    return ids[0];
}

}  // namespace detail

// The loading steps, kept apart from the collection's public face.
class detail_loader {
  public:
    detail_loader(const collection_spec& s, const collection_options& o) : s_(s), o_(o) {}

    result<collection> run() {
        EBPF_TRY(load_btf());
        EBPF_TRY(create_maps());
        if (o_.load_programs) {
            EBPF_TRY(load_programs());
            EBPF_TRY(init_slots());
        }
        return std::move(c_);
    }

  private:
    result<void> load_btf() {
        if (!s_.btf) {
            return {};
        }
        std::map<std::string, btf::extern_layout> kconfig;
        uint32_t kconfig_size = 0;
        for (const auto& e : s_.externs) {
            if (e.kconfig) {
                kconfig[e.name] = {e.offset, e.size};
            }
        }
        if (const map_spec* m = s_.map(".kconfig")) {
            kconfig_size = m->value_size;
        }
        auto bytes =
            btf::sanitize_for_kernel(*s_.btf, detail::probe_btf_support(), kconfig, kconfig_size);
        if (!bytes) {
            c_.notes_.push_back("BTF not loaded: " + bytes.error().message());
            return {};
        }
        sys::btf_load_attr attr{};
        attr.btf = sys::ptr(bytes->data());
        attr.btf_size = uint32_t(bytes->size());
        auto f = sys::btf_load(attr, o_.log);
        if (!f) {
            // Like libbpf: programs still load without BTF, just without func/line info.
            std::string log = f.error().log();
            c_.notes_.push_back("the kernel refused the object's BTF: " + f.error().message() +
                                (log.empty() ? "" : " (" + tail(log, 300) + ")"));
            return {};
        }
        c_.btf_fd_ = std::move(*f);
        return {};
    }

    static std::string tail(const std::string& s, size_t n) {
        return s.size() <= n ? s : "..." + s.substr(s.size() - n);
    }

    map_options options_of(const map_spec& m, int inner_fd) const {
        map_options o;
        o.type = m.type;
        o.key_size = m.key_size;
        o.value_size = m.value_size;
        o.max_entries = m.max_entries;
        o.flags = m.flags;
        o.name = m.name;
        o.inner_map_fd = inner_fd;
        o.numa_node = m.numa_node;
        o.map_extra = m.map_extra;
        // The kernel takes a value type (a key type is optional: global data has none).
        if (c_.btf_fd_ && m.btf_value_type_id) {
            o.btf_fd = uint32_t(c_.btf_fd_.get());
            o.btf_key_type_id = m.btf_key_type_id;
            o.btf_value_type_id = m.btf_value_type_id;
        }
        return o;
    }

    result<ebpf::map> create_one(const map_spec& m) {
        // Perf event arrays default to one slot per possible CPU.
        map_spec spec = m;
        if (spec.type == BPF_MAP_TYPE_PERF_EVENT_ARRAY && spec.max_entries == 0) {
            auto n = possible_cpus();
            if (!n) {
                return std::move(n).error();
            }
            spec.max_entries = *n;
        }
        // The inner template only has to exist while the outer map is created.
        ebpf::map inner;
        if (spec.inner) {
            auto in = create_one(*spec.inner);
            if (!in) {
                return std::move(in).error().context("inner map template");
            }
            inner = std::move(*in);
        }
        const map_options o = options_of(spec, spec.inner ? inner.fd() : -1);
        if (auto r = o_.replace_maps.find(spec.name); r != o_.replace_maps.end() && r->second) {
            EBPF_TRY_CTX(r->second->check(o), "replace map " + spec.name);
            auto dup = fd::duplicate(r->second->fd());
            if (!dup) {
                return std::move(dup).error().context("replace map " + spec.name);
            }
            return ebpf::map::from_fd(std::move(*dup));
        }
        if (spec.pinning == pin_by_name) {
            const std::string path = o_.pin_path + "/" + spec.name;
            struct stat st;
            if (::stat(path.c_str(), &st) == 0) {
                map_options want = o;
                auto existing = ebpf::map::from_pin(path, want);
                if (!existing) {
                    return std::move(existing).error().context("reuse pinned map " + spec.name);
                }
                return existing;
            }
        }
        auto created = ebpf::map::create(o);
        if (!created && o.btf_fd) {
            // Some map types refuse BTF for their key or value: create without it.
            map_options plain = o;
            plain.btf_fd = plain.btf_key_type_id = plain.btf_value_type_id = 0;
            auto retry = ebpf::map::create(plain);
            if (retry) {
                c_.notes_.push_back("map " + spec.name +
                                    " created without BTF: " + created.error().message());
                created = std::move(retry);
            }
        }
        if (!created) {
            return created;
        }
        if (spec.pinning == pin_by_name) {
            EBPF_TRY(created->pin(o_.pin_path + "/" + spec.name));
        }
        return created;
    }

    result<void> create_maps() {
        for (const auto& m : s_.maps) {
            auto created = create_one(m);
            result<void> filled;
            if (created && m.data != data_kind::none) {
                filled = fill_data(m, *created);
            }
            if (!created || !filled) {
                error e = created ? std::move(filled).error() : std::move(created).error();
                e.context("map " + m.name);
                if (!o_.allow_partial) {
                    return e;
                }
                c_.map_failures_.push_back({m.name, std::move(e)});
                continue;
            }
            c_.maps_.emplace(m.name, std::move(*created));
        }
        return {};
    }

    result<void> fill_data(const map_spec& m, ebpf::map& live) {
        std::vector<std::byte> value(m.value_size);
        if (m.data == data_kind::kconfig) {
            EBPF_TRY(fill_kconfig(value));
        } else if (!m.contents.empty()) {
            std::copy(m.contents.begin(), m.contents.end(), value.begin());
        }
        const uint32_t key = 0;
        EBPF_TRY(live.update(&key, value.data()));
        if (m.data == data_kind::rodata || m.data == data_kind::kconfig) {
            EBPF_TRY(live.freeze());
        }
        return {};
    }

    result<void> fill_kconfig(std::vector<std::byte>& value) {
        const kconfig_values* kc = nullptr;
        kconfig_values own;
        if (o_.kconfig) {
            kc = &*o_.kconfig;
        } else {
            auto read = read_kconfig();
            if (!read) {
                // Without a config file only weak externs can be satisfied (with 0).
                for (const auto& e : s_.externs) {
                    if (e.kconfig && !e.weak && e.name != "LINUX_KERNEL_VERSION") {
                        return std::move(read).error().context("extern " + e.name);
                    }
                }
            } else {
                own = std::move(*read);
            }
            kc = &own;
        }
        for (const auto& e : s_.externs) {
            if (!e.kconfig) {
                continue;
            }
            auto ctx = "extern " + e.name;
            auto v = kconfig_value(*kc, e, *s_.btf);
            if (!v) {
                return std::move(v).error().context(ctx);
            }
            if (v->size() != e.size || size_t(e.offset) + e.size > value.size()) {
                return error(EINVAL, ctx, "value does not fit its declaration");
            }
            std::copy(v->begin(), v->end(), value.begin() + e.offset);
        }
        return {};
    }

    result<void> load_programs() {
        const btf::spec* target = o_.target_btf;
        bool need_kernel_btf = false;
        for (const auto& p : s_.programs) {
            need_kernel_btf |= p.autoload && (!p.core_relos.empty() || needs_attach_btf(p));
        }
        const btf::spec* kernel = nullptr;
        if (need_kernel_btf) {
            auto k = kernel_btf();
            if (k) {
                kernel = *k;
            } else if (!target) {
                return std::move(k).error();
            }
        }
        if (!target) {
            target = kernel;
        }
        // Against the kernel's BTF, the process-wide candidate index; else one for this load.
        std::optional<core::candidate_cache> own_cache;
        const core::candidate_cache* cache = nullptr;
        if (target && target == kernel) {
            auto shared = kernel_candidates();
            if (!shared) {
                return std::move(shared).error();
            }
            cache = *shared;
        } else if (target) {
            own_cache.emplace(*target);
            cache = &*own_cache;
        }
        for (const auto& p : s_.programs) {
            if (!p.autoload) {
                continue;
            }
            auto loaded = load_one(p, target, kernel, cache);
            if (!loaded) {
                auto e = std::move(loaded).error().context("program " + p.name);
                if (!o_.allow_partial) {
                    return e;
                }
                c_.failures_.push_back({p.name, std::move(e)});
                continue;
            }
            c_.programs_.emplace(p.name, std::move(*loaded));
        }
        return {};
    }

    // The candidate indexes of the kernel modules that have BTF (/sys/kernel/btf/*), made on
    // first use by this load; modules whose BTF cannot be read are left out.
    const std::vector<std::pair<std::string, std::unique_ptr<core::candidate_cache>>>&
    module_caches() {
        if (!modules_scanned_) {
            modules_scanned_ = true;
            for (const auto& name : kernel_modules_with_btf()) {
                auto m = module_btf(name);
                if (m) {
                    modules_.emplace_back(name, std::make_unique<core::candidate_cache>(**m));
                }
            }
        }
        return modules_;
    }

    static bool needs_attach_btf(const program_spec& p) {
        return p.type == BPF_PROG_TYPE_TRACING || p.type == BPF_PROG_TYPE_LSM;
    }

    result<ebpf::program> load_one(const program_spec& p, const btf::spec* target,
                                   const btf::spec* kernel, const core::candidate_cache* cache) {
        if (p.type == BPF_PROG_TYPE_UNSPEC) {
            return error(EINVAL, "section " + p.section, "no program type for this section name");
        }
        std::vector<bpf_insn> insns = p.insns;
        std::vector<std::string> poisoned;
        for (size_t i = 0; i < p.core_relos.size(); ++i) {
            const auto& r = p.core_relos[i];
            if (!target || !cache) {
                return error(ENOENT, "CO-RE relocation #" + std::to_string(i),
                             "no target BTF (the kernel has none; pass one)");
            }
            // Keep the instruction(s): a relocation vmlinux cannot satisfy is tried against
            // the kernel modules' BTF, from the original instruction.
            const bool wide = r.insn_off + 1 < insns.size();
            const bpf_insn saved[2] = {insns[r.insn_off],
                                       wide ? insns[r.insn_off + 1] : bpf_insn{}};
            auto out = core::apply(insns, r.insn_off, r, *s_.btf, *target, *cache);
            if (!out) {
                return std::move(out).error().context("CO-RE relocation #" + std::to_string(i));
            }
            if (out->poisoned && target == kernel) {
                for (const auto& [name, mod_cache] : module_caches()) {
                    std::vector<bpf_insn> trial = insns;
                    trial[r.insn_off] = saved[0];
                    if (wide) {
                        trial[r.insn_off + 1] = saved[1];
                    }
                    auto m =
                        core::apply(trial, r.insn_off, r, *s_.btf, mod_cache->target(), *mod_cache);
                    if (m && !m->poisoned) {
                        insns = std::move(trial);
                        out = std::move(m);
                        break;
                    }
                }
            }
            if (out->poisoned) {
                poisoned.push_back("#" + std::to_string(i) + " at insn " +
                                   std::to_string(r.insn_off) + ": " + out->why);
            }
        }
        EBPF_TRY(resolve_refs(p, insns, kernel));

        sys::prog_load_attr attr{};
        attr.prog_type = p.type;
        attr.expected_attach_type = p.expected_attach_type;
        attr.insns = sys::ptr(insns.data());
        attr.insn_cnt = uint32_t(insns.size());
        const std::string license = p.license.empty() ? std::string("GPL") : p.license;
        attr.license = sys::ptr(license.c_str());
        attr.kern_version = p.kern_version;
        attr.prog_flags = p.sleepable ? BPF_F_SLEEPABLE : 0;
        sys::set_name(attr.prog_name, p.name);
        if (c_.btf_fd_ && !p.func_info.empty()) {
            attr.prog_btf_fd = uint32_t(c_.btf_fd_.get());
            attr.func_info_rec_size = sizeof(btf::func_info);
            attr.func_info = sys::ptr(p.func_info.data());
            attr.func_info_cnt = uint32_t(p.func_info.size());
            if (!p.line_info.empty()) {
                attr.line_info_rec_size = sizeof(btf::line_info);
                attr.line_info = sys::ptr(p.line_info.data());
                attr.line_info_cnt = uint32_t(p.line_info.size());
            }
        }
        if (needs_attach_btf(p)) {
            if (!kernel) {
                return error(ENOENT, "attach target " + p.attach_to, "the kernel has no BTF");
            }
            auto id = detail::attach_btf_id(p, *kernel);
            if (!id) {
                return std::move(id).error();
            }
            attr.attach_btf_id = *id;
        }
        if (p.type == BPF_PROG_TYPE_EXT) {
            return error(EOPNOTSUPP, "load", "freplace programs need the program they replace");
        }
        if (p.type == BPF_PROG_TYPE_STRUCT_OPS) {
            return error(EOPNOTSUPP, "load",
                         "struct_ops programs load with their struct_ops map, which this loader "
                         "does not create yet");
        }
        auto f = sys::prog_load(attr, o_.log);
        if (!f) {
            auto e = std::move(f).error().context("load");
            if (!poisoned.empty()) {
                std::string why = "CO-RE relocations without a target:";
                for (const auto& s : poisoned) {
                    why += " " + s + ";";
                }
                e.context(why);
            }
            return e;
        }
        return ebpf::program::from_fd(std::move(*f));
    }

    result<void> resolve_refs(const program_spec& p, std::vector<bpf_insn>& insns,
                              const btf::spec* kernel) {
        for (const auto& r : p.refs) {
            bpf_insn& in = insns[r.insn];
            auto ctx = [&] {
                return "instruction " + std::to_string(r.insn) + " (" + r.target + ")";
            };
            switch (r.what) {
                case insn_ref::kind::map_fd:
                case insn_ref::kind::map_value:
                case insn_ref::kind::kconfig: {
                    const std::string name =
                        r.what == insn_ref::kind::kconfig ? std::string(".kconfig") : r.target;
                    ebpf::map* m = c_.map(name);
                    if (!m) {
                        return error(ENOENT, ctx(), "no map " + name);
                    }
                    uint32_t off = r.offset;
                    if (r.what == insn_ref::kind::kconfig) {
                        for (const auto& e : s_.externs) {
                            if (e.name == r.target) {
                                off = e.offset;
                            }
                        }
                    }
                    in.src_reg =
                        r.what == insn_ref::kind::map_fd ? BPF_PSEUDO_MAP_FD : BPF_PSEUDO_MAP_VALUE;
                    in.imm = m->fd();
                    insns[r.insn + 1].imm = r.what == insn_ref::kind::map_fd ? 0 : int32_t(off);
                    break;
                }
                case insn_ref::kind::ksym:
                case insn_ref::kind::kfunc: {
                    if (!kernel) {
                        auto k = kernel_btf();
                        if (!k) {
                            return std::move(k).error().context(ctx());
                        }
                        kernel = *k;
                    }
                    const bool func = r.what == insn_ref::kind::kfunc;
                    auto ids = kernel->find(r.target, func ? BTF_KIND_FUNC : BTF_KIND_VAR);
                    if (ids.empty()) {
                        bool weak = false;
                        for (const auto& e : s_.externs) {
                            weak |= e.name == r.target && e.weak;
                        }
                        if (!weak) {
                            return error(ENOENT, ctx(),
                                         std::string(func ? "kfunc" : "ksym") +
                                             " not found in the kernel's BTF");
                        }
                        // A weak extern the kernel lacks: a null address, or a call the
                        // program must guard (bpf_ksym_exists).
                        if (func) {
                            in.src_reg = BPF_PSEUDO_KFUNC_CALL;
                            in.imm = 0;
                        } else {
                            in.src_reg = 0;
                            in.imm = 0;
                            insns[r.insn + 1].imm = 0;
                        }
                        break;
                    }
                    if (func) {
                        in.src_reg = BPF_PSEUDO_KFUNC_CALL;
                        in.imm = int32_t(ids[0]);
                        in.off = 0;
                    } else {
                        in.src_reg = BPF_PSEUDO_BTF_ID;
                        in.imm = int32_t(ids[0]);
                        insns[r.insn + 1].imm = 0;
                    }
                    break;
                }
            }
        }
        return {};
    }

    // Static values of program arrays and maps of maps, once everything exists.
    result<void> init_slots() {
        for (const auto& m : s_.maps) {
            for (const auto& [slot, name] : m.init) {
                ebpf::map* live = c_.map(m.name);
                int value_fd = -1;
                if (m.type == BPF_MAP_TYPE_PROG_ARRAY) {
                    ebpf::program* prog = c_.program(name);
                    if (!prog || !live) {
                        continue;  // not loaded (autoload off or failed): the slot stays empty
                    }
                    value_fd = prog->fd();
                } else {
                    ebpf::map* inner = c_.map(name);
                    if (!inner || !live) {
                        if (o_.allow_partial) {
                            continue;  // already reported as a map failure
                        }
                        return error(ENOENT, "map " + m.name,
                                     "slot " + std::to_string(slot) + ": no map " + name);
                    }
                    value_fd = inner->fd();
                }
                const uint32_t v = uint32_t(value_fd);
                EBPF_TRY_CTX(live->update(&slot, &v),
                             "map " + m.name + ": slot " + std::to_string(slot) + " = " + name);
            }
        }
        return {};
    }

    const collection_spec& s_;
    const collection_options& o_;
    collection c_;
    bool modules_scanned_ = false;
    std::vector<std::pair<std::string, std::unique_ptr<core::candidate_cache>>> modules_;
};

inline result<collection> collection::load(const collection_spec& spec,
                                           const collection_options& o) {
    return detail_loader(spec, o).run();
}

}  // namespace ebpf
