// One line per event: timestamp, level, component, message. Written to stderr.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace psync::proxy {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

std::optional<LogLevel> parse_log_level(std::string_view s);
void set_log_level(LogLevel level);
// One JSON object a line: {"time", "level", "component", "message"}.
void set_log_json(bool json);
// Sends the log to a file (appending) instead of stderr; false with error.
bool open_log_file(const std::string& path, std::string& error);
// Reopens the log file (after logrotate moved it: SIGHUP).
bool reopen_log_file(std::string& error);
bool log_enabled(LogLevel level);
// Writes out what the log holds buffered (before an exec).
void flush_log();
void log_line(LogLevel level, std::string_view component, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

// A byte count for people: "512 B", "12.3 KB", "5.1 MB", "2.0 GB".
std::string human_bytes(double bytes);

}  // namespace psync::proxy

#define PLOG(level, component, ...)                                   \
  do {                                                                \
    if (::psync::proxy::log_enabled(level))                           \
      ::psync::proxy::log_line(level, component, __VA_ARGS__);        \
  } while (0)
#define LOG_DEBUG(c, ...) PLOG(::psync::proxy::LogLevel::kDebug, c, __VA_ARGS__)
#define LOG_INFO(c, ...) PLOG(::psync::proxy::LogLevel::kInfo, c, __VA_ARGS__)
#define LOG_WARN(c, ...) PLOG(::psync::proxy::LogLevel::kWarn, c, __VA_ARGS__)
#define LOG_ERROR(c, ...) PLOG(::psync::proxy::LogLevel::kError, c, __VA_ARGS__)
