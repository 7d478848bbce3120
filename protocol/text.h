// Peer bytes as they may appear in an error message or a log line.
#pragma once

#include <string>
#include <string_view>

namespace psync::protocol {

// 'like this': one line, at most 64 bytes shown (then "..."), bytes outside
// printable ASCII as \xHH.
std::string quoted(std::string_view s);

}  // namespace psync::protocol
