// The agent's HTTP endpoint: /metrics, /healthz and /readyz on one thread, over Boost.Beast
// (agent).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace agent {

// What the endpoints answer. Both run on the server's thread, one request at a time.
struct http_handlers {
    // Renders the body of GET /metrics (Prometheus text format 0.0.4) into `body`, which comes
    // empty.
    std::function<void(std::string& body)> metrics;
    // Gets a /metrics body back once it has been sent (or its connection failed), so that the
    // next render can reuse its memory: a page of tens of MB in fresh memory costs a page fault
    // per 4 KB, about a third of the scrape. Unset: the body is freed.
    std::function<void(std::string&& body)> recycle;
    // Returns true when the agent is ready; otherwise sets `reason` (/readyz answers 503 with
    // it). Unset: always ready.
    std::function<bool(std::string& reason)> ready;
};

// A small HTTP/1.1 server: GET (and HEAD) of /metrics, /healthz (200 while its loop runs) and
// /readyz; 404 for other paths, 405 for other methods. Keep-alive, 10 s to send a request,
// at most 16 connections at once. Addresses are numeric only (no name lookup: the binary is
// static, and getaddrinfo needs the NSS modules a static binary cannot load).
class http_server {
  public:
    http_server();
    ~http_server();  // stops
    http_server(http_server&&) noexcept;
    http_server& operator=(http_server&&) noexcept;

    // Listens on `listen` ("127.0.0.1:9977", "[::1]:9977"; port 0 takes any free port) and
    // serves on a new thread. On failure returns false and sets `error` to one line naming the
    // address.
    static bool start(const std::string& listen, http_handlers handlers, http_server& out,
                      std::string& error);

    // Returns the port listened on (the one chosen for port 0); 0 when not running.
    uint16_t port() const;
    // Stops serving: closes the listener and the connections and joins the thread. A handler
    // running at that moment finishes first. Safe to call from any thread but the server's, and
    // more than once.
    void stop();
    bool running() const;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

// Parses "host:port" or "[v6]:port" into a numeric address and a port; false with `error` set
// otherwise.
bool parse_listen_address(const std::string& listen, std::string& host, uint16_t& port,
                          std::string& error);

}  // namespace agent
