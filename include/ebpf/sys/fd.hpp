// ebpf::fd: an owning file descriptor, close-on-exec and never 0-2 (layer: sys).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "ebpf/base/result.hpp"

namespace ebpf {

// Owns one file descriptor and closes it on destruction. Moves, never copies; dup() copies.
class fd {
  public:
    constexpr fd() = default;
    // Takes ownership of `raw` (which may be -1 for "none").
    constexpr explicit fd(int raw) : raw_(raw) {}
    fd(const fd&) = delete;
    fd& operator=(const fd&) = delete;
    fd(fd&& o) noexcept : raw_(std::exchange(o.raw_, -1)) {}
    fd& operator=(fd&& o) noexcept {
        if (this != &o) {
            reset(std::exchange(o.raw_, -1));
        }
        return *this;
    }
    ~fd() { reset(); }

    // Returns the raw descriptor (still owned), -1 when empty.
    int get() const { return raw_; }
    bool valid() const { return raw_ >= 0; }
    explicit operator bool() const { return raw_ >= 0; }

    // Gives up ownership and returns the raw descriptor.
    [[nodiscard]] int release() { return std::exchange(raw_, -1); }

    // Closes the current descriptor (if any) and takes `raw`.
    void reset(int raw = -1) {
        if (raw_ >= 0) {
            ::close(raw_);
        }
        raw_ = raw;
    }

    // Duplicates the descriptor (close-on-exec, >= 3).
    result<fd> dup() const { return duplicate(raw_); }

    // Returns an owned duplicate (close-on-exec, >= 3) of a descriptor owned elsewhere.
    static result<fd> duplicate(int raw) {
        int n = ::fcntl(raw, F_DUPFD_CLOEXEC, 3);
        if (n < 0) {
            return errno_error("dup");
        }
        return fd(n);
    }

    // Takes ownership of `raw`, moving it to a number >= 3 if it landed on stdin/out/err: a BPF
    // object there would be closed or written to by code that assumes those are the terminal.
    static result<fd> adopt(int raw) {
        if (raw >= 3 || raw < 0) {
            return fd(raw);
        }
        int n = ::fcntl(raw, F_DUPFD_CLOEXEC, 3);
        int saved = errno;
        ::close(raw);
        if (n < 0) {
            return error(saved, "dup", "moving a new descriptor away from 0-2");
        }
        return fd(n);
    }

  private:
    int raw_ = -1;
};

}  // namespace ebpf
