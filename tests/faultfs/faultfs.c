/*
 * faultfs: an LD_PRELOAD shim for the end-to-end tests that records the file
 * system calls a process makes on chosen paths and makes some of them fail.
 *
 * It lets a test see the order of write, fsync and rename behind one SMTP
 * "250" and answer ENOSPC or EIO where a real full or broken disk would,
 * without ptrace, root or a loop-mounted file system.
 *
 * Wrapped: write, pwrite, pwrite64, writev, pwritev (op "write"); fsync,
 * fdatasync (op "fsync"); rename, renameat, renameat2 (op "rename"); open,
 * open64, openat, openat64 (op "open"); close (op "close"); unlink, unlinkat
 * (logged only). Each forwards to the next definition (dlsym RTLD_NEXT), so
 * the shim works ahead of or behind a sanitizer runtime's interceptors.
 *
 * Environment (read once, at the first wrapped call):
 *   FAULTFS_MATCH    only paths containing this substring are logged or
 *                    failed (a trailing '$' anchors it at the end of the
 *                    path). Unset: every absolute path.
 *   FAULTFS_LOG      file to append one line per matching call to:
 *                      <op> <path> [<to>] = <result> [<ERRNO>] [injected] tid=<tid>
 *                    <path> is the resolved path (/proc/self/fd) for calls
 *                    on a descriptor. The line is written after the call
 *                    returns, with one raw write(2) on an O_APPEND
 *                    descriptor, so lines from several threads, and lines
 *                    a test appends itself, never mix and keep their order.
 *   FAULTFS_FAIL     comma-separated rules  op:ERRNO[:substring]  e.g.
 *                    "write:ENOSPC", "fsync:EIO:.mail.tmp", "fsync:EIO:/queue$".
 *                    op is write, fsync, rename (either path may match),
 *                    open or close (the descriptor is closed all the same).
 *                    ERRNO is a name (ENOSPC, EIO, EDQUOT, EROFS, ...) or a
 *                    number. A call fails when its path matches
 *                    FAULTFS_MATCH and the rule's substring.
 *   FAULTFS_AFTER    N: a rule fails from its Nth matching call on (while
 *                    armed), counted per rule. Default 1.
 *   FAULTFS_TRIGGER  path: rules are armed only while this file exists.
 *   FAULTFS_SHORT    1: an injected write fault first writes all but the
 *                    last byte of a larger call for real and returns the
 *                    short count, like a disk that fills up mid-write.
 *   FAULTFS_DELAY    comma-separated  op:milliseconds : sleep before each
 *                    matching call, so that a reply that does not wait for
 *                    the call would show up in the log ahead of it.
 *
 * The shim never calls the functions it wraps for itself: its own I/O goes
 * through syscall(2).
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum op { OP_WRITE, OP_FSYNC, OP_RENAME, OP_OPEN, OP_CLOSE, OP_COUNT };

static const char* const op_names[OP_COUNT] = {"write", "fsync", "rename", "open", "close"};

#define MAX_RULES 16
#define PATTERN_MAX 512

struct rule {
  enum op op;
  int err;
  char pattern[PATTERN_MAX];
  unsigned long count; /* matching calls while armed, updated atomically */
};

static struct {
  int log_fd;
  int have_match;
  char match[PATTERN_MAX];
  int have_trigger;
  char trigger[PATH_MAX];
  unsigned long after;
  int short_writes;
  long delay_ms[OP_COUNT];
  int nrules;
  struct rule rules[MAX_RULES];
  int active; /* anything to log, fail or delay at all */
} cfg;

typedef ssize_t (*write_fn)(int, const void*, size_t);
typedef ssize_t (*pwrite_fn)(int, const void*, size_t, off_t);
typedef ssize_t (*pwrite64_fn)(int, const void*, size_t, off64_t);
typedef ssize_t (*writev_fn)(int, const struct iovec*, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec*, int, off_t);
typedef int (*fsync_fn)(int);
typedef int (*rename_fn)(const char*, const char*);
typedef int (*renameat_fn)(int, const char*, int, const char*);
typedef int (*renameat2_fn)(int, const char*, int, const char*, unsigned int);
typedef int (*open_fn)(const char*, int, ...);
typedef int (*openat_fn)(int, const char*, int, ...);
typedef int (*close_fn)(int);
typedef int (*unlink_fn)(const char*);
typedef int (*unlinkat_fn)(int, const char*, int);

