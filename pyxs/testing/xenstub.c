/*
 * xenstub: answers the few hypervisor calls Xen's xenstored and oxenstored
 * make at start-up, so the real daemons can serve socket clients on a
 * machine without Xen.  Loaded with LD_PRELOAD by pyxs.testing.
 *
 * Up to Xen 4.20 the daemons ask libxenctrl about domains; from Xen 4.21 on
 * the C daemon asks libxenmanage instead.  Both sets are answered here, and
 * a daemon only ever calls the ones its release links.
 *
 * PYXS_STUB_RUNDIR, when set, redirects every path under /var/run/xenstored
 * (oxenstored's fixed socket directory) into that directory, so several
 * oxenstored instances can run side by side.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int dummy_handle;

/* ---- libxenctrl ---- */
void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags)
{
    (void)logger; (void)dombuild_logger; (void)flags;
    return &dummy_handle;
}

int xc_interface_close(void *xch) { (void)xch; return 0; }

/* Every asked-for domain exists and is running. */
int xc_domain_getinfo(void *xch, uint32_t first, unsigned max, void *info)
{
    uint32_t *fields = info;
    (void)xch;
    if (max < 1)
        return 0;
    fields[0] = first;  /* domid */
    fields[1] = 0;      /* ssidref */
    fields[2] = 0;      /* flag bits: not dying, not shut down */
    return 1;
}

int xc_domain_getinfolist(void *xch, uint32_t first, unsigned max, void *info)
{
    uint16_t *ids = info;
    uint32_t *flags = (uint32_t *)((char *)info + 4);
    (void)xch;
    if (max < 1)
        return 0;
    ids[0] = (uint16_t)first;
    ids[1] = 0;
    *flags = 0;
    return 1;
}

/* Xen 4.18 to 4.20's C daemon asks about one domain at a time; the reply
 * (xc_domaininfo_t) starts with uint16 domid, uint16 pad, uint32 flags. */
int xc_domain_getinfo_single(void *xch, uint32_t domid, void *info)
{
    uint16_t *ids = info;
    uint32_t *flags = (uint32_t *)((char *)info + 4);
    (void)xch;
    if (domid >= 0x7FF0u) {   /* DOMID_FIRST_RESERVED: no such domain */
        errno = ESRCH;
        return -1;
    }
    ids[0] = (uint16_t)domid;
    ids[1] = 0;
    *flags = 0;               /* not dying, not shut down */
    return 0;
}

static void *anon_page(void)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *xc_map_foreign_range(void *xch, uint32_t dom, int size, int prot,
                           unsigned long mfn)
{
    (void)xch; (void)dom; (void)size; (void)prot; (void)mfn;
    return anon_page();
}

/* ---- libxenmanage (Xen 4.21 and later) ---- */
#define MANAGE_STATE_EXIST 0x0001
#define MANAGE_CAP_CONTROL 0x0001
#define MANAGE_CAP_HARDWARE 0x0002
#define MANAGE_CAP_XENSTORE 0x0004
#define FIRST_RESERVED_DOMID 0x7FF0u

void *xenmanage_open(void *logger, unsigned flags)
{
    (void)logger; (void)flags;
    return &dummy_handle;
}

int xenmanage_close(void *handle) { (void)handle; return 0; }

/* Domain 0 controls everything; every other ordinary domid runs. */
static void describe_domain(unsigned domid, unsigned *state, unsigned *caps,
                            uint64_t *unique_id)
{
    if (state)
        *state = MANAGE_STATE_EXIST;
    if (caps)
        *caps = domid == 0 ? (MANAGE_CAP_CONTROL | MANAGE_CAP_HARDWARE |
                              MANAGE_CAP_XENSTORE) : 0;
    if (unique_id)
        *unique_id = (uint64_t)domid + 1;  /* 0 would mean "unknown" */
}

int xenmanage_get_domain_info(void *handle, unsigned domid, unsigned *state,
                              unsigned *caps, uint64_t *unique_id)
{
    (void)handle;
    if (domid >= FIRST_RESERVED_DOMID) {
        errno = ENOENT;
        return -1;
    }
    describe_domain(domid, state, caps, unique_id);
    return 0;
}

/* The first poll reports dom0 (how the daemon learns who is privileged);
 * after that nothing ever changes. */
int xenmanage_poll_changed_domain(void *handle, unsigned *domid,
                                  unsigned *state, unsigned *caps,
                                  uint64_t *unique_id)
{
    static int dom0_reported;
    (void)handle;
    if (dom0_reported) {
        errno = ENOENT;
        return -1;
    }
    dom0_reported = 1;
    if (domid)
        *domid = 0;
    describe_domain(0, state, caps, unique_id);
    return 0;
}

/* ---- libxengnttab ---- */
void *xengnttab_open(void *logger, unsigned flags)
{
    (void)logger; (void)flags;
    return &dummy_handle;
}
int xengnttab_close(void *xgt) { (void)xgt; return 0; }
int xengnttab_set_max_grants(void *xgt, uint32_t n) { (void)xgt; (void)n; return 0; }
void *xengnttab_map_grant_ref(void *xgt, uint32_t domid, uint32_t ref, int prot)
{
    (void)xgt; (void)domid; (void)ref; (void)prot;
    return anon_page();
}
int xengnttab_unmap(void *xgt, void *start, uint32_t count)
{
    (void)xgt;
    return munmap(start, 4096 * (size_t)count);
}

