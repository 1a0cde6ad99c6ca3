/*
 * A fake of the Xen tool libraries guestcore's live-domain source calls,
 * with the same ABI as Xen 4.17's libxenforeignmemory.so.1 and
 * libxenctrl.so.4.17 (only the functions used), serving one HVM domain's
 * memory from a raw file, and giving it back (decrease_reservation). For
 * tests on machines without Xen:
 *
 *   cc -shared -fPIC -O2 -o libfakexen.so test/native/fakexen.c
 *   GUESTCORE_XEN_FOREIGNMEMORY_LIB=./libfakexen.so GUESTCORE_XENCTRL_LIB=./libfakexen.so
 *
 * Environment (read at each *_open):
 *   GUESTCORE_FAKEXEN_MEM        raw memory file, identity-mapped (pfn i at offset i*4096);
 *                                unset: the opens fail with ENOENT, as without /dev/xen/privcmd
 *   GUESTCORE_FAKEXEN_DOMID      the one domain (default 1)
 *   GUESTCORE_FAKEXEN_ERR_PFNS   pfns that never map ("5,7,100-199"): err[i] = -EINVAL
 *   GUESTCORE_FAKEXEN_LATE_PFNS  pfns that map the first time and fail (-ENOENT) after
 *   GUESTCORE_FAKEXEN_FLAGS      XEN_DOMINF_* flags reported (default hvm_guest|paused = 0xa)
 *   GUESTCORE_FAKEXEN_MAX_GPFN   highest gpfn reported (default: file pages - 1)
 *   GUESTCORE_FAKEXEN_MAX_ORDER  highest extent order decrease_reservation takes (default 18,
 *                                above 9 as dom0's is unless Xen's memop-max-order= lowers it)
 *   GUESTCORE_FAKEXEN_STATE      file holding the released set, one bit per pfn (created
 *                                empty; a file of another size fails the open with EINVAL)
 *   GUESTCORE_FAKEXEN_DESTROY_AFTER_MAPS
 *                                the domain is destroyed (xl destroy) after this many
 *                                xenforeignmemory_map calls of this process: later maps
 *                                fail every page with -ESRCH (Xen's answer for a foreign
 *                                domain that no longer exists; without an error array the
 *                                call fails with ESRCH), getinfolist no longer lists it,
 *                                and maximum_gpfn fails with ESRCH
 *
 * Released gpfns are gone from the fake p2m until fakexen_reset(), across
 * handle closes, as in Xen: they no longer map (err[i] = -EINVAL, what
 * mod_l1_entry answers when get_page_from_gfn finds no page) and no longer
 * count in tot_pages. Without a state file the released set lives in this
 * process; with one it is a shared mapping of the file, reread at each
 * first open, so it outlives the process as Xen's p2m outlives a dom0 tool
 * killed with SIGKILL: a rerun in another process finds the pages gone.
 * Each attempt to map a released pfn is counted (fakexen_released_maps()),
 * so a test can prove a reader never came back for a page it gave away.
 *
 * Failed pages are left PROT_NONE in the returned mapping, so a caller that
 * touches one dies (on Linux, privcmd leaves them unmapped: SIGBUS).
 * fakexen_stats() and fakexen_release_stats() return counters so tests can
 * prove batching.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096UL

typedef enum { XTL_NONE, XTL_DEBUG, XTL_VERBOSE, XTL_DETAIL, XTL_PROGRESS, XTL_INFO, XTL_NOTICE, XTL_WARN, XTL_ERROR, XTL_CRITICAL } xentoollog_level;
typedef struct xentoollog_logger xentoollog_logger;
struct xentoollog_logger {
    void (*vmessage)(xentoollog_logger *logger, xentoollog_level level, int errnoval,
                     const char *context, const char *format, va_list al);
    void (*progress)(xentoollog_logger *logger, const char *context, const char *doing_what,
                     int percent, unsigned long done, unsigned long total);
    void (*destroy)(xentoollog_logger *logger);
};

static void logat(xentoollog_logger *lg, xentoollog_level level, int errnoval, const char *context, const char *fmt, va_list ap)
{
    if (lg && lg->vmessage) lg->vmessage(lg, level, errnoval, context, fmt, ap);
}

static void logmsg(xentoollog_logger *lg, int errnoval, const char *context, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    logat(lg, XTL_ERROR, errnoval, context, fmt, ap);
    va_end(ap);
}

/* libxenctrl's DPRINTF: XTL_DETAIL, no errno, context "xc". */
static void dprintf_xc(xentoollog_logger *lg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    logat(lg, XTL_DETAIL, -1, "xc", fmt, ap);
    va_end(ap);
}

