#include "proxy/log.h"

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <cstdio>
#include <ctime>
#include <sys/time.h>

#include <nlohmann/json.hpp>

#include "protocol/numbers.h"

namespace psync::proxy {
namespace {
LogLevel g_level = LogLevel::kInfo;
bool g_json = false;
FILE* g_file = nullptr;  // nullptr: stderr
std::string g_path;
const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}
}  // namespace

std::optional<LogLevel> parse_log_level(std::string_view s) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (protocol::iequals(s, level_name(l))) return l;
  }
  if (protocol::iequals(s, "warning")) return LogLevel::kWarn;
  return std::nullopt;
}

void set_log_level(LogLevel level) { g_level = level; }
void set_log_json(bool json) { g_json = json; }

bool open_log_file(const std::string& path, std::string& error) {
  FILE* f = fopen(path.c_str(), "ae");
  if (f == nullptr) {
    error = "cannot open log file " + path + ": " + strerror(errno);
    return false;
  }
  setvbuf(f, nullptr, _IOLBF, 0);
  if (g_file) fclose(g_file);
  g_file = f;
  g_path = path;
  return true;
}

bool reopen_log_file(std::string& error) {
  if (g_path.empty()) return true;
  return open_log_file(g_path, error);
}
bool log_enabled(LogLevel level) { return level >= g_level; }

void log_line(LogLevel level, std::string_view component, const char* fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm t;
  gmtime_r(&tv.tv_sec, &t);
  char ts[32];
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &t);
  FILE* out = g_file ? g_file : stderr;
  if (g_json) {
    char when[64];
    snprintf(when, sizeof when, "%s.%03ldZ", ts, static_cast<long>(tv.tv_usec / 1000));
    nlohmann::json j = {{"time", when},
                        {"level", level_name(level)},
                        {"component", std::string(component)},
                        {"message", msg}};
    fprintf(out, "%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  fprintf(out, "%s.%03ldZ %-5s %-8.*s %s\n", ts, static_cast<long>(tv.tv_usec / 1000),
          level_name(level), static_cast<int>(component.size()), component.data(), msg);
}

void flush_log() { fflush(g_file ? g_file : stderr); }

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char out[32];
  if (u == 0)
    snprintf(out, sizeof out, "%.0f B", bytes);
  else
    snprintf(out, sizeof out, "%.1f %s", bytes, units[u]);
  return out;
}

}  // namespace psync::proxy
