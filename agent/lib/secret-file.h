/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#define SECRET_MAX 1024

/* Reads a password file: one line of at most SECRET_MAX bytes, a final
 * newline (LF or CRLF) dropped. On failure *ret_why says why in words fit
 * for a config error, never quoting the file's contents; the buffer that held
 * the secret is wiped. The caller wipes and frees *ret. */
int read_secret_file(const char *path, char **ret, const char **ret_why);