static struct {
    uint64_t map_calls, pages_mapped, unmap_calls, outstanding, opens, closes;
} stats;
static struct {
    uint64_t calls, extents, pages, xc_opens, xc_closes;
} relstats;

/* Shared state: the file mapping and the pfn sets. */
static const uint8_t *mem;
static uint64_t npages;
static uint8_t *errbits, *latebits, *seenbits;
static uint32_t domid;
static uint32_t flags;
static uint64_t max_gpfn;
static unsigned max_order;
static int refs;
/* Map calls after which the domain is gone (0: never), and whether it is. */
static uint64_t destroy_after;
static int destroyed;
/* Released gpfns and their count: kept across teardown (Xen's p2m outlives handles). */
static uint8_t *relbits;
static uint64_t rel_npages, released;
/* relbits is a MAP_SHARED mapping of GUESTCORE_FAKEXEN_STATE of rel_len bytes (else calloc'd). */
static int rel_shared;
static size_t rel_len;
/* xenforeignmemory_map requests of a released pfn. */
static uint64_t released_maps;

static int bit(const uint8_t *b, uint64_t i) { return b && i < npages && (b[i >> 3] >> (i & 7)) & 1; }

static uint8_t *parse_set(const char *s)
{
    uint8_t *b = calloc((npages + 7) / 8 + 1, 1);
    while (s && *s) {
        char *end;
        uint64_t a = strtoull(s, &end, 0), z = a;
        if (*end == '-') z = strtoull(end + 1, &end, 0);
        for (uint64_t i = a; i <= z && i < npages; i++) b[i >> 3] |= 1 << (i & 7);
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' ) break;
    }
    return b;
}

/* Pages released now: with a state file another process may have released some meanwhile. */
static uint64_t released_now(void)
{
    if (!rel_shared) return released;
    uint64_t n = 0;
    for (uint64_t i = 0; i < rel_npages; i++) n += (relbits[i >> 3] >> (i & 7)) & 1;
    return n;
}

static void teardown(void);

static void drop_released(void)
{
    if (rel_shared) munmap(relbits, rel_len);
    else free(relbits);
    relbits = NULL;
    rel_shared = 0;
    rel_len = 0;
}

