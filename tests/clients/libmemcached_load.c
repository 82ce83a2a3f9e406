/*
 * libmemcached_load: drives real memcached servers (or twemproxy) with
 * libmemcached, the C client many applications link, so that
 * tests/servers_counters.rs can compare what memtap sees on the wire with
 * what the servers count themselves (`stats`).
 *
 * Usage: libmemcached_load direct HOST:PORT[,HOST:PORT...]
 *        libmemcached_load small  HOST:PORT[,HOST:PORT...]
 *        libmemcached_load proxy  HOST:PORT
 *
 * direct: every mode libmemcached has, against the servers themselves:
 *   text      memcached_mget of 5,000 keys in one call (half of them
 *             present: one `get k1 ... kN` line per server, tens of KiB
 *             long), a small mget, single gets, gets + cas (good, bad and
 *             missing cas ids), incr/decr hits and misses (and one
 *             non-numeric), touch hits and misses, deletes, add/replace/
 *             append/prepend;
 *   binary    MEMCACHED_BEHAVIOR_BINARY_PROTOCOL: sets, gets, an mget of
 *             3,000 keys (getkq ... noop), incr/decr, touch, deletes;
 *   buffered  MEMCACHED_BEHAVIOR_BUFFER_REQUESTS: sets and deletes sent
 *             only when a read needs the connection;
 *   noreply   MEMCACHED_BEHAVIOR_NOREPLY, text (`... noreply`) and binary
 *             (quiet opcodes: setq, deleteq, incrementq, ...);
 *   expired   keys stored with a 1 s lifetime and read (get) once the
 *             server's clock is past it (get_expired);
 *   flushed   keys stored, flush_all, then read (get_flushed).
 * small: a little of the text and binary traffic above, always waiting
 *   for replies, with multi-gets of 20 keys: the control run, which memtap
 *   must get exactly right whatever else it cannot do yet.
 * proxy: text only (twemproxy speaks no binary): sets, an mget of 6,000
 *   keys (the proxy splits it per server), gets, cas, incr/decr, touch,
 *   deletes.
 *
 * Standard output: one JSON object, the client's own tally per phase and
 * operation of libmemcached's return codes (and fetched hits), which the
 * test prints beside the servers' figures when they disagree. Exit status
 * 0 unless something the load relies on failed (a set that must store, a
 * connection).
 *
 * Binary cas is left out on purpose: libmemcached sends it as a binary
 * SET carrying the cas id, which memcached counts in cas_* but which on
 * the wire is a `set` (see the mapping in tests/servers_counters.rs).
 * memcached_increment_with_initial likewise (a binary increment that
 * creates its item counts in no counter at all).
 */
#include <libmemcached/memcached.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ the tally */

#define MAX_ROWS 256
struct row {
    char phase[16];
    char op[24];
    char what[40];
    long n;
};
static struct row rows[MAX_ROWS];
static int nrows;
static const char *phase = "setup";

static void tally(const char *op, const char *what, long n) {
    for (int i = 0; i < nrows; i++) {
        if (!strcmp(rows[i].phase, phase) && !strcmp(rows[i].op, op) && !strcmp(rows[i].what, what)) {
            rows[i].n += n;
            return;
        }
    }
    if (nrows == MAX_ROWS) {
        fprintf(stderr, "libmemcached_load: tally full\n");
        exit(2);
    }
    snprintf(rows[nrows].phase, sizeof rows[nrows].phase, "%s", phase);
    snprintf(rows[nrows].op, sizeof rows[nrows].op, "%s", op);
    snprintf(rows[nrows].what, sizeof rows[nrows].what, "%s", what);
    rows[nrows].n = n;
    nrows++;
}

static const char *rc_name(memcached_return_t rc) {
    switch (rc) {
    case MEMCACHED_SUCCESS: return "success";
    case MEMCACHED_NOTFOUND: return "notfound";
    case MEMCACHED_DATA_EXISTS: return "data_exists";
    case MEMCACHED_NOTSTORED: return "notstored";
    case MEMCACHED_STORED: return "stored";
    case MEMCACHED_DELETED: return "deleted";
    case MEMCACHED_BUFFERED: return "buffered";
    case MEMCACHED_END: return "end";
    case MEMCACHED_CLIENT_ERROR: return "client_error";
    case MEMCACHED_SERVER_ERROR: return "server_error";
    case MEMCACHED_PROTOCOL_ERROR: return "protocol_error";
    case MEMCACHED_NOT_SUPPORTED: return "not_supported";
    case MEMCACHED_INVALID_ARGUMENTS: return "invalid_arguments";
    default: return memcached_strerror(NULL, rc);
    }
}

