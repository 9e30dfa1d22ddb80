/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdint.h>

/* Strict decimal conversion of a whole string: digits only, no sign, no
 * whitespace, no leading zeros (so that "010" is not silently read as ten by
 * one reader and eight by another). Returns -EINVAL on anything else, -ERANGE
 * when the value does not fit. Use this instead of strtoul()/atoi(). */
int safe_atou64(const char *s, uint64_t *ret);