/* Map the state file as the released set (npages known); -1 with errno on failure. */
static int load_state(xentoollog_logger *lg, const char *ctx, const char *path)
{
    size_t len = (npages + 7) / 8 + 1;
    drop_released();
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        logmsg(lg, e, ctx, "fake: cannot open state file %s", path);
        if (fd >= 0) close(fd);
        errno = e;
        return -1;
    }
    if (st.st_size == 0 && ftruncate(fd, len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (st.st_size != 0 && (uint64_t)st.st_size != len) {
        logmsg(lg, EINVAL, ctx, "fake: state file %s is %lld bytes, not %zu for %llu pages", path,
               (long long)st.st_size, len, (unsigned long long)npages);
        close(fd);
        errno = EINVAL;
        return -1;
    }
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return -1;
    relbits = p;
    rel_shared = 1;
    rel_len = len;
    rel_npages = npages;
    released = released_now();
    return 0;
}

static int setup(xentoollog_logger *lg, const char *ctx)
{
    const char *path = getenv("GUESTCORE_FAKEXEN_MEM");
    if (refs++ > 0) return 0;
    if (!path) {
        refs--;
        logmsg(lg, ENOENT, ctx, "Could not obtain handle on privileged command interface (fake: %s unset)", "GUESTCORE_FAKEXEN_MEM");
        errno = ENOENT;
        return -1;
    }
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        refs--;
        logmsg(lg, e, ctx, "fake: cannot open %s", path);
        if (fd >= 0) close(fd);
        errno = e;
        return -1;
    }
    npages = st.st_size / PAGE;
    mem = npages ? mmap(NULL, npages * PAGE, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (mem == MAP_FAILED) { refs--; mem = NULL; errno = ENOMEM; return -1; }
    domid = getenv("GUESTCORE_FAKEXEN_DOMID") ? strtoul(getenv("GUESTCORE_FAKEXEN_DOMID"), NULL, 0) : 1;
    flags = getenv("GUESTCORE_FAKEXEN_FLAGS") ? strtoul(getenv("GUESTCORE_FAKEXEN_FLAGS"), NULL, 0) : (1u << 1) | (1u << 3);
    max_gpfn = getenv("GUESTCORE_FAKEXEN_MAX_GPFN") ? strtoull(getenv("GUESTCORE_FAKEXEN_MAX_GPFN"), NULL, 0) : npages - 1;
    errbits = parse_set(getenv("GUESTCORE_FAKEXEN_ERR_PFNS"));
    latebits = parse_set(getenv("GUESTCORE_FAKEXEN_LATE_PFNS"));
    seenbits = parse_set(NULL);
    max_order = getenv("GUESTCORE_FAKEXEN_MAX_ORDER") ? strtoul(getenv("GUESTCORE_FAKEXEN_MAX_ORDER"), NULL, 0) : 18;
    destroy_after = getenv("GUESTCORE_FAKEXEN_DESTROY_AFTER_MAPS") ? strtoull(getenv("GUESTCORE_FAKEXEN_DESTROY_AFTER_MAPS"), NULL, 0) : 0;
    const char *state = getenv("GUESTCORE_FAKEXEN_STATE");
    if (state) {
        if (load_state(lg, ctx, state) < 0) {
            int e = errno;
            refs = 1;
            teardown();
            errno = e;
            return -1;
        }
    } else if (rel_shared || !relbits || rel_npages != npages) {
        drop_released();
        relbits = parse_set(NULL);
        rel_npages = npages;
        released = 0;
    }
    return 0;
}

static void teardown(void)
{
    if (--refs > 0) return;
    if (mem) munmap((void *)mem, npages * PAGE);
    mem = NULL;
    free(errbits); free(latebits); free(seenbits);
    errbits = latebits = seenbits = NULL;
}

/* ---- libxenforeignmemory ------------------------------------------------ */

typedef struct { int magic; xentoollog_logger *logger; } xenforeignmemory_handle;

xenforeignmemory_handle *xenforeignmemory_open(xentoollog_logger *logger, unsigned open_flags)
{
    (void)open_flags;
    if (setup(logger, "xenforeignmemory") < 0) return NULL;
    xenforeignmemory_handle *h = calloc(1, sizeof(*h));
    h->magic = 0x5eed;
    h->logger = logger;
    stats.opens++;
    return h;
}

int xenforeignmemory_close(xenforeignmemory_handle *h)
{
    if (!h) return 0;
    if (h->magic != 0x5eed) abort();
    h->magic = 0;
    free(h);
    stats.closes++;
    teardown();
    return 0;
}

void *xenforeignmemory_map(xenforeignmemory_handle *h, uint32_t dom, int prot, size_t pages,
                           const uint64_t arr[], int err[])
{
    if (!h || h->magic != 0x5eed) abort();
    stats.map_calls++;
    if (destroy_after && stats.map_calls > destroy_after) destroyed = 1;
    if (dom != domid) { errno = ESRCH; return NULL; }
    if (prot & ~PROT_READ) { errno = EPERM; return NULL; }
    if (pages == 0 || pages > (1u << 20)) { errno = EINVAL; return NULL; }
    uint8_t *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { errno = ENOMEM; return NULL; }
    stats.pages_mapped += pages;
    stats.outstanding++;
    for (size_t i = 0; i < pages; i++) {
        uint64_t pfn = arr[i];
        int e = 0;
        if (destroyed) {
            if (!err) { munmap(p, pages * PAGE); stats.outstanding--; errno = ESRCH; return NULL; }
            err[i] = -ESRCH;
            continue;
        }
        if (bit(relbits, pfn)) released_maps++;
        if (pfn >= npages || pfn > max_gpfn || bit(errbits, pfn) || bit(relbits, pfn)) e = -EINVAL;
        else if (bit(latebits, pfn) && bit(seenbits, pfn)) e = -ENOENT;
        if (!e) {
            memcpy(p + i * PAGE, mem + pfn * PAGE, PAGE);
            seenbits[pfn >> 3] |= 1 << (pfn & 7);
        }
        if (err) err[i] = e;
        else if (e) { munmap(p, pages * PAGE); stats.outstanding--; errno = -e; return NULL; }
    }
    mprotect(p, pages * PAGE, PROT_READ); /* read-only, like the real mapping */
    for (size_t i = 0; i < pages; i++)
        if (err && err[i]) mprotect(p + i * PAGE, PAGE, PROT_NONE);
    return p;
}

int xenforeignmemory_unmap(xenforeignmemory_handle *h, void *addr, size_t pages)
{
    if (!h || h->magic != 0x5eed) abort();
    stats.unmap_calls++;
    stats.outstanding--;
    return munmap(addr, pages * PAGE);
}

/* ---- libxenctrl ------------------------------------------------------- */

typedef struct { int magic; xentoollog_logger *logger; } xc_interface;

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger, unsigned open_flags)
{
    (void)dombuild_logger; (void)open_flags;
    if (setup(logger, "xencall") < 0) return NULL;
    xc_interface *x = calloc(1, sizeof(*x));
    x->magic = 0xc0de;
    x->logger = logger;
    relstats.xc_opens++;
    return x;
}

int xc_interface_close(xc_interface *x)
{
    if (!x) return 0;
    if (x->magic != 0xc0de) abort();
    x->magic = 0;
    free(x);
    relstats.xc_closes++;
    teardown();
    return 0;
}

