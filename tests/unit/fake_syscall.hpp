// A replacement for the bpf(2) entry point that records every call and answers from a script.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "ebpf/sys/syscall.hpp"

namespace ebpf::test {

struct recorded_call {
    int cmd;
    unsigned size;
    std::vector<uint8_t> attr;  // the attr bytes as passed in

    template <class Attr>
    Attr as() const {
        Attr a{};
        std::memcpy(&a, attr.data(), std::min<size_t>(sizeof a, attr.size()));
        return a;
    }
};

// Installs itself as the bpf(2) entry point for its lifetime. `handler` sees each call (and
// may write into the attr, as the kernel would); it returns the value or -errno.
class fake_syscall {
  public:
    using handler_fn = std::function<long(int cmd, void* attr, unsigned size)>;

    explicit fake_syscall(handler_fn h) : handler_(std::move(h)) {
        current() = this;
        prev_ = sys::set_syscall(&entry);
    }
    ~fake_syscall() {
        sys::set_syscall(prev_);
        current() = nullptr;
    }
    fake_syscall(const fake_syscall&) = delete;
    fake_syscall& operator=(const fake_syscall&) = delete;

    const std::vector<recorded_call>& calls() const { return calls_; }

  private:
    static fake_syscall*& current() {
        static fake_syscall* c = nullptr;
        return c;
    }
    static long entry(int cmd, void* attr, unsigned size) {
        fake_syscall* self = current();
        auto* p = static_cast<uint8_t*>(attr);
        self->calls_.push_back({cmd, size, std::vector<uint8_t>(p, p + size)});
        return self->handler_(cmd, attr, size);
    }

    handler_fn handler_;
    sys::syscall_fn prev_ = nullptr;
    std::vector<recorded_call> calls_;
};

}  // namespace ebpf::test
