// RESP encoding for the replies and commands the proxy writes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace psync::protocol {

std::string simple_string(std::string_view s);    // "+s\r\n"
std::string error_reply(std::string_view s);      // "-s\r\n"; s starts with the code, e.g. "ERR ..."
std::string integer_reply(int64_t v);             // ":v\r\n"
std::string bulk_string(std::string_view s);      // "$len\r\ns\r\n"
std::string null_bulk();                          // "$-1\r\n"
std::string array_header(size_t n);               // "*n\r\n"

// A command as RESP multibulk: *N\r\n then $len\r\narg\r\n per argument.
std::string encode_command(std::initializer_list<std::string_view> args);
void append_command(std::string& out, const std::vector<std::string_view>& args);
void append_command(std::string& out, const std::vector<std::string>& args);

}  // namespace psync::protocol
