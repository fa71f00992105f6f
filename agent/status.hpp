// The read-only verbs: `status` (what is attached where, owned or foreign) and `stats` (the
// counters), both working next to a running daemon or from the pins it left.
#pragma once

#include <ostream>

#include "config.hpp"

namespace agent {

enum class output_format { text, json };

int run_status(const config& cfg, output_format format, std::ostream& out);
int run_stats(const config& cfg, output_format format, std::ostream& out);

}  // namespace agent
