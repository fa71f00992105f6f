// The HTTP endpoint: one io_context on one thread, a session per connection (async reads and
// writes with Beast's per-operation timeouts), stopped by stopping the io_context, whose
// destruction then releases the sessions and closes their sockets.
#include "http_server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <exception>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

#include "log.hpp"

namespace agent {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr int kMaxConnections = 16;
constexpr auto kReadTimeout = std::chrono::seconds(10);
constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr uint32_t kHeaderLimit = 8 * 1024;
constexpr uint64_t kBodyLimit = 8 * 1024;

}  // namespace

struct http_server::impl {
    // Declared before the io_context: its destruction destroys the sessions, which use these.
    http_handlers handlers;
    int connections = 0;  // touched on the server's thread only
    uint16_t port = 0;
    std::thread thread;
    asio::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    asio::steady_timer retry{ioc};

    void accept();
};

namespace {

class session : public std::enable_shared_from_this<session> {
  public:
    session(tcp::socket socket, const http_handlers& handlers, int& connections)
        : stream_(std::move(socket)), handlers_(handlers), connections_(connections) {
        ++connections_;
    }
    ~session() { --connections_; }

    void read() {
        parser_.emplace();
        parser_->header_limit(kHeaderLimit);
        parser_->body_limit(kBodyLimit);
        stream_.expires_after(kReadTimeout);
        http::async_read(
            stream_, buffer_, *parser_,
            [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
    }

  private:
    void on_read(beast::error_code ec) {
        if (ec) {
            // The peer went away, timed out, or sent something unparsable: drop it.
            beast::error_code ignored;
            stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
            return;
        }
        const http::request<http::string_body>& req = parser_->get();
        res_ = {};
        res_.version(req.version());
        res_.keep_alive(req.keep_alive());
        res_.set(http::field::server, "ebpf-agent");
        respond(req);
        res_.prepare_payload();
        stream_.expires_after(kWriteTimeout);
        http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, size_t) {
            self->on_write(ec);
        });
    }

    void on_write(beast::error_code ec) {
        if (metrics_body_) {
            metrics_body_ = false;
            if (handlers_.recycle) {
                handlers_.recycle(std::move(res_.body()));
            }
        }
        if (ec) {
            return;
        }
        if (!res_.keep_alive()) {
            beast::error_code ignored;
            stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
            return;
        }
        res_ = {};  // a large /metrics body is not kept while the connection idles
        read();
    }

    void text(http::status status, std::string body) {
        res_.result(status);
        res_.set(http::field::content_type, "text/plain; charset=utf-8");
        res_.body() = std::move(body);
    }

    void respond(const http::request<http::string_body>& req) {
        if (req.method() != http::verb::get) {
            text(http::status::method_not_allowed, "only GET is served\n");
            res_.set(http::field::allow, "GET");
            return;
        }
        std::string_view target(req.target().data(), req.target().size());
        target = target.substr(0, target.find('?'));
        const http_handlers& h = handlers_;
        try {
            if (target == "/metrics") {
                std::string body;
                if (h.metrics) {
                    h.metrics(body);
                }
                text(http::status::ok, std::move(body));
                metrics_body_ = true;
                res_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            } else if (target == "/healthz") {
                text(http::status::ok, "ok\n");
            } else if (target == "/readyz") {
                std::string reason;
                if (!h.ready || h.ready(reason)) {
                    text(http::status::ok, "ready\n");
                } else {
                    text(http::status::service_unavailable, reason + "\n");
                }
            } else {
                text(http::status::not_found, "not found; try /metrics, /healthz or /readyz\n");
            }
        } catch (const std::exception& e) {
            log_error("http handler failed", {{"path", std::string(target)}, {"error", e.what()}});
            text(http::status::internal_server_error, std::string(e.what()) + "\n");
        }
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_{kHeaderLimit};
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> res_;
    bool metrics_body_ = false;  // res_ holds a /metrics body, to be recycled once written
    const http_handlers& handlers_;
    int& connections_;
};

}  // namespace

void http_server::impl::accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
            return;
        }
        if (ec) {
            // EMFILE, ENOBUFS, ECONNABORTED...: transient; try again shortly rather than spin.
            retry.expires_after(std::chrono::milliseconds(100));
            retry.async_wait([this](beast::error_code wait) {
                if (!wait) {
                    accept();
                }
            });
            return;
        }
        if (connections >= kMaxConnections) {
            beast::error_code ignored;
            socket.close(ignored);
        } else {
            std::make_shared<session>(std::move(socket), handlers, connections)->read();
        }
        accept();
    });
}