static struct {
  write_fn write;
  pwrite_fn pwrite;
  pwrite64_fn pwrite64;
  writev_fn writev;
  pwritev_fn pwritev;
  fsync_fn fsync;
  fsync_fn fdatasync;
  rename_fn rename;
  renameat_fn renameat;
  renameat2_fn renameat2;
  open_fn open;
  open_fn open64;
  openat_fn openat;
  openat_fn openat64;
  close_fn close;
  unlink_fn unlink;
  unlinkat_fn unlinkat;
} real;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* dlsym returns void*; going through memcpy keeps -Wpedantic quiet about
 * object-to-function pointer conversion. */
static void resolve(void* slot, size_t size, const char* name) {
  void* p = dlsym(RTLD_NEXT, name);
  if (p != NULL && size == sizeof p) memcpy(slot, &p, sizeof p);
}
#define RESOLVE(field, name) resolve(&real.field, sizeof real.field, name)

static long raw_write(int fd, const char* buf, size_t n) {
  while (n > 0) {
    long r = syscall(SYS_write, fd, buf, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += r;
    n -= (size_t)r;
  }
  return 0;
}

static void complain(const char* what) {
  char line[768];
  int n = snprintf(line, sizeof line, "faultfs: %s\n", what);
  if (n > 0) (void)raw_write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static const struct {
  const char* name;
  int value;
} errno_names[] = {
    {"ENOSPC", ENOSPC}, {"EIO", EIO},       {"EDQUOT", EDQUOT}, {"EROFS", EROFS},
    {"EACCES", EACCES}, {"EPERM", EPERM},   {"ENOENT", ENOENT}, {"EEXIST", EEXIST},
    {"EINTR", EINTR},   {"EBADF", EBADF},   {"EINVAL", EINVAL}, {"EXDEV", EXDEV},
    {"EFBIG", EFBIG},   {"EAGAIN", EAGAIN}, {"EISDIR", EISDIR}, {"ENOTDIR", ENOTDIR},
    {"EMFILE", EMFILE}, {"ENOTEMPTY", ENOTEMPTY},
};

static int errno_from_name(const char* s) {
  for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; ++i) {
    if (strcmp(s, errno_names[i].name) == 0) return errno_names[i].value;
  }
  char* end = NULL;
  long v = strtol(s, &end, 10);
  if (end != s && *end == '\0' && v > 0 && v < 4096) return (int)v;
  return 0;
}

static void errno_to_name(int e, char* out, size_t size) {
  for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; ++i) {
    if (errno_names[i].value == e) {
      snprintf(out, size, "%s", errno_names[i].name);
      return;
    }
  }
  snprintf(out, size, "E%d", e);
}

static int op_from_name(const char* s, size_t len) {
  for (int i = 0; i < OP_COUNT; ++i) {
    if (strlen(op_names[i]) == len && strncmp(s, op_names[i], len) == 0) return i;
  }
  return -1;
}

static void copy_string(char* dst, size_t size, const char* src, size_t len) {
  if (len >= size) len = size - 1;
  memcpy(dst, src, len);
  dst[len] = '\0';
}

/* "op:ERRNO[:substring]" entries, comma-separated. */
static void parse_fail(const char* spec) {
  const char* p = spec;
  while (*p != '\0') {
    const char* end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char entry[PATTERN_MAX + 64];
    copy_string(entry, sizeof entry, p, len);
    p += len;
    if (*p == ',') ++p;
    if (entry[0] == '\0') continue;

    char* colon = strchr(entry, ':');
    if (colon == NULL) {
      complain("FAULTFS_FAIL entry without ':' ignored");
      continue;
    }
    int op = op_from_name(entry, (size_t)(colon - entry));
    char* err_name = colon + 1;
    char* pattern = strchr(err_name, ':');
    if (pattern != NULL) *pattern++ = '\0';
    int err = errno_from_name(err_name);
    if (op < 0 || err == 0 || cfg.nrules == MAX_RULES) {
      complain("bad or too many FAULTFS_FAIL entries; one ignored");
      continue;
    }
    struct rule* r = &cfg.rules[cfg.nrules++];
    r->op = (enum op)op;
    r->err = err;
    copy_string(r->pattern, sizeof r->pattern, pattern ? pattern : "", pattern ? strlen(pattern) : 0);
    r->count = 0;
  }
}