/* struct xen_domctl_getdomaininfo, Xen 4.17 (XEN_DOMCTL_INTERFACE_VERSION 0x15): 112 bytes. */
struct domaininfo {
    uint16_t domain, pad1;
    uint32_t flags;
    uint64_t tot_pages, max_pages, outstanding_pages, shr_pages, paged_pages, shared_info_frame, cpu_time;
    uint32_t nr_online_vcpus, max_vcpu_id, ssidref;
    uint8_t handle[16];
    uint32_t cpupool;
    uint8_t gpaddr_bits, pad2[7];
    uint32_t emulation_flags, misc_flags;
};
_Static_assert(sizeof(struct domaininfo) == 112, "xen_domctl_getdomaininfo is 112 bytes in 4.17");

int xc_domain_getinfolist(xc_interface *x, uint32_t first_domain, unsigned int max_domains, struct domaininfo *info)
{
    if (!x || x->magic != 0xc0de) abort();
    if (max_domains == 0 || first_domain > domid || destroyed) return 0;
    memset(info, 0, sizeof(*info));
    info->domain = domid;
    info->flags = flags;
    uint64_t bad = 0;
    for (uint64_t i = 0; i < npages; i++) bad += bit(errbits, i);
    info->tot_pages = npages - bad - released_now();
    info->max_pages = npages;
    info->nr_online_vcpus = 1;
    info->gpaddr_bits = 52;
    return 1;
}

int xc_domain_maximum_gpfn(xc_interface *x, uint32_t dom, uint64_t *gpfns)
{
    if (!x || x->magic != 0xc0de) abort();
    if (dom != domid || destroyed) { errno = ESRCH; return -1; }
    *gpfns = max_gpfn;
    return 0;
}

/*
 * XENMEM_decrease_reservation as Xen 4.17 does it (common/memory.c), behind
 * libxenctrl's _exact wrapper: an unknown domain or too high an order frees
 * nothing; otherwise each extent's pages go one by one, and the first page
 * that cannot go (a hole, or already released) stops the call there, its
 * extent not counted although its earlier pages are gone. Anything short of
 * all extents is EINVAL, with libxenctrl's debug message, and the count is lost.
 */
int xc_domain_decrease_reservation_exact(xc_interface *x, uint32_t dom, unsigned long nr_extents,
                                         unsigned int extent_order, uint64_t *extent_start)
{
    if (!x || x->magic != 0xc0de) abort();
    relstats.calls++;
    if (!extent_start) {
        dprintf_xc(x->logger, "decrease_reservation extent_start is NULL!\n");
        errno = EINVAL;
        return -1;
    }
    unsigned long done = 0;
    if (dom == domid && !destroyed && extent_order <= max_order && nr_extents <= (0xffffffffUL >> 6)) {
        for (; done < nr_extents; done++) {
            uint64_t base = extent_start[done];
            for (uint64_t j = 0; j < (1ULL << extent_order); j++) {
                uint64_t pfn = base + j;
                if (pfn >= npages || pfn > max_gpfn || bit(errbits, pfn) || bit(relbits, pfn)) goto out;
                relbits[pfn >> 3] |= 1 << (pfn & 7);
                released++;
                relstats.pages++;
            }
            relstats.extents++;
        }
    }
out:
    if (done == nr_extents) return 0;
    dprintf_xc(x->logger, "Failed deallocation for dom %d: %ld extents of order %d\n", dom, nr_extents, extent_order);
    errno = EINVAL;
    return -1;
}

/* ---- for tests ------------------------------------------------------------ */

void fakexen_stats(uint64_t out[6])
{
    out[0] = stats.map_calls;
    out[1] = stats.pages_mapped;
    out[2] = stats.unmap_calls;
    out[3] = stats.outstanding;
    out[4] = stats.opens;
    out[5] = stats.closes;
}

/* decrease_reservation calls, extents and pages freed, pages released now, libxenctrl opens and closes. */
void fakexen_release_stats(uint64_t out[6])
{
    out[0] = relstats.calls;
    out[1] = relstats.extents;
    out[2] = relstats.pages;
    out[3] = released_now();
    out[4] = relstats.xc_opens;
    out[5] = relstats.xc_closes;
}

/* xenforeignmemory_map requests of a pfn released at the time. */
uint64_t fakexen_released_maps(void)
{
    return released_maps;
}

/* Counters to zero, and every released gpfn back in the p2m (in the state file too, if one is mapped). */
void fakexen_reset(void)
{
    memset(&stats, 0, sizeof(stats));
    memset(&relstats, 0, sizeof(relstats));
    if (relbits) memset(relbits, 0, (rel_npages + 7) / 8 + 1);
    released = 0;
    released_maps = 0;
    destroyed = 0;
}