bool parse_listen_address(const std::string& listen, std::string& host, uint16_t& port,
                          std::string& error) {
    auto fail = [&](const std::string& why) {
        error = "listen address \"" + listen + "\": " + why;
        return false;
    };
    std::string_view rest;
    if (!listen.empty() && listen[0] == '[') {
        const size_t close = listen.find(']');
        if (close == std::string::npos) {
            return fail("no ']' after the IPv6 address");
        }
        host = listen.substr(1, close - 1);
        rest = std::string_view(listen).substr(close + 1);
        if (rest.empty() || rest[0] != ':') {
            return fail("expected :port after ']'");
        }
    } else {
        const size_t colon = listen.rfind(':');
        if (colon == std::string::npos) {
            return fail("expected host:port");
        }
        host = listen.substr(0, colon);
        if (host.find(':') != std::string::npos) {
            return fail("write an IPv6 address in brackets, e.g. [::1]:9977");
        }
        rest = std::string_view(listen).substr(colon);
    }
    rest.remove_prefix(1);
    if (host.empty()) {
        return fail("no address before the port (use 0.0.0.0 or [::] for every address)");
    }
    unsigned p = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), p);
    if (rest.empty() || ec != std::errc() || end != rest.data() + rest.size() || p > 65535) {
        return fail("the port is not a number from 0 to 65535");
    }
    beast::error_code bad;
    asio::ip::make_address(host, bad);
    if (bad) {
        return fail("\"" + host + "\" is not an IP address (names are not resolved)");
    }
    port = uint16_t(p);
    return true;
}

http_server::http_server() = default;
http_server::~http_server() {
    stop();
}
http_server::http_server(http_server&&) noexcept = default;
http_server& http_server::operator=(http_server&& o) noexcept {
    if (this != &o) {
        stop();
        impl_ = std::move(o.impl_);
    }
    return *this;
}

bool http_server::start(const std::string& listen, http_handlers handlers, http_server& out,
                        std::string& error) {
    std::string host;
    uint16_t port = 0;
    if (!parse_listen_address(listen, host, port, error)) {
        return false;
    }
    auto p = std::make_unique<impl>();
    p->handlers = std::move(handlers);
    const tcp::endpoint endpoint(asio::ip::make_address(host), port);
    beast::error_code ec;
    auto fail = [&](const char* what) {
        error = "listen on " + listen + ": " + what + ": " + ec.message();
        return false;
    };
    if (p->acceptor.open(endpoint.protocol(), ec); ec) {
        return fail("socket");
    }
    // A restarted agent binds again while the old connections sit in TIME_WAIT.
    if (p->acceptor.set_option(asio::socket_base::reuse_address(true), ec); ec) {
        return fail("SO_REUSEADDR");
    }
    if (p->acceptor.bind(endpoint, ec); ec) {
        return fail("bind");
    }
    if (p->acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
        return fail("listen");
    }
    p->port = p->acceptor.local_endpoint(ec).port();
    p->accept();
    impl* raw = p.get();
    p->thread = std::thread([raw] {
        for (;;) {
            try {
                raw->ioc.run();
                return;
            } catch (const std::exception& e) {
                log_error("http server loop failed", {{"error", e.what()}});
            }
        }
    });
    out.stop();
    out.impl_ = std::move(p);
    return true;
}

uint16_t http_server::port() const {
    return impl_ ? impl_->port : 0;
}

bool http_server::running() const {
    return impl_ != nullptr;
}

void http_server::stop() {
    if (!impl_) {
        return;
    }
    impl_->ioc.stop();
    if (impl_->thread.joinable()) {
        impl_->thread.join();
    }
    // Destroying the io_context destroys the pending handlers, which hold the sessions: their
    // sockets close here, on this thread, after the loop has ended.
    impl_.reset();
}

}  // namespace agent
