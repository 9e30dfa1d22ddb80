/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <sys/types.h>

#define SECRET_MAX 1024

/* Reads a password file: one line of at most SECRET_MAX bytes, a final
 * newline (LF or CRLF) dropped. On failure *ret_why says why in words fit
 * for a config error, never quoting the file's contents; the buffer that held
 * the secret is wiped. The caller wipes and frees *ret. A file that others
 * than its owner may open is used, with a warning (secret_file_warn_mode()). */
int read_secret_file(const char *path, char **ret, const char **ret_why);

/* Who besides the owner may get at a secret with this mode, in words for a
 * warning ("every user can read it"), or NULL when only the owner can: any
 * bit of 077, as ssh judges a private key. Pure, for tests. */
const char *secret_mode_problem(mode_t mode);

/* Logs a warning when secret_mode_problem() finds one. The secret is used all
 * the same, as before: refusing it would stop an agent that ran yesterday,
 * and a group the agent shares with its readers on purpose is legitimate. */
void secret_file_warn_mode(const char *path, mode_t mode);
