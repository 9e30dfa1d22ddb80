/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The postfix probe's child looks at the queue (it may be on NFS, where any
 * stat can hang) and writes a small text report; the parent parses it here.
 * Pure, for tests and the fuzzer. The report:
 *
 *     master running 1234          (or not-locked, no-pid-file, locked-dead PID, error ERRNO)
 *     queue maildrop 0 0           (messages, oldest time in seconds since the epoch or 0)
 *     queue deferred error 13      (the queue could not be read: errno)
 *     end
 *
 * Also here: reading the arrival time out of a Postfix queue file, whose
 * records are a type byte, a length in 7-bit groups (low group first, high
 * bit set when more follow), and the data. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/macro.h"

typedef enum PostfixQueue {
        POSTFIX_QUEUE_MAILDROP,
        POSTFIX_QUEUE_INCOMING,
        POSTFIX_QUEUE_ACTIVE,
        POSTFIX_QUEUE_DEFERRED,
        POSTFIX_QUEUE_HOLD,
        _POSTFIX_QUEUE_MAX,
        _POSTFIX_QUEUE_INVALID = -EINVAL,
} PostfixQueue;

const char *postfix_queue_to_string(PostfixQueue q) _pure_;
PostfixQueue postfix_queue_from_string(const char *s) _pure_;

typedef enum PostfixMaster {
        POSTFIX_MASTER_RUNNING,     /* pid/master.pid is locked and its pid lives here */
        POSTFIX_MASTER_NOT_LOCKED,  /* the file is there, nobody holds its lock */
        POSTFIX_MASTER_NO_PID_FILE,
        POSTFIX_MASTER_LOCKED_DEAD, /* locked, but its pid does not run on this host */
        POSTFIX_MASTER_ERROR,       /* could not tell: see master_error */
        _POSTFIX_MASTER_MAX,
        _POSTFIX_MASTER_INVALID = -EINVAL,
} PostfixMaster;

const char *postfix_master_to_string(PostfixMaster m) _pure_;
PostfixMaster postfix_master_from_string(const char *s) _pure_;

typedef struct PostfixQueueReport {
        bool present;
        int error;         /* errno when the queue could not be read, else 0 */
        uint64_t messages;
        int64_t oldest;    /* seconds since the epoch; 0 when empty */
} PostfixQueueReport;

typedef struct PostfixReport {
        PostfixMaster master;
        pid_t master_pid;
        int master_error;
        PostfixQueueReport queues[_POSTFIX_QUEUE_MAX];
} PostfixReport;

#define POSTFIX_REPORT_MAX 4096

/* Parses a whole report. On failure returns -EBADMSG and describes the
 * first problem (with its line number) in `error`. A report must name the
 * master exactly once, each queue at most once, and end with "end". */
int postfix_report_parse(const char *text, size_t size, PostfixReport *ret, char *error, size_t error_size);

/* The arrival time ('T' record: "seconds microseconds") from the start of a
 * queue file. Returns -ENOENT when the bytes hold no such record before the
 * message content starts, -EBADMSG for records that do not parse. */
int postfix_queue_file_arrival(const void *data, size_t size, int64_t *ret);
