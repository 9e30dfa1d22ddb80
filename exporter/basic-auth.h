/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Checks basic auth passwords against bcrypt hashes without blocking the
 * event loop. A bcrypt check costs tens of milliseconds of CPU by design, so
 * it runs in a forked child at low priority, and at most
 * BASIC_AUTH_MAX_CHECKS run at once: a flood of wrong passwords costs at most
 * that many CPUs' worth of niced work, and is refused (busy) beyond it,
 * rather than queued, so it never holds connections or memory. Passwords
 * that were right are remembered (a digest of user, password and hash), so a
 * scraper pays for bcrypt once and is not slowed down by a flood after that.
 * Wrong passwords are not remembered: a flood of them cannot push the right
 * ones out. A user that does not exist is checked against a real hash
 * anyway and always refused, so that timing does not tell which users exist. */

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "lib/macro.h"

#define BASIC_AUTH_MAX_CHECKS 2U
#define BASIC_AUTH_CACHE_SIZE 64U

typedef struct BasicAuth BasicAuth;
typedef struct BasicAuthCheck BasicAuthCheck;

/* ok: the password matched the hash of an existing user. The check is freed
 * after the callback returns. */
typedef void (*BasicAuthDone)(bool ok, void *userdata);

int basic_auth_new(sd_event *e, BasicAuth **ret);
/* Cancels the checks in flight; their callbacks are not called. */
BasicAuth *basic_auth_free(BasicAuth *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(BasicAuth *, basic_auth_free);

/* hash is the user's bcrypt hash, or NULL for a user that does not exist
 * (dummy_hash is then checked, so the answer takes as long).
 * Returns 1 when the password is known to be right (no callback), 0 when a
 * check started (done is called later; *ret_check cancels it), -EBUSY when
 * BASIC_AUTH_MAX_CHECKS are in flight, or another negative errno. */
int basic_auth_check(BasicAuth *a, const char *user, const char *password, const char *hash,
                     const char *dummy_hash, BasicAuthDone done, void *userdata, BasicAuthCheck **ret_check);
/* Accepts NULL; returns NULL. */
BasicAuthCheck *basic_auth_check_cancel(BasicAuthCheck *c);

/* Forgets the remembered passwords (when the users change). */
void basic_auth_flush(BasicAuth *a);
unsigned basic_auth_n_checks(const BasicAuth *a);

/* Whether password matches a crypt(3) hash, compared in constant time. Blocks
 * for as long as the hash's cost says. */
bool basic_auth_verify_blocking(const char *password, const char *hash);