/* "op:milliseconds" entries, comma-separated. */
static void parse_delay(const char* spec) {
  const char* p = spec;
  while (*p != '\0') {
    const char* colon = strchr(p, ':');
    if (colon == NULL) break;
    int op = op_from_name(p, (size_t)(colon - p));
    char* end = NULL;
    long ms = strtol(colon + 1, &end, 10);
    if (op >= 0 && ms > 0) cfg.delay_ms[op] = ms;
    else complain("bad FAULTFS_DELAY entry ignored");
    p = end;
    while (*p != '\0' && *p != ',') ++p;
    if (*p == ',') ++p;
  }
}

static void init(void) {
  RESOLVE(write, "write");
  RESOLVE(pwrite, "pwrite");
  RESOLVE(pwrite64, "pwrite64");
  RESOLVE(writev, "writev");
  RESOLVE(pwritev, "pwritev");
  RESOLVE(fsync, "fsync");
  RESOLVE(fdatasync, "fdatasync");
  RESOLVE(rename, "rename");
  RESOLVE(renameat, "renameat");
  RESOLVE(renameat2, "renameat2");
  RESOLVE(open, "open");
  RESOLVE(open64, "open64");
  RESOLVE(openat, "openat");
  RESOLVE(openat64, "openat64");
  RESOLVE(close, "close");
  RESOLVE(unlink, "unlink");
  RESOLVE(unlinkat, "unlinkat");

  cfg.log_fd = -1;
  cfg.after = 1;
  const char* s = getenv("FAULTFS_MATCH");
  if (s != NULL && *s != '\0') {
    cfg.have_match = 1;
    copy_string(cfg.match, sizeof cfg.match, s, strlen(s));
  }
  s = getenv("FAULTFS_TRIGGER");
  if (s != NULL && *s != '\0') {
    cfg.have_trigger = 1;
    copy_string(cfg.trigger, sizeof cfg.trigger, s, strlen(s));
  }
  s = getenv("FAULTFS_AFTER");
  if (s != NULL && *s != '\0') {
    long v = strtol(s, NULL, 10);
    cfg.after = v > 1 ? (unsigned long)v : 1;
  }
  s = getenv("FAULTFS_SHORT");
  cfg.short_writes = s != NULL && strcmp(s, "1") == 0;
  s = getenv("FAULTFS_FAIL");
  if (s != NULL) parse_fail(s);
  s = getenv("FAULTFS_DELAY");
  if (s != NULL) parse_delay(s);
  s = getenv("FAULTFS_LOG");
  if (s != NULL && *s != '\0') {
    cfg.log_fd = (int)syscall(SYS_openat, AT_FDCWD, s, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (cfg.log_fd < 0) complain("cannot open FAULTFS_LOG");
  }
  int delays = 0;
  for (int i = 0; i < OP_COUNT; ++i) delays |= cfg.delay_ms[i] > 0;
  cfg.active = cfg.log_fd >= 0 || cfg.nrules > 0 || delays;
}

static void ensure_init(void) {
  int saved = errno;
  pthread_once(&init_once, init);
  errno = saved;
}

static int pattern_matches(const char* path, const char* pattern) {
  size_t plen = strlen(pattern);
  if (plen == 0) return 1;
  if (pattern[plen - 1] == '$') {
    size_t n = plen - 1;
    size_t len = strlen(path);
    return len >= n && memcmp(path + len - n, pattern, n) == 0;
  }
  return strstr(path, pattern) != NULL;
}

static int path_selected(const char* path) {
  if (path == NULL || path[0] == '\0') return 0;
  if (!cfg.have_match) return path[0] == '/';
  return pattern_matches(path, cfg.match);
}

/* The path behind a descriptor; empty when it cannot be read. */
static void fd_path(int fd, char* out, size_t size) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  long n = syscall(SYS_readlinkat, AT_FDCWD, link, out, size - 1);
  out[n > 0 ? (size_t)n : 0] = '\0';
}