static memcached_return_t note(const char *op, memcached_return_t rc) {
    tally(op, rc_name(rc), 1);
    return rc;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "libmemcached_load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void print_tally(void) {
    printf("{");
    const char *sep = "";
    for (int i = 0; i < nrows; i++) {
        printf("%s\"%s/%s/%s\": %ld", sep, rows[i].phase, rows[i].op, rows[i].what, rows[i].n);
        sep = ", ";
    }
    printf("}\n");
}

/* ------------------------------------------------------------ helpers */

static memcached_st *client(const char *servers, int binary, int noreply, int buffered) {
    /* Default distribution (modula) and hash, as applications get them. */
    memcached_st *m = memcached_create(NULL);
    if (!m) die("memcached_create");
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", servers);
    for (char *s = strtok(tmp, ","); s; s = strtok(NULL, ",")) {
        char *colon = strrchr(s, ':');
        if (!colon) die("bad server %s", s);
        *colon = 0;
        if (memcached_server_add(m, s, (in_port_t)atoi(colon + 1)) != MEMCACHED_SUCCESS)
            die("bad server %s", s);
    }
    if (binary) memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    if (noreply) memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NOREPLY, 1);
    if (buffered) memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, 1);
    /* Generous timeouts: a 5,000-key mget answer is a few hundred KiB. */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 10000);
    return m;
}

/* Keys of ~40 bytes, so that a 5,000-key mget line is well over 64 KiB
 * per server with three servers. */
static int key_of(char *buf, size_t cap, const char *family, int i) {
    return snprintf(buf, cap, "%s:%06d:abcdefghijklmnopqrstuvwxyz", family, i);
}

static void must_set(memcached_st *m, const char *op, const char *key, const char *val, time_t exp) {
    memcached_return_t rc = note(op, memcached_set(m, key, strlen(key), val, strlen(val), exp, 0));
    if (rc != MEMCACHED_SUCCESS && rc != MEMCACHED_BUFFERED)
        die("set %s: %s", key, memcached_last_error_message(m));
}

static void set_family(memcached_st *m, const char *family, int from, int to, int step, time_t exp) {
    char k[128];
    for (int i = from; i < to; i += step) {
        key_of(k, sizeof k, family, i);
        must_set(m, "set", k, "v-0123456789", exp);
    }
}

/* One memcached_mget of keys family:from..to, fetched to the end. */
static long mget(memcached_st *m, const char *op, const char *family, int from, int to) {
    int n = to - from;
    char **keys = calloc(n, sizeof *keys);
    size_t *lens = calloc(n, sizeof *lens);
    for (int i = 0; i < n; i++) {
        keys[i] = malloc(128);
        lens[i] = key_of(keys[i], 128, family, from + i);
    }
    memcached_return_t rc = memcached_mget(m, (const char *const *)keys, lens, n);
    if (rc != MEMCACHED_SUCCESS) die("mget %s: %s", op, memcached_last_error_message(m));
    memcached_result_st res;
    memcached_result_create(m, &res);
    long hits = 0;
    while (memcached_fetch_result(m, &res, &rc)) {
        hits++;
    }
    if (rc != MEMCACHED_END && rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND)
        die("fetch %s: %s", op, memcached_strerror(m, rc));
    memcached_result_free(&res);
    tally(op, "keys", n);
    tally(op, "hits", hits);
    for (int i = 0; i < n; i++) free(keys[i]);
    free(keys);
    free(lens);
    return hits;
}

static void get_one(memcached_st *m, const char *op, const char *key) {
    size_t len;
    uint32_t flags;
    memcached_return_t rc;
    char *v = memcached_get(m, key, strlen(key), &len, &flags, &rc);
    note(op, rc);
    free(v);
}

static void gets(memcached_st *m, const char *family, int from, int to, int step) {
    char k[128];
    for (int i = from; i < to; i += step) {
        key_of(k, sizeof k, family, i);
        get_one(m, "get", k);
    }
}

static void arith(memcached_st *m, const char *family, int present, int absent, int rounds) {
    char k[128];
    for (int i = 0; i < present; i++) {
        key_of(k, sizeof k, family, i);
        must_set(m, "set", k, "100", 0);
    }
    uint64_t v;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < present + absent; i++) {
            key_of(k, sizeof k, family, i);
            note("incr", memcached_increment(m, k, strlen(k), 3, &v));
            note("decr", memcached_decrement(m, k, strlen(k), 1, &v));
        }
    }
}

