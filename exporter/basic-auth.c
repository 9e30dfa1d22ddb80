/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <crypt.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "basic-auth.h"
#include "lib/child.h"

#define DIGEST_SIZE 32U

struct BasicAuthCheck {
        BasicAuth *auth;
        Child *child;
        uint8_t digest[DIGEST_SIZE];
        bool user_exists;
        BasicAuthDone done;
        void *userdata;
        BasicAuthCheck *next;
};

struct BasicAuth {
        sd_event *event;
        BasicAuthCheck *checks;
        unsigned n_checks;
        uint8_t cache[BASIC_AUTH_CACHE_SIZE][DIGEST_SIZE];
        bool cache_used[BASIC_AUTH_CACHE_SIZE];
        unsigned cache_next; /* replaced round-robin */
};

bool basic_auth_verify_blocking(const char *password, const char *hash) {
        struct crypt_data *data;
        const char *out;
        bool ok;

        data = calloc(1, sizeof *data);
        if (!data)
                return false;
        out = crypt_rn(password, hash, data, (int) sizeof *data);
        ok = out && out[0] != '*' && strlen(out) == strlen(hash) && CRYPTO_memcmp(out, hash, strlen(hash)) == 0;
        explicit_bzero(data, sizeof *data);
        free(data);
        return ok;
}

/* A digest of what was checked: the cache never holds a password, and a
 * changed hash (the user's password was changed) misses. */
static int digest(const char *user, const char *password, const char *hash, uint8_t ret[static DIGEST_SIZE]) {
        const char *parts[] = { user, password, hash };
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned len = 0;
        bool ok;

        if (!ctx)
                return -ENOMEM;
        ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
        for (size_t i = 0; ok && i < ELEMENTSOF(parts); i++) {
                /* Length-prefixed, so that "ab"+"c" and "a"+"bc" differ. */
                uint64_t n = strlen(parts[i]);
                ok = EVP_DigestUpdate(ctx, &n, sizeof n) == 1 && EVP_DigestUpdate(ctx, parts[i], n) == 1;
        }
        ok = ok && EVP_DigestFinal_ex(ctx, ret, &len) == 1 && len == DIGEST_SIZE;
        EVP_MD_CTX_free(ctx);
        return ok ? 0 : -EIO;
}

static bool cache_contains(const BasicAuth *a, const uint8_t d[static DIGEST_SIZE]) {
        bool found = false;

        /* Every slot is compared, without stopping at a match. */
        for (unsigned i = 0; i < BASIC_AUTH_CACHE_SIZE; i++)
                found |= a->cache_used[i] && CRYPTO_memcmp(a->cache[i], d, DIGEST_SIZE) == 0;
        return found;
}

static void cache_add(BasicAuth *a, const uint8_t d[static DIGEST_SIZE]) {
        if (cache_contains(a, d))
                return;
        memcpy(a->cache[a->cache_next], d, DIGEST_SIZE);
        a->cache_used[a->cache_next] = true;
        a->cache_next = (a->cache_next + 1) % BASIC_AUTH_CACHE_SIZE;
}

void basic_auth_flush(BasicAuth *a) {
        if (!a)
                return;
        explicit_bzero(a->cache, sizeof a->cache);
        memset(a->cache_used, 0, sizeof a->cache_used);
        a->cache_next = 0;
}

unsigned basic_auth_n_checks(const BasicAuth *a) {
        return a ? a->n_checks : 0;
}

int basic_auth_new(sd_event *e, BasicAuth **ret) {
        BasicAuth *a;

        assert_return(e, -EINVAL);
        assert_return(ret, -EINVAL);

        a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        a->event = sd_event_ref(e);
        *ret = a;
        return 0;
}

static void check_unlink(BasicAuthCheck *c) {
        for (BasicAuthCheck **i = &c->auth->checks; *i; i = &(*i)->next)
                if (*i == c) {
                        *i = c->next;
                        c->auth->n_checks--;
                        return;
                }
}

BasicAuthCheck *basic_auth_check_cancel(BasicAuthCheck *c) {
        if (!c)
                return NULL;
        check_unlink(c);
        child_abandon(c->child);
        explicit_bzero(c->digest, sizeof c->digest);
        free(c);
        return NULL;
}

BasicAuth *basic_auth_free(BasicAuth *a) {
        if (!a)
                return NULL;
        while (a->checks)
                basic_auth_check_cancel(a->checks);
        basic_auth_flush(a);
        sd_event_unref(a->event);
        free(a);
        return NULL;
}

typedef struct CheckArgs {
        const char *password;
        const char *hash;
} CheckArgs;

static int check_in_child(int out_fd, void *arg) {
        const CheckArgs *args = arg;

        /* The loop, the probes and the watchdog come first. */
        (void) setpriority(PRIO_PROCESS, 0, 10);
        return basic_auth_verify_blocking(args->password, args->hash) ? 0 : 1;
}

static void on_check_done(Child *child, int status, const char *output, size_t size, void *userdata) {
        BasicAuthCheck *c = userdata;
        bool ok = status == 0 && c->user_exists;
        BasicAuthDone done = c->done;
        void *done_userdata = c->userdata;

        if (ok)
                cache_add(c->auth, c->digest);
        basic_auth_check_cancel(c); /* frees the exited child too */
        done(ok, done_userdata);
}

int basic_auth_check(BasicAuth *a, const char *user, const char *password, const char *hash,
                     const char *dummy_hash, BasicAuthDone done, void *userdata, BasicAuthCheck **ret_check) {
        uint8_t d[DIGEST_SIZE];
        BasicAuthCheck *c;
        int r;

        assert_return(a, -EINVAL);
        assert_return(user && password, -EINVAL);
        assert_return(hash || dummy_hash, -EINVAL);
        assert_return(done, -EINVAL);
        assert_return(ret_check, -EINVAL);

        if (hash) {
                r = digest(user, password, hash, d);
                if (r < 0)
                        return r;
                if (cache_contains(a, d)) {
                        explicit_bzero(d, sizeof d);
                        return 1;
                }
        }
        if (a->n_checks >= BASIC_AUTH_MAX_CHECKS) {
                explicit_bzero(d, sizeof d);
                return -EBUSY;
        }

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->auth = a;
        c->user_exists = hash;
        if (hash)
                memcpy(c->digest, d, sizeof d);
        explicit_bzero(d, sizeof d);
        c->done = done;
        c->userdata = userdata;

        /* The child gets its own copy of the password with its memory; the
         * parent keeps none. */
        r = child_spawn(a->event, "basic-auth", check_in_child,
                        &(CheckArgs) { .password = password, .hash = hash ?: dummy_hash }, 0, on_check_done, c,
                        &c->child);
        if (r < 0) {
                free(c);
                return r;
        }
        c->next = a->checks;
        a->checks = c;
        a->n_checks++;
        *ret_check = c;
        return 0;
}