/* `path` as given to an *at() call, made absolute for matching and logging. */
static void at_path(int dirfd, const char* path, char* out, size_t size) {
  if (path == NULL) {
    out[0] = '\0';
    return;
  }
  if (path[0] == '/') {
    copy_string(out, size, path, strlen(path));
    return;
  }
  char dir[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    long n = syscall(SYS_getcwd, dir, sizeof dir);
    if (n <= 0) dir[0] = '\0';
  } else {
    fd_path(dirfd, dir, sizeof dir);
  }
  if (dir[0] == '\0') {
    copy_string(out, size, path, strlen(path));
    return;
  }
  int n = snprintf(out, size, "%s/%s", dir, path);
  if (n < 0 || (size_t)n >= size) copy_string(out, size, path, strlen(path));
}

static int armed(void) {
  if (!cfg.have_trigger) return 1;
  return syscall(SYS_faccessat, AT_FDCWD, cfg.trigger, F_OK, 0) == 0;
}

/* The errno to inject for this call, or 0. */
static int fault_for(enum op op, const char* path, const char* path2) {
  int checked_armed = 0;
  for (int i = 0; i < cfg.nrules; ++i) {
    struct rule* r = &cfg.rules[i];
    if (r->op != op) continue;
    if (!pattern_matches(path, r->pattern) && (path2 == NULL || !pattern_matches(path2, r->pattern))) {
      continue;
    }
    if (!checked_armed) {
      if (!armed()) return 0;
      checked_armed = 1;
    }
    unsigned long n = __atomic_add_fetch(&r->count, 1, __ATOMIC_SEQ_CST);
    if (n >= cfg.after) return r->err;
  }
  return 0;
}

static void delay(enum op op) {
  long ms = cfg.delay_ms[op];
  if (ms <= 0) return;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (syscall(SYS_nanosleep, &ts, &ts) != 0 && errno == EINTR) {
  }
}

static void log_call(const char* name, const char* path, const char* path2, long result, int err,
                     int injected) {
  if (cfg.log_fd < 0) return;
  char errname[32] = "";
  if (result < 0) errno_to_name(err, errname, sizeof errname);
  char line[2 * PATH_MAX + 128];
  int n = snprintf(line, sizeof line, "%s %s%s%s = %ld%s%s%s tid=%ld\n", name, path,
                   path2 ? " " : "", path2 ? path2 : "", result, result < 0 ? " " : "", errname,
                   injected ? " injected" : "", (long)syscall(SYS_gettid));
  if (n <= 0) return;
  if ((size_t)n >= sizeof line) {
    n = (int)sizeof line - 1;
    line[n - 1] = '\n';
  }
  (void)raw_write(cfg.log_fd, line, (size_t)n);
}

/* --- write family ------------------------------------------------------- */

/* Shared by the write family: `call` does the real write of `n` bytes. The
 * injected short write calls it with a smaller count. */
typedef ssize_t (*do_write_fn)(const void* ctx, size_t n);

static ssize_t wrapped_write(const char* name, int fd, size_t n, const void* ctx, do_write_fn call) {
  char path[PATH_MAX];
  fd_path(fd, path, sizeof path);
  if (!path_selected(path)) return call(ctx, n);
  int fault = fault_for(OP_WRITE, path, NULL);
  if (fault != 0 && cfg.short_writes && n > 1) {
    ssize_t r = call(ctx, n - 1);
    int saved = errno;
    log_call(name, path, NULL, (long)r, saved, 1);
    errno = saved;
    return r;
  }
  if (fault != 0) {
    log_call(name, path, NULL, -1, fault, 1);
    errno = fault;
    return -1;
  }
  delay(OP_WRITE);
  ssize_t r = call(ctx, n);
  int saved = errno;
  log_call(name, path, NULL, (long)r, saved, 0);
  errno = saved;
  return r;
}

struct write_args {
  int fd;
  const void* buf;
  off64_t off;
};

static ssize_t call_write(const void* ctx, size_t n) {
  const struct write_args* a = ctx;
  if (real.write == NULL) {
    errno = ENOSYS;
    return -1;
  }
  return real.write(a->fd, a->buf, n);
}

static ssize_t call_pwrite(const void* ctx, size_t n) {
  const struct write_args* a = ctx;
  if (real.pwrite == NULL) {
    errno = ENOSYS;
    return -1;
  }
  return real.pwrite(a->fd, a->buf, n, (off_t)a->off);
}

