// ebpf::error and ebpf::result<T>: the library's error model (layer: base, standard library only).
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace ebpf {

// The error of a failed operation: errno, the failing operation, a context chain and, for
// program and BTF loads, the kernel's verifier log. It is one pointer wide so that a result on
// the success path costs nothing but a null check.
class error {
  public:
    // Makes an error for operation `op` that failed with `errno_value` (0 when no errno applies).
    error(int errno_value, std::string op, std::string detail = {})
        : p_(new payload{errno_value, std::move(op), std::move(detail), {}, {}, false}) {}

    error(const error& o) : p_(o.p_ ? new payload(*o.p_) : nullptr) {}
    error(error&&) noexcept = default;
    error& operator=(const error& o) {
        if (this != &o) {
            p_.reset(o.p_ ? new payload(*o.p_) : nullptr);
        }
        return *this;
    }
    error& operator=(error&&) noexcept = default;

    // Returns the errno the kernel (or the library, for its own checks) reported; 0 if none.
    int code() const { return p_->errno_value; }
    // Returns the operation that failed, e.g. "BPF_MAP_CREATE" or "open /sys/kernel/btf/vmlinux".
    const std::string& op() const { return p_->op; }
    // Returns the free-text detail of the failure ("key_size 4, expected 8"), possibly empty.
    const std::string& detail() const { return p_->detail; }
    // Returns the context chain, outermost first ("program tcp_rto", "load").
    const std::vector<std::string>& contexts() const { return p_->contexts; }
    // Returns the verifier (or BTF) log the kernel wrote, empty when there was none.
    const std::string& log() const { return p_->log; }
    // Returns true when the log did not fit and holds only its tail.
    bool log_truncated() const { return p_->log_truncated; }

    // Adds an outer context; used only on the error path, so it may allocate.
    error& context(std::string what) & {
        p_->contexts.insert(p_->contexts.begin(), std::move(what));
        return *this;
    }
    error&& context(std::string what) && { return std::move(context(std::move(what))); }

    // Attaches the kernel's log to the error.
    error& with_log(std::string log, bool truncated) & {
        p_->log = std::move(log);
        p_->log_truncated = truncated;
        return *this;
    }
    error&& with_log(std::string log, bool truncated) && {
        return std::move(with_log(std::move(log), truncated));
    }

    // Renders "ctx: ctx: op: detail: strerror (errno N)", without the log.
    std::string message() const {
        std::string s;
        for (const auto& c : p_->contexts) {
            s += c;
            s += ": ";
        }
        s += p_->op;
        if (!p_->detail.empty()) {
            s += ": ";
            s += p_->detail;
        }
        if (p_->errno_value != 0) {
            s += ": ";
            s += errno_name(p_->errno_value);
        }
        return s;
    }

    // Renders message() followed by the verifier log, marking a truncated log.
    std::string full_message() const {
        std::string s = message();
        if (!p_->log.empty()) {
            s += "\nverifier log";
            s += p_->log_truncated ? " (truncated: it did not fit in the largest buffer tried):\n"
                                   : ":\n";
            s += p_->log;
        }
        return s;
    }

  private:
    static std::string errno_name(int e) {
        if (e == 524) {
            // The kernel's internal ENOTSUPP leaks to user space from BPF commands.
            return "Not supported by the kernel (ENOTSUPP, errno 524)";
        }
        char buf[128];
        // GNU strerror_r returns a pointer that may or may not be buf.
        const char* text = strerror_r(e, buf, sizeof buf);
        std::string s = text;
        s += " (errno ";
        s += std::to_string(e);
        s += ")";
        return s;
    }

    struct payload {
        int errno_value;
        std::string op;
        std::string detail;
        std::vector<std::string> contexts;
        std::string log;
        bool log_truncated;
    };
    std::unique_ptr<payload> p_;
};

namespace detail {
[[noreturn]] inline void die_bad_access(const error* e) {
    std::fprintf(stderr, "ebpf: value() of a failed result: %s\n",
                 e ? e->full_message().c_str() : "(no error)");
    std::abort();
}
[[noreturn]] inline void die_no_error() {
    std::fprintf(stderr, "ebpf: error() of a successful result\n");
    std::abort();
}
}  // namespace detail

// Either a T or an error, shaped like std::expected<T, error>. Misuse (value() of an error,
// error() of a value) aborts with a message instead of being undefined.
template <class T>
class [[nodiscard]] result {
    static_assert(!std::is_reference_v<T>, "result<T&> is not supported");
    static_assert(!std::is_same_v<std::remove_cv_t<T>, ebpf::error>, "result<error> is ambiguous");

  public:
    using value_type = T;

    template <class U = T,
              std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                   !std::is_same_v<std::remove_cvref_t<U>, result> &&
                                   !std::is_same_v<std::remove_cvref_t<U>, ebpf::error>,
                               int> = 0>
    result(U&& v) : ok_(true) {
        ::new (&v_) T(std::forward<U>(v));
    }
    result(ebpf::error e) : ok_(false) { ::new (&e_) ebpf::error(std::move(e)); }

    result(const result& o) : ok_(o.ok_) {
        if (ok_) {
            ::new (&v_) T(o.v_);
        } else {
            ::new (&e_) ebpf::error(o.e_);
        }
    }
    result(result&& o) noexcept(std::is_nothrow_move_constructible_v<T>) : ok_(o.ok_) {
        if (ok_) {
            ::new (&v_) T(std::move(o.v_));
        } else {
            ::new (&e_) ebpf::error(std::move(o.e_));
        }
    }
    result& operator=(result o) {
        destroy();
        ok_ = o.ok_;
        if (ok_) {
            ::new (&v_) T(std::move(o.v_));
        } else {
            ::new (&e_) ebpf::error(std::move(o.e_));
        }
        return *this;
    }
    ~result() { destroy(); }

    bool has_value() const { return ok_; }
    explicit operator bool() const { return ok_; }

    T& value() & {
        if (!ok_) [[unlikely]] {
            detail::die_bad_access(&e_);
        }
        return v_;
    }
    const T& value() const& {
        if (!ok_) [[unlikely]] {
            detail::die_bad_access(&e_);
        }
        return v_;
    }
    T&& value() && {
        if (!ok_) [[unlikely]] {
            detail::die_bad_access(&e_);
        }
        return std::move(v_);
    }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    template <class U>
    T value_or(U&& fallback) const& {
        return ok_ ? v_ : static_cast<T>(std::forward<U>(fallback));
    }

    ebpf::error& error() & {
        if (ok_) [[unlikely]] {
            detail::die_no_error();
        }
        return e_;
    }
    const ebpf::error& error() const& {
        if (ok_) [[unlikely]] {
            detail::die_no_error();
        }
        return e_;
    }
    ebpf::error&& error() && {
        if (ok_) [[unlikely]] {
            detail::die_no_error();
        }
        return std::move(e_);
    }

  private:
    void destroy() {
        if (ok_) {
            v_.~T();
        } else {
            e_.ebpf::error::~error();
        }
    }

    union {
        T v_;
        ebpf::error e_;
    };
    bool ok_;
};

// Success or an error. On success it holds a null pointer and nothing else.
template <>
class [[nodiscard]] result<void> {
  public:
    using value_type = void;

    result() = default;
    result(ebpf::error e) : e_(std::make_unique<ebpf::error>(std::move(e))) {}
    result(const result& o) : e_(o.e_ ? std::make_unique<ebpf::error>(*o.e_) : nullptr) {}
    result(result&&) noexcept = default;
    result& operator=(const result& o) {
        if (this != &o) {
            e_ = o.e_ ? std::make_unique<ebpf::error>(*o.e_) : nullptr;
        }
        return *this;
    }
    result& operator=(result&&) noexcept = default;

    bool has_value() const { return !e_; }
    explicit operator bool() const { return !e_; }
    void value() const {
        if (e_) [[unlikely]] {
            detail::die_bad_access(e_.get());
        }
    }
    ebpf::error& error() & {
        if (!e_) [[unlikely]] {
            detail::die_no_error();
        }
        return *e_;
    }
    const ebpf::error& error() const& {
        if (!e_) [[unlikely]] {
            detail::die_no_error();
        }
        return *e_;
    }
    ebpf::error&& error() && {
        if (!e_) [[unlikely]] {
            detail::die_no_error();
        }
        return std::move(*e_);
    }

  private:
    std::unique_ptr<ebpf::error> e_;
};

// Makes the error for a failed operation from the current errno.
inline error errno_error(std::string op, std::string detail = {}) {
    return error(errno, std::move(op), std::move(detail));
}

}  // namespace ebpf

// Evaluates `expr` (a result); on error returns it from the enclosing function, with `ctx`
// (a std::string expression evaluated only on the error path) added as context.
#define EBPF_TRY_CTX(expr, ctx)                                 \
    do {                                                        \
        auto&& ebpf_try_r_ = (expr);                            \
        if (!ebpf_try_r_) [[unlikely]] {                        \
            return std::move(ebpf_try_r_).error().context(ctx); \
        }                                                       \
    } while (0)

// Evaluates `expr` (a result); on error returns the error from the enclosing function.
#define EBPF_TRY(expr)                             \
    do {                                           \
        auto&& ebpf_try_r_ = (expr);               \
        if (!ebpf_try_r_) [[unlikely]] {           \
            return std::move(ebpf_try_r_).error(); \
        }                                          \
    } while (0)
