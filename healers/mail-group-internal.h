/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* Shared by mail-group.c (the connection, ordered stop and start),
 * mail-group-fence.c and mail-group-settled.c. Not for other modules. */

#include "lib/buf.h"
#include "mail-group.h"
#include "unit-props.h"

/* JobRemoved may overtake the reply that names the job; remember a few. */
#define RECENT_JOBS 16

typedef enum GroupOp {
        GROUP_IDLE,
        GROUP_STOPPING,
        GROUP_STARTING,
        GROUP_FENCING,
} GroupOp;

typedef struct RecentJob {
        char *path;
        char *result;
} RecentJob;

typedef struct FenceUnit {
        sd_bus_slot *kill_call;
        sd_bus_slot *stop_call;
        sd_bus_slot *state_call;
        unsigned sent_generation; /* the connection kill and stop went out on */
        bool stop_accepted;
        bool confirmed;
        bool state_known;
        UnitProps last;
        /* The last failure of each kind of call, for the report. */
        char kill_problem[128];
        char stop_problem[128];
        char state_problem[128];
} FenceUnit;

typedef struct SettledQuery SettledQuery;

struct MailGroup {
        sd_event *event;
        sd_bus *bus;
        bool bus_shared;   /* given by the caller: unref, never close */
        unsigned generation; /* bumped at each new connection */
        unsigned reconnects;
        MailGroupOpenBus open_bus;
        void *open_bus_userdata;
        sd_bus_slot *job_removed;
        sd_bus_slot *disconnected;

        char **units;
        size_t n_units;
        usec_t stop_timeout;
        usec_t start_timeout;

        GroupOp op;
        MailGroupDone done;
        void *userdata;

        /* Ordered stop and start. */
        size_t step;       /* how many units of the operation are done */
        bool killed;       /* the current unit got SIGKILL after its stop timeout */
        unsigned resends;  /* of the current step, after a broken connection */
        sd_bus_slot *call; /* StartUnit/StopUnit/KillUnit in flight */
        char *job;         /* the job we wait for */
        sd_event_source *timer;
        sd_event_source *resend_timer;
        Buf errors;        /* what went wrong during a stop, for the report */
        RecentJob recent[RECENT_JOBS];
        size_t recent_next;

        /* Fencing. */
        FenceUnit *fence;  /* n_units, in start order */
        sd_event_source *fence_deadline;
        sd_event_source *fence_tick;
        usec_t fence_timeout;

        SettledQuery *query;
};

/* The group's connection, opened again if it broke. */
int mail_group_bus(MailGroup *g, sd_bus **ret);
/* Ends the operation in flight and calls its callback. */
void mail_group_finish(MailGroup *g, int r, const char *error);

int fence_begin(MailGroup *g, usec_t timeout);
void fence_reset(MailGroup *g);
/* A new connection: the slots on the old one are gone. */
void fence_drop_calls(MailGroup *g);

SettledQuery *settled_query_free(SettledQuery *q);