static void touches(memcached_st *m, const char *family, int from, int to) {
    char k[128];
    for (int i = from; i < to; i++) {
        key_of(k, sizeof k, family, i);
        note("touch", memcached_touch(m, k, strlen(k), 3600));
    }
}

static void deletes(memcached_st *m, const char *family, int from, int to) {
    char k[128];
    for (int i = from; i < to; i++) {
        key_of(k, sizeof k, family, i);
        note("delete", memcached_delete(m, k, strlen(k), 0));
    }
}

/* gets (SUPPORT_CAS) then cas: with the id fetched (stored), with a
 * stale id (exists), on a key that is not there (not found). */
static void cas_round(memcached_st *m, const char *family, int n) {
    char k[128];
    set_family(m, family, 0, n, 1, 0);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);
    for (int i = 0; i < n; i++) {
        key_of(k, sizeof k, family, i);
        const char *keys[1] = {k};
        size_t lens[1] = {strlen(k)};
        memcached_return_t rc = memcached_mget(m, keys, lens, 1);
        if (rc != MEMCACHED_SUCCESS) die("gets: %s", memcached_last_error_message(m));
        memcached_result_st res;
        memcached_result_create(m, &res);
        uint64_t cas = 0;
        while (memcached_fetch_result(m, &res, &rc)) cas = memcached_result_cas(&res);
        memcached_result_free(&res);
        if (!cas) die("gets %s: no cas", k);
        tally("gets", "hits", 1);
        if (i % 2 == 0) {
            note("cas", memcached_cas(m, k, strlen(k), "new", 3, 0, 0, cas));
            /* Now stale. */
            note("cas", memcached_cas(m, k, strlen(k), "newer", 5, 0, 0, cas));
        } else {
            note("cas", memcached_cas(m, k, strlen(k), "new", 3, 0, 0, cas + 1000003));
        }
    }
    for (int i = n; i < n + n / 2; i++) {
        key_of(k, sizeof k, family, i);
        note("cas", memcached_cas(m, k, strlen(k), "x", 1, 0, 0, 12345));
    }
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 0);
}

static void storage_misc(memcached_st *m, const char *family) {
    char k[128];
    set_family(m, family, 0, 10, 1, 0);
    for (int i = 0; i < 20; i++) {
        key_of(k, sizeof k, family, i);
        note("add", memcached_add(m, k, strlen(k), "a", 1, 0, 0));
        note("replace", memcached_replace(m, k, strlen(k), "r", 1, 0, 0));
        note("append", memcached_append(m, k, strlen(k), "+", 1, 0, 0));
        note("prepend", memcached_prepend(m, k, strlen(k), "-", 1, 0, 0));
    }
}

/* ------------------------------------------------------------ phases */

static void sleep_until(struct timespec t0, double secs) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
    if (el < secs) usleep((useconds_t)((secs - el) * 1e6));
}

