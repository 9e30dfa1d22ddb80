/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The peer port: one line over TCP that tells another agent whether this
 * node renews its cluster lease and what it is doing,
 *
 *   rupost-agent-peer 1 NAME db=ok|lost state=STATE members=ok|failing
 *
 * A node that cannot renew asks every peer of its last view at once
 * (cluster-rules.h says what it makes of the answers). Agents of version
 * 0.x sent the line without state=; it parses, with an unknown state. */

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "lib/macro.h"
#include "lib/time-util.h"

#define PEER_LINE_MAX 256

typedef struct PeerAnswer {
        char name[64];
        bool db_ok;
        char state[32]; /* "" when the peer did not say */
        bool members_ok; /* false when it did not say */
} PeerAnswer;

int peer_line_format(char *buf, size_t len, const PeerAnswer *a);
/* Parses one line (with or without its newline); -EBADMSG when it is not a
 * peer's answer. */
int peer_line_parse(const char *line, PeerAnswer *ret);

/* ---- answering ---- */

typedef struct PeerListener PeerListener;
/* Fills in this node's answer, at the moment a peer asks. */
typedef void (*PeerAnswerFunc)(PeerAnswer *ret, void *userdata);

int peer_listener_new(sd_event *e, const char *address, PeerAnswerFunc answer, void *userdata,
                      PeerListener **ret);
PeerListener *peer_listener_free(PeerListener *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(PeerListener *, peer_listener_free);

/* ---- asking ---- */

typedef struct PeerTarget {
        const char *name;
        const char *address; /* NULL: cannot be asked, counts as not reached */
        bool live;           /* live in the view: must confirm an outage */
} PeerTarget;

typedef struct PeerPollResult {
        usec_t started;      /* CLOCK_MONOTONIC */
        unsigned asked;
        unsigned reached;    /* answered with a well-formed line naming the node asked */
        unsigned live;
        unsigned live_reached;
        unsigned live_lost;  /* live peers that answered db=lost */
        unsigned ok;         /* peers (live or not) that answered db=ok */
        unsigned live_consent; /* live peers that lost the DB too, are in service and their members healthy */
        char unreached[256]; /* names of the live peers that did not answer, for the log */
} PeerPollResult;

typedef struct PeerPoll PeerPoll;
typedef void (*PeerPollDone)(const PeerPollResult *result, void *userdata);

/* Asks every target at once; `done` is called once, when all answered or
 * at `timeout`, whichever comes first (never from within this call). */
int peer_poll_start(sd_event *e, const PeerTarget *targets, size_t n, usec_t timeout, PeerPollDone done,
                    void *userdata, PeerPoll **ret);
PeerPoll *peer_poll_free(PeerPoll *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(PeerPoll *, peer_poll_free);