static ssize_t call_pwrite64(const void* ctx, size_t n) {
  const struct write_args* a = ctx;
  if (real.pwrite64 == NULL) {
    errno = ENOSYS;
    return -1;
  }
  return real.pwrite64(a->fd, a->buf, n, a->off);
}

ssize_t write(int fd, const void* buf, size_t n) {
  ensure_init();
  struct write_args a = {fd, buf, 0};
  if (!cfg.active) return call_write(&a, n);
  return wrapped_write("write", fd, n, &a, call_write);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  ensure_init();
  struct write_args a = {fd, buf, off};
  if (!cfg.active) return call_pwrite(&a, n);
  return wrapped_write("pwrite", fd, n, &a, call_pwrite);
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t off) {
  ensure_init();
  struct write_args a = {fd, buf, off};
  if (!cfg.active) return call_pwrite64(&a, n);
  return wrapped_write("pwrite64", fd, n, &a, call_pwrite64);
}

/* The vectored writes: a short write is not attempted, the call fails whole. */
static ssize_t wrapped_writev(const char* name, int fd, const struct iovec* iov, int cnt, off_t off,
                              int positional) {
  ensure_init();
  char path[PATH_MAX] = "";
  int selected = 0;
  int fault = 0;
  if (cfg.active) {
    fd_path(fd, path, sizeof path);
    selected = path_selected(path);
    if (selected) fault = fault_for(OP_WRITE, path, NULL);
  }
  if (fault != 0) {
    log_call(name, path, NULL, -1, fault, 1);
    errno = fault;
    return -1;
  }
  if (selected) delay(OP_WRITE);
  ssize_t r;
  if (positional) {
    r = real.pwritev ? real.pwritev(fd, iov, cnt, off) : (errno = ENOSYS, -1);
  } else {
    r = real.writev ? real.writev(fd, iov, cnt) : (errno = ENOSYS, -1);
  }
  int saved = errno;
  if (selected) log_call(name, path, NULL, (long)r, saved, 0);
  errno = saved;
  return r;
}

ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  return wrapped_writev("writev", fd, iov, cnt, 0, 0);
}

ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  return wrapped_writev("pwritev", fd, iov, cnt, off, 1);
}

/* --- fsync, close --------------------------------------------------------- */

static int wrapped_fd_call(const char* name, enum op op, int fd, int (*fn)(int)) {
  if (fn == NULL) {
    errno = ENOSYS;
    return -1;
  }
  if (!cfg.active) return fn(fd);
  char path[PATH_MAX];
  fd_path(fd, path, sizeof path);
  if (!path_selected(path)) return fn(fd);
  int fault = fault_for(op, path, NULL);
  if (fault != 0) {
    /* close(2) releases the descriptor even when it reports an error. */
    if (op == OP_CLOSE) (void)fn(fd);
    log_call(name, path, NULL, -1, fault, 1);
    errno = fault;
    return -1;
  }
  delay(op);
  int r = fn(fd);
  int saved = errno;
  log_call(name, path, NULL, r, saved, 0);
  errno = saved;
  return r;
}

int fsync(int fd) {
  ensure_init();  /* before real.fsync is read */
  return wrapped_fd_call("fsync", OP_FSYNC, fd, real.fsync);
}

int fdatasync(int fd) {
  ensure_init();  /* before real.fdatasync is read */
  return wrapped_fd_call("fdatasync", OP_FSYNC, fd, real.fdatasync);
}

int close(int fd) {
  ensure_init();  /* before real.close is read */
  return wrapped_fd_call("close", OP_CLOSE, fd, real.close);
}

/* --- rename ------------------------------------------------------------- */

struct rename_args {
  int olddir;
  const char* from;
  int newdir;
  const char* to;
  unsigned int flags;
  int kind; /* 0 rename, 1 renameat, 2 renameat2 */
};

static int call_rename(const struct rename_args* a) {
  switch (a->kind) {
    case 0:
      if (real.rename) return real.rename(a->from, a->to);
      break;
    case 1:
      if (real.renameat) return real.renameat(a->olddir, a->from, a->newdir, a->to);
      break;
    default:
      if (real.renameat2) return real.renameat2(a->olddir, a->from, a->newdir, a->to, a->flags);
      break;
  }
  errno = ENOSYS;
  return -1;
}