static void direct(const char *servers) {
    struct timespec t0;
    memcached_st *text = client(servers, 0, 0, 0);

    /* Items that live one second: memcached expires an item once its
     * clock (whole seconds) reaches the expiry, so they are gone 2.1 s
     * later, whatever the phase of the clock. */
    phase = "expired";
    set_family(text, "exp", 0, 40, 1, 1);
    clock_gettime(CLOCK_MONOTONIC, &t0);

    phase = "text";
    set_family(text, "mget", 0, 5000, 2, 0);
    mget(text, "mget_big", "mget", 0, 5000);
    mget(text, "mget_small", "mget", 100, 120);
    gets(text, "mget", 0, 100, 1);
    cas_round(text, "cas", 20);
    arith(text, "ctr", 10, 10, 3);
    {
        char k[128];
        key_of(k, sizeof k, "nonnum", 0);
        must_set(text, "set", k, "not-a-number", 0);
        uint64_t v;
        note("incr", memcached_increment(text, k, strlen(k), 1, &v));
    }
    touches(text, "mget", 0, 40); /* even present, odd absent */
    deletes(text, "mget", 1000, 1100);
    storage_misc(text, "misc");

    phase = "binary";
    memcached_st *bin = client(servers, 1, 0, 0);
    set_family(bin, "bin", 0, 3000, 2, 0);
    mget(bin, "mget_big", "bin", 0, 3000);
    mget(bin, "mget_small", "bin", 10, 30);
    gets(bin, "bin", 0, 60, 1);
    arith(bin, "bctr", 10, 10, 2);
    touches(bin, "bin", 100, 140);
    deletes(bin, "bin", 200, 300);
    {
        char k[128];
        for (int i = 0; i < 10; i++) {
            key_of(k, sizeof k, "bin", i);
            note("add", memcached_add(bin, k, strlen(k), "a", 1, 0, 0));
            note("replace", memcached_replace(bin, k, strlen(k), "r", 1, 0, 0));
        }
    }

    phase = "buffered";
    memcached_st *buf = client(servers, 0, 0, 1);
    set_family(buf, "buf", 0, 600, 1, 0);
    deletes(buf, "buf", 0, 50);
    deletes(buf, "buf", 1000, 1030);
    mget(buf, "mget", "buf", 0, 1200);
    gets(buf, "buf", 590, 610, 1);
    note("flush_buffers", memcached_flush_buffers(buf));

    phase = "noreply";
    memcached_st *nr = client(servers, 0, 1, 0);
    set_family(nr, "nr", 0, 300, 1, 0);
    deletes(nr, "nr", 0, 60);
    deletes(nr, "nr", 1000, 1040);
    arith(nr, "nctr", 5, 5, 2);
    touches(nr, "nr", 250, 330);
    mget(nr, "mget", "nr", 0, 400);

    phase = "noreply_bin";
    memcached_st *nb = client(servers, 1, 1, 0);
    set_family(nb, "nb", 0, 300, 1, 0);
    deletes(nb, "nb", 0, 60);
    deletes(nb, "nb", 1000, 1040);
    arith(nb, "nbctr", 5, 5, 2);
    /* A non-quiet read closes every pipeline of quiet requests. */
    mget(nb, "mget", "nb", 0, 400);
    gets(nb, "nb", 290, 310, 1);

    phase = "expired";
    sleep_until(t0, 2.1);
    gets(text, "exp", 0, 30, 1);
    mget(text, "mget", "exp", 30, 40);

    phase = "flushed";
    set_family(text, "fl", 0, 30, 1, 0);
    note("flush_all", memcached_flush(text, 0));
    gets(text, "fl", 0, 30, 1);

    memcached_free(nb);
    memcached_free(nr);
    memcached_free(buf);
    memcached_free(bin);
    memcached_free(text);
}

static void small(const char *servers) {
    memcached_st *text = client(servers, 0, 0, 0);
    phase = "small_text";
    set_family(text, "sm", 0, 40, 2, 0);
    mget(text, "mget", "sm", 0, 20);
    gets(text, "sm", 20, 40, 1);
    cas_round(text, "smcas", 6);
    arith(text, "smctr", 4, 4, 2);
    touches(text, "sm", 0, 10);
    deletes(text, "sm", 30, 40);
    storage_misc(text, "smmisc");
    phase = "small_binary";
    memcached_st *bin = client(servers, 1, 0, 0);
    set_family(bin, "smb", 0, 40, 2, 0);
    mget(bin, "mget", "smb", 0, 20);
    gets(bin, "smb", 20, 40, 1);
    arith(bin, "smbctr", 4, 4, 2);
    touches(bin, "smb", 0, 10);
    deletes(bin, "smb", 30, 40);
    memcached_free(bin);
    memcached_free(text);
}

static void proxy(const char *addr) {
    memcached_st *m = client(addr, 0, 0, 0);
    phase = "proxy";
    set_family(m, "px", 0, 6000, 2, 0);
    mget(m, "mget_big", "px", 0, 6000);
    mget(m, "mget_small", "px", 0, 20);
    gets(m, "px", 0, 100, 1);
    cas_round(m, "pxcas", 20);
    arith(m, "pxctr", 10, 10, 2);
    deletes(m, "px", 2000, 2100);
    storage_misc(m, "pxmisc");
    memcached_free(m);
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "direct") && strcmp(argv[1], "small") && strcmp(argv[1], "proxy")))
        die("usage: %s direct|small|proxy HOST:PORT[,HOST:PORT...]", argv[0]);
    if (!strcmp(argv[1], "direct")) {
        direct(argv[2]);
    } else if (!strcmp(argv[1], "small")) {
        small(argv[2]);
    } else {
        proxy(argv[2]);
    }
    print_tally();
    return 0;
}
