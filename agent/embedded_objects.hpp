// The agent's BPF objects, compiled by the build and embedded in the binary (cmake/embed.cmake).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace agent {

struct embedded_object {
    std::string_view name;  // "tcp_rto", "tcp_tos", "tclass_lock", "net_stat"
    std::span<const std::byte> bytes;
};

// Returns every embedded object.
std::span<const embedded_object> embedded_objects();

}  // namespace agent
