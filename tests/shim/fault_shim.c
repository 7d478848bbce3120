/* An LD_PRELOAD library that injects faults at exact points into the process
 * it is loaded in (the proxy under test). Each fault is off unless its
 * environment variable is set:
 *
 *   PSYNC_FAULT_WRITE_TRIGGER=<path>   while this file exists, the next write
 *       (write, pwrite, pwrite64) to a file whose path contains
 *       PSYNC_FAULT_WRITE_MATCH (default "/log-") fails with
 *       PSYNC_FAULT_WRITE_ERRNO (default ENOSPC), and the trigger file is
 *       removed: one failure per trigger, at the moment the test chooses.
 *   PSYNC_FAULT_GETADDRINFO_DELAY_MS=<ms>   getaddrinfo sleeps that long
 *       before answering, for the first PSYNC_FAULT_GETADDRINFO_DELAY_COUNT
 *       calls (default: all), as a slow DNS server would.
 *
 * Only what the test asks for is changed; everything else goes to libc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void*, size_t);
typedef ssize_t (*pwrite_fn)(int, const void*, size_t, off_t);
typedef int (*getaddrinfo_fn)(const char*, const char*, const struct addrinfo*, struct addrinfo**);

static void* next(const char* name) { return dlsym(RTLD_NEXT, name); }

/* 1 (and errno set) when this write must fail now. */
static int write_fault(int fd) {
  const char* trigger = getenv("PSYNC_FAULT_WRITE_TRIGGER");
  if (trigger == NULL || access(trigger, F_OK) != 0) return 0;
  const char* match = getenv("PSYNC_FAULT_WRITE_MATCH");
  if (match == NULL) match = "/log-";
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return 0;
  path[n] = '\0';
  if (strstr(path, match) == NULL) return 0;
  if (unlink(trigger) != 0) return 0; /* another thread took this trigger */
  const char* e = getenv("PSYNC_FAULT_WRITE_ERRNO");
  errno = e ? atoi(e) : ENOSPC;
  return 1;
}

ssize_t write(int fd, const void* buf, size_t len) {
  static write_fn real;
  if (!real) real = (write_fn)next("write");
  if (write_fault(fd)) return -1;
  return real(fd, buf, len);
}

ssize_t pwrite(int fd, const void* buf, size_t len, off_t off) {
  static pwrite_fn real;
  if (!real) real = (pwrite_fn)next("pwrite");
  if (write_fault(fd)) return -1;
  return real(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void* buf, size_t len, off_t off) {
  static pwrite_fn real;
  if (!real) real = (pwrite_fn)next("pwrite64");
  if (write_fault(fd)) return -1;
  return real(fd, buf, len, off);
}

int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints, struct addrinfo** res) {
  static getaddrinfo_fn real;
  static atomic_long calls;
  if (!real) real = (getaddrinfo_fn)next("getaddrinfo");
  const char* delay = getenv("PSYNC_FAULT_GETADDRINFO_DELAY_MS");
  if (delay != NULL) {
    const char* count = getenv("PSYNC_FAULT_GETADDRINFO_DELAY_COUNT");
    long n = atomic_fetch_add(&calls, 1);
    if (count == NULL || n < atol(count)) {
      long ms = atol(delay);
      struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
      while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
      }
    }
  }
  return real(node, service, hints, res);
}