/* ---- libxenevtchn: an eventfd that never fires ---- */
static int evtchn_fd = -1;
static int next_port = 1;

static void *evtchn_handle(void)
{
    if (evtchn_fd < 0)
        evtchn_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return evtchn_fd < 0 ? NULL : &evtchn_fd;
}
void *xenevtchn_open(void *logger, unsigned flags)
{
    (void)logger; (void)flags;
    return evtchn_handle();
}
void *xenevtchn_fdopen(void *logger, int fd, unsigned flags)
{
    (void)logger; (void)fd; (void)flags;
    return evtchn_handle();
}
int xenevtchn_close(void *xce) { (void)xce; return 0; }
int xenevtchn_fd(void *xce) { (void)xce; return evtchn_fd; }
int xenevtchn_bind_virq(void *xce, unsigned virq) { (void)xce; (void)virq; return next_port++; }
int xenevtchn_bind_interdomain(void *xce, uint32_t domid, unsigned remote)
{
    (void)xce; (void)domid; (void)remote;
    return next_port++;
}
int xenevtchn_pending(void *xce) { (void)xce; errno = EAGAIN; return -1; }
int xenevtchn_unmask(void *xce, unsigned port) { (void)xce; (void)port; return 0; }
int xenevtchn_notify(void *xce, unsigned port) { (void)xce; (void)port; return 0; }
int xenevtchn_unbind(void *xce, unsigned port) { (void)xce; (void)port; return 0; }

/* ---- libc overrides ---- */

/* C xenstored reads dom0's event channel and maps its ring page from here. */
static int fake_proc_file(const char *path)
{
    int fd;
    if (strcmp(path, "/proc/xen/xsd_port") == 0) {
        fd = memfd_create("xsd_port", MFD_CLOEXEC);
        if (fd >= 0 && (write(fd, "1", 1) != 1 || lseek(fd, 0, SEEK_SET) != 0)) {
            close(fd);
            return -1;
        }
        return fd;
    }
    if (strcmp(path, "/proc/xen/xsd_kva") == 0) {
        fd = memfd_create("xsd_kva", MFD_CLOEXEC);
        if (fd >= 0 && ftruncate(fd, 4096) != 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
    return -2;
}

#define RUNDIR "/var/run/xenstored"

/* Rewrites RUNDIR/... into $PYXS_STUB_RUNDIR/...; returns path otherwise. */
static const char *redirect(const char *path, char *buf, size_t size)
{
    const char *dir = getenv("PYXS_STUB_RUNDIR");
    size_t n = strlen(RUNDIR);
    if (!dir || !path || strncmp(path, RUNDIR, n) != 0
        || (path[n] != '/' && path[n] != '\0'))
        return path;
    if ((size_t)snprintf(buf, size, "%s%s", dir, path + n) >= size)
        return path;
    return buf;
}

typedef int (*open_fn)(const char *, int, ...);

static int do_open(const char *name, const char *path, int flags, mode_t mode)
{
    char buf[4096];
    open_fn real = (open_fn)dlsym(RTLD_NEXT, name);
    int fd = fake_proc_file(path);
    if (fd != -2)
        return fd;
    return real(redirect(path, buf, sizeof(buf)), flags, mode);
}

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return do_open("open", path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return do_open("open64", path, flags, mode);
}

int unlink(const char *path)
{
    char buf[4096];
    int (*real)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
    return real(redirect(path, buf, sizeof(buf)));
}

int mkdir(const char *path, mode_t mode)
{
    char buf[4096];
    int (*real)(const char *, mode_t) =
        (int (*)(const char *, mode_t))dlsym(RTLD_NEXT, "mkdir");
    return real(redirect(path, buf, sizeof(buf)), mode);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    int (*real)(int, const struct sockaddr *, socklen_t) =
        (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_UNIX) {
        struct sockaddr_un copy;
        char buf[sizeof(copy.sun_path)];
        const struct sockaddr_un *un = (const struct sockaddr_un *)addr;
        const char *path = redirect(un->sun_path, buf, sizeof(buf));
        if (path != un->sun_path) {
            memset(&copy, 0, sizeof(copy));
            copy.sun_family = AF_UNIX;
            strncpy(copy.sun_path, path, sizeof(copy.sun_path) - 1);
            return real(fd, (const struct sockaddr *)&copy, sizeof(copy));
        }
    }
    return real(fd, addr, len);
}

/* oxenstored asks for /proc/sys/fs/nr_open descriptors; clamp to the hard limit. */
int setrlimit(__rlimit_resource_t resource, const struct rlimit *rlim)
{
    int (*real)(__rlimit_resource_t, const struct rlimit *) =
        (int (*)(__rlimit_resource_t, const struct rlimit *))dlsym(RTLD_NEXT, "setrlimit");
    struct rlimit hard, clamped = *rlim;
    if (getrlimit(resource, &hard) == 0 && hard.rlim_max != RLIM_INFINITY) {
        if (clamped.rlim_max > hard.rlim_max)
            clamped.rlim_max = hard.rlim_max;
        if (clamped.rlim_cur > clamped.rlim_max)
            clamped.rlim_cur = clamped.rlim_max;
    }
    return real(resource, &clamped);
}
