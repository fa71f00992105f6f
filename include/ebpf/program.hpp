// ebpf::program: a loaded BPF program, with test runs and kernel info (layer: objects).
#pragma once

#include <linux/bpf.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ebpf/base/result.hpp"
#include "ebpf/sys/bpf.hpp"
#include "ebpf/sys/fd.hpp"

namespace ebpf {

// What a program is loaded from.
struct program_options {
    uint32_t type = BPF_PROG_TYPE_UNSPEC;
    std::span<const bpf_insn> insns = {};
    std::string_view license = "GPL";
    std::string_view name = {};
    uint32_t expected_attach_type = 0;
    uint32_t flags = 0;  // prog_flags, e.g. BPF_F_SLEEPABLE
    uint32_t kern_version = 0;
    sys::log_options log = {};
};

// Input and output buffers of a test run; empty spans are not passed.
struct test_run_options {
    std::span<const std::byte> data_in = {};
    std::span<std::byte> data_out = {};
    std::span<const std::byte> ctx_in = {};
    std::span<std::byte> ctx_out = {};
    uint32_t repeat = 0;
    uint32_t flags = 0;
    uint32_t cpu = 0;
};

struct test_run_result {
    uint32_t retval = 0;
    uint32_t duration_ns = 0;  // average per repetition
    uint32_t data_size_out = 0;
    uint32_t ctx_size_out = 0;
};

// What the kernel says about a loaded program.
struct program_info {
    uint32_t id = 0;
    uint32_t type = 0;
    std::string name;
    std::string tag;  // 16 hex digits, as bpftool shows it
};

// A loaded program. Closing the last fd (and removing its pins and attachments) unloads it.
class program {
  public:
    program() = default;

    // Loads a program (BPF_PROG_LOAD). On rejection the error carries the verifier log; with
    // opts.log.level > 0 the log of a successful load is written to `log`.
    static result<program> load(const program_options& o, std::string* log = nullptr) {
        sys::prog_load_attr attr{};
        attr.prog_type = o.type;
        attr.insn_cnt = static_cast<uint32_t>(o.insns.size());
        attr.insns = sys::ptr(o.insns.data());
        std::string license(o.license);
        attr.license = sys::ptr(license.c_str());
        attr.kern_version = o.kern_version;
        attr.prog_flags = o.flags;
        sys::set_name(attr.prog_name, o.name);
        attr.expected_attach_type = o.expected_attach_type;
        auto f = sys::prog_load(attr, o.log, log);
        if (!f) [[unlikely]] {
            return std::move(f).error().context("program " + std::string(o.name) + ": load");
        }
        program p;
        p.fd_ = std::move(*f);
        p.type_ = o.type;
        p.name_ = std::string(o.name.substr(0, BPF_OBJ_NAME_LEN - 1));
        return p;
    }

    // Takes ownership of a program fd and reads its type and name from the kernel.
    static result<program> from_fd(ebpf::fd f) {
        program p;
        p.fd_ = std::move(f);
        auto info = p.info();
        if (!info) [[unlikely]] {
            return std::move(info).error();
        }
        p.type_ = info->type;
        p.name_ = info->name;
        return p;
    }

    // Opens the program with this id.
    static result<program> from_id(uint32_t id) {
        auto f = sys::prog_get_fd_by_id(id);
        if (!f) [[unlikely]] {
            return std::move(f).error();
        }
        return from_fd(std::move(*f));
    }

    // Opens a pinned program.
    static result<program> from_pin(const std::string& path) {
        auto f = sys::obj_get(path.c_str());
        if (!f) [[unlikely]] {
            return std::move(f).error();
        }
        return from_fd(std::move(*f));
    }

    int fd() const { return fd_.get(); }
    uint32_t type() const { return type_; }
    const std::string& name() const { return name_; }

    // Pins the program at `path` in a bpffs.
    result<void> pin(const std::string& path) const {
        EBPF_TRY_CTX(sys::obj_pin(path.c_str(), fd_.get()), "program " + name_);
        return {};
    }

    // Runs the program once (or `repeat` times) on test input (BPF_PROG_TEST_RUN; not every
    // program type supports it: sock_ops and cgroup sockopt programs do not).
    result<test_run_result> test_run(const test_run_options& o) const {
        sys::test_run_attr attr{};
        attr.prog_fd = fd_.get();
        attr.data_size_in = static_cast<uint32_t>(o.data_in.size());
        attr.data_in = o.data_in.empty() ? 0 : sys::ptr(o.data_in.data());
        attr.data_size_out = static_cast<uint32_t>(o.data_out.size());
        attr.data_out = o.data_out.empty() ? 0 : sys::ptr(o.data_out.data());
        attr.ctx_size_in = static_cast<uint32_t>(o.ctx_in.size());
        attr.ctx_in = o.ctx_in.empty() ? 0 : sys::ptr(o.ctx_in.data());
        attr.ctx_size_out = static_cast<uint32_t>(o.ctx_out.size());
        attr.ctx_out = o.ctx_out.empty() ? 0 : sys::ptr(o.ctx_out.data());
        attr.repeat = o.repeat;
        attr.flags = o.flags;
        attr.cpu = o.cpu;
        EBPF_TRY_CTX(sys::prog_test_run(attr), "program " + name_ + ": test run");
        return test_run_result{attr.retval, attr.duration, attr.data_size_out, attr.ctx_size_out};
    }

    // Reads the program's id, type, name and tag from the kernel.
    result<program_info> info() const {
        bpf_prog_info raw{};
        uint32_t len = sizeof raw;
        EBPF_TRY_CTX(sys::obj_get_info_by_fd(fd_.get(), &raw, len), "program " + name_ + " info");
        program_info out;
        out.id = raw.id;
        out.type = raw.type;
        out.name = std::string(raw.name, strnlen(raw.name, sizeof raw.name));
        static constexpr char hex[] = "0123456789abcdef";
        for (uint8_t b : raw.tag) {
            out.tag += hex[b >> 4];
            out.tag += hex[b & 15];
        }
        return out;
    }

  private:
    ebpf::fd fd_;
    uint32_t type_ = 0;
    std::string name_;
};

}  // namespace ebpf