static int wrapped_rename(const char* name, const struct rename_args* a) {
  ensure_init();
  if (!cfg.active) return call_rename(a);
  char from[PATH_MAX];
  char to[PATH_MAX];
  at_path(a->olddir, a->from, from, sizeof from);
  at_path(a->newdir, a->to, to, sizeof to);
  if (!path_selected(from) && !path_selected(to)) return call_rename(a);
  int fault = fault_for(OP_RENAME, from, to);
  if (fault != 0) {
    log_call(name, from, to, -1, fault, 1);
    errno = fault;
    return -1;
  }
  delay(OP_RENAME);
  int r = call_rename(a);
  int saved = errno;
  log_call(name, from, to, r, saved, 0);
  errno = saved;
  return r;
}

int rename(const char* from, const char* to) {
  struct rename_args a = {AT_FDCWD, from, AT_FDCWD, to, 0, 0};
  return wrapped_rename("rename", &a);
}

int renameat(int olddir, const char* from, int newdir, const char* to) {
  struct rename_args a = {olddir, from, newdir, to, 0, 1};
  return wrapped_rename("renameat", &a);
}

int renameat2(int olddir, const char* from, int newdir, const char* to, unsigned int flags) {
  struct rename_args a = {olddir, from, newdir, to, flags, 2};
  return wrapped_rename("renameat2", &a);
}

/* --- open --------------------------------------------------------------- */

static int needs_mode(int flags) {
#ifdef O_TMPFILE
  if ((flags & O_TMPFILE) == O_TMPFILE) return 1;
#endif
  return (flags & O_CREAT) != 0;
}

static int call_open(const char* name, int dirfd, const char* path, int flags, mode_t mode) {
  if (strcmp(name, "open") == 0 && real.open) return real.open(path, flags, mode);
  if (strcmp(name, "open64") == 0 && real.open64) return real.open64(path, flags, mode);
  if (strcmp(name, "openat") == 0 && real.openat) return real.openat(dirfd, path, flags, mode);
  if (strcmp(name, "openat64") == 0 && real.openat64) return real.openat64(dirfd, path, flags, mode);
  errno = ENOSYS;
  return -1;
}

static int wrapped_open(const char* name, int dirfd, const char* path, int flags, mode_t mode) {
  ensure_init();
  if (!cfg.active) return call_open(name, dirfd, path, flags, mode);
  char full[PATH_MAX];
  at_path(dirfd, path, full, sizeof full);
  if (!path_selected(full)) return call_open(name, dirfd, path, flags, mode);
  int fault = fault_for(OP_OPEN, full, NULL);
  if (fault != 0) {
    log_call(name, full, NULL, -1, fault, 1);
    errno = fault;
    return -1;
  }
  delay(OP_OPEN);
  int r = call_open(name, dirfd, path, flags, mode);
  int saved = errno;
  if (r >= 0) fd_path(r, full, sizeof full);
  log_call(name, full, NULL, r, saved, 0);
  errno = saved;
  return r;
}

static mode_t mode_arg(int flags, va_list ap) {
  return needs_mode(flags) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return wrapped_open("open", AT_FDCWD, path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return wrapped_open("open64", AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return wrapped_open("openat", dirfd, path, flags, mode);
}

int openat64(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return wrapped_open("openat64", dirfd, path, flags, mode);
}

/* --- unlink (logged only) ---------------------------------------------- */

static int log_unlink(const char* name, int dirfd, const char* path, int r, int err) {
  if (cfg.active) {
    char full[PATH_MAX];
    at_path(dirfd, path, full, sizeof full);
    if (path_selected(full)) log_call(name, full, NULL, r, err, 0);
  }
  errno = err;
  return r;
}

int unlink(const char* path) {
  ensure_init();
  int r = real.unlink ? real.unlink(path) : (errno = ENOSYS, -1);
  return log_unlink("unlink", AT_FDCWD, path, r, errno);
}

int unlinkat(int dirfd, const char* path, int flags) {
  ensure_init();
  int r = real.unlinkat ? real.unlinkat(dirfd, path, flags) : (errno = ENOSYS, -1);
  return log_unlink("unlinkat", dirfd, path, r, errno);
}
