/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mail group against a fake systemd on a direct D-Bus connection (a
 * socketpair; the unit tests have no systemd): the fence kills every unit at
 * once, confirms each one down and reports every unit it could not confirm;
 * a refused call is reported, never taken for a stop; a broken connection is
 * reopened and the work sent again; the settled query tells a booting or
 * starting group from a settled one. */

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "healers/mail-group.h"
#include "healers/unit-props.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "run-until.h"
#include "tests.h"

/* ---- the fake systemd ---- */

typedef struct FakeUnit {
        const char *name;
        char active[32];
        char sub[32];
        uint32_t job_id;
        usec_t enter;
        usec_t stop_takes; /* ExecStop=, unless killed */
        bool refuse_stop;
        bool refuse_kill;
        unsigned kills;
        sd_event_source *job_timer;
        sd_event_source *death_timer;
        struct Fake *fake;
} FakeUnit;

typedef struct Fake {
        sd_event *e;
        FakeUnit units[4];
        size_t n;
        char system_state[32];
        uint32_t next_job;
        sd_bus *server;
        unsigned opens;
        bool drop_at_next_stop; /* close the connection instead of answering */
        Buf calls;              /* "K:a S:a ..." in the order they came */
        sd_event_source *drop;
} Fake;

static FakeUnit *fake_unit(Fake *f, const char *name) {
        for (size_t i = 0; i < f->n; i++)
                if (streq(f->units[i].name, name))
                        return &f->units[i];
        return NULL;
}

static FakeUnit *must_unit(Fake *f, const char *name) {
        FakeUnit *u = fake_unit(f, name);
        if (!u)
                abort();
        return u;
}

static void set_state(FakeUnit *u, const char *active, const char *sub) {
        snprintf(u->active, sizeof u->active, "%s", active);
        snprintf(u->sub, sizeof u->sub, "%s", sub);
}

static int on_job_done(sd_event_source *s, uint64_t usec, void *userdata) {
        FakeUnit *u = userdata;
        char path[64];
        uint32_t id = u->job_id;
        bool starting = streq(u->active, "activating");

        u->job_timer = sd_event_source_disable_unref(u->job_timer);
        if (starting) {
                set_state(u, "active", "running");
                u->enter = now(CLOCK_MONOTONIC);
        } else
                set_state(u, "inactive", "dead");
        u->job_id = 0;
        snprintf(path, sizeof path, "/org/freedesktop/systemd1/job/%u", id);
        if (u->fake->server && sd_bus_is_open(u->fake->server) > 0)
                ASSERT_OK(sd_bus_emit_signal(u->fake->server, SYSTEMD_PATH, SYSTEMD_MANAGER, "JobRemoved", "uoss",
                                             id, path, u->name, "done"));
        return 0;
}

static void job_finish_in(FakeUnit *u, usec_t d) {
        u->job_timer = sd_event_source_disable_unref(u->job_timer);
        ASSERT_OK(sd_event_add_time_relative(u->fake->e, &u->job_timer, CLOCK_MONOTONIC, d, 0, on_job_done, u));
}

static int on_drop(sd_event_source *s, uint64_t usec, void *userdata) {
        Fake *f = userdata;

        f->drop = sd_event_source_disable_unref(f->drop);
        f->server = sd_bus_close_unref(f->server);
        return 0;
}

static int reply_job(sd_bus_message *m, uint32_t id) {
        char path[64];
        snprintf(path, sizeof path, "/org/freedesktop/systemd1/job/%u", id);
        return sd_bus_reply_method_return(m, "o", path);
}

static int m_stop(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Fake *f = userdata;
        const char *name, *mode;
        FakeUnit *u;

        ASSERT_OK(sd_bus_message_read(m, "ss", &name, &mode));
        (void) buf_printf(&f->calls, "S:%s ", name);
        if (f->drop_at_next_stop) {
                /* dbus-daemon or systemd went away with the call unanswered. */
                f->drop_at_next_stop = false;
                ASSERT_OK(sd_event_add_time_relative(f->e, &f->drop, CLOCK_MONOTONIC, 0, 0, on_drop, f));
                return 1;
        }
        u = fake_unit(f, name);
        if (!u)
                return sd_bus_error_setf(error, "org.freedesktop.systemd1.NoSuchUnit", "Unit %s not loaded.", name);
        if (u->refuse_stop)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Access denied");
        if (u->job_id != 0 && streq(u->active, "deactivating"))
                return reply_job(m, u->job_id);
        u->job_id = ++f->next_job;
        if (streq(u->active, "inactive") || streq(u->active, "failed"))
                job_finish_in(u, 5 * USEC_PER_MSEC);
        else {
                /* A kill that came first has not been noticed yet: ExecStop runs. */
                u->death_timer = sd_event_source_disable_unref(u->death_timer);
                set_state(u, "deactivating", "stop");
                job_finish_in(u, u->stop_takes);
        }
        return reply_job(m, u->job_id);
}

static int m_start(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Fake *f = userdata;
        const char *name, *mode;
        FakeUnit *u;

        ASSERT_OK(sd_bus_message_read(m, "ss", &name, &mode));
        (void) buf_printf(&f->calls, "T:%s ", name);
        u = fake_unit(f, name);
        if (!u)
                return sd_bus_error_setf(error, "org.freedesktop.systemd1.NoSuchUnit", "Unit %s not found.", name);
        u->job_id = ++f->next_job;
        set_state(u, "activating", "start");
        job_finish_in(u, 5 * USEC_PER_MSEC);
        return reply_job(m, u->job_id);
}

static int on_death(sd_event_source *s, uint64_t usec, void *userdata) {
        FakeUnit *u = userdata;

        u->death_timer = sd_event_source_disable_unref(u->death_timer);
        set_state(u, "failed", "failed");
        return 0;
}

static int m_kill(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Fake *f = userdata;
        const char *name, *who;
        int32_t sig;
        FakeUnit *u;

        ASSERT_OK(sd_bus_message_read(m, "ssi", &name, &who, &sig));
        (void) buf_printf(&f->calls, "K:%s ", name);
        ASSERT_EQ(sig, SIGKILL);
        ASSERT_STREQ(who, "all");
        u = fake_unit(f, name);
        if (!u)
                return sd_bus_error_setf(error, "org.freedesktop.systemd1.NoSuchUnit", "Unit %s not loaded.", name);
        u->kills++;
        if (u->refuse_kill)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Access denied");
        if (streq(u->active, "deactivating"))
                /* ExecStop= dies, the stop job ends. */
                job_finish_in(u, 5 * USEC_PER_MSEC);
        else if (streq(u->active, "active") || streq(u->active, "activating")) {
                /* systemd notices the death a little later (SIGCHLD). */
                if (!u->death_timer)
                        ASSERT_OK(sd_event_add_time_relative(f->e, &u->death_timer, CLOCK_MONOTONIC,
                                                             20 * USEC_PER_MSEC, 0, on_death, u));
        } else
                return sd_bus_error_set(error, "org.freedesktop.systemd1.NoSuchProcess", "No process to kill");
        return sd_bus_reply_method_return(m, "");
}

static int m_subscribe(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return sd_bus_reply_method_return(m, "");
}

static int get_system_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Fake *f = userdata;
        return sd_bus_message_append(reply, "s", f->system_state);
}

static int get_unit_prop(sd_bus *bus, const char *path, const char *interface, const char *property,
                         sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        FakeUnit *u = userdata;
        char job[64];

        if (streq(property, "ActiveState"))
                return sd_bus_message_append(reply, "s", u->active);
        if (streq(property, "SubState"))
                return sd_bus_message_append(reply, "s", u->sub);
        if (streq(property, "Id"))
                return sd_bus_message_append(reply, "s", u->name);
        if (streq(property, "ActiveEnterTimestampMonotonic"))
                return sd_bus_message_append(reply, "t", u->enter);
        snprintf(job, sizeof job, "/org/freedesktop/systemd1/job/%u", u->job_id);
        return sd_bus_message_append(reply, "(uo)", u->job_id, u->job_id ? job : "/");
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("StopUnit", "ss", "o", m_stop, 0),
        SD_BUS_METHOD("StartUnit", "ss", "o", m_start, 0),
        SD_BUS_METHOD("KillUnit", "ssi", "", m_kill, 0),
        SD_BUS_METHOD("Subscribe", "", "", m_subscribe, 0),
        SD_BUS_PROPERTY("SystemState", "s", get_system_state, 0, 0),
        SD_BUS_SIGNAL("JobRemoved", "uoss", 0),
        SD_BUS_VTABLE_END,
};

/* Id first, so that the reader must skip what it does not want. */
static const sd_bus_vtable unit_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", get_unit_prop, 0, 0),
        SD_BUS_PROPERTY("Job", "(uo)", get_unit_prop, 0, 0),
        SD_BUS_PROPERTY("ActiveState", "s", get_unit_prop, 0, 0),
        SD_BUS_PROPERTY("SubState", "s", get_unit_prop, 0, 0),
        SD_BUS_PROPERTY("ActiveEnterTimestampMonotonic", "t", get_unit_prop, 0, 0),
        SD_BUS_VTABLE_END,
};

static int find_unit(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                     sd_bus_error *error) {
        Fake *f = userdata;
        _cleanup_free_ char *name = NULL;
        FakeUnit *u;

        if (sd_bus_path_decode(path, SYSTEMD_UNIT_PREFIX, &name) <= 0)
                return 0;
        u = fake_unit(f, name);
        if (!u)
                return 0;
        *found = u;
        return 1;
}

/* The group's MailGroupOpenBus: a new socketpair, the fake serving one end. */
static int fake_open(sd_event *e, sd_bus **ret, void *userdata) {
        Fake *f = userdata;
        _cleanup_(sd_bus_close_unrefp) sd_bus *client = NULL;
        int fds[2];

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds));
        f->server = sd_bus_close_unref(f->server);
        ASSERT_OK(sd_bus_new(&f->server));
        ASSERT_OK(sd_bus_set_fd(f->server, fds[0], fds[0]));
        ASSERT_OK(sd_bus_set_server(f->server, 1, SD_ID128_MAKE(5a, 1f, 3c, 00, 9e, 4b, 47, 2d, 8a, 61, 0c, 7e, 22,
                                                                 d4, 90, 13)));
        ASSERT_OK(sd_bus_add_object_vtable(f->server, NULL, SYSTEMD_PATH, SYSTEMD_MANAGER, manager_vtable, f));
        ASSERT_OK(sd_bus_add_fallback_vtable(f->server, NULL, SYSTEMD_UNIT_PREFIX, SYSTEMD_UNIT, unit_vtable,
                                             find_unit, f));
        ASSERT_OK(sd_bus_start(f->server));
        ASSERT_OK(sd_bus_attach_event(f->server, e, 0));

        ASSERT_OK(sd_bus_new(&client));
        ASSERT_OK(sd_bus_set_fd(client, fds[1], fds[1]));
        ASSERT_OK(sd_bus_start(client));
        ASSERT_OK(sd_bus_attach_event(client, e, 0));
        f->opens++;
        *ret = TAKE_PTR(client);
        return 0;
}

static const char *const unit_names[] = { "nginx.service", "postfix@-.service", "dovecot.service",
                                          "sogo.service", NULL };

static void fake_init(Fake *f, const char *active) {
        *f = (Fake) { .calls = BUF_INIT(1 << 16) };
        ASSERT_OK(sd_event_new(&f->e));
        snprintf(f->system_state, sizeof f->system_state, "running");
        for (size_t i = 0; unit_names[i]; i++) {
                FakeUnit *u = &f->units[f->n++];
                u->name = unit_names[i];
                u->fake = f;
                u->stop_takes = 10 * USEC_PER_MSEC;
                u->enter = now(CLOCK_MONOTONIC) - 60 * USEC_PER_SEC;
                set_state(u, active, streq(active, "active") ? "running" : "dead");
        }
}

static void fake_done(Fake *f) {
        for (size_t i = 0; i < f->n; i++) {
                sd_event_source_disable_unref(f->units[i].job_timer);
                sd_event_source_disable_unref(f->units[i].death_timer);
        }
        sd_event_source_disable_unref(f->drop);
        f->server = sd_bus_close_unref(f->server);
        buf_done(&f->calls);
        sd_event_unref(f->e);
}

static MailGroup *fake_group(Fake *f) {
        MailGroup *g = NULL;
        ASSERT_OK(mail_group_new_full(f->e, fake_open, f, (char *const *) unit_names, 2 * USEC_PER_SEC,
                                      2 * USEC_PER_SEC, &g));
        return g;
}

typedef struct Result {
        unsigned calls;
        int r;
        char error[2048];
        usec_t at;
} Result;

static void on_done(MailGroup *g, int r, const char *error, void *userdata) {
        Result *res = userdata;
        res->calls++;
        res->r = r;
        res->at = now(CLOCK_MONOTONIC);
        snprintf(res->error, sizeof res->error, "%s", error ?: "");
}

/* ---- the fence ---- */

/* A slow ExecStop= (60 s) is ended by the SIGKILL sent again at each check:
 * the fence confirms every unit down long before the units' stop times. */
TEST(fence_kills_every_unit_at_once_and_confirms) {
        Fake f;
        Result res = {};

        fake_init(&f, "active");
        must_unit(&f, "postfix@-.service")->stop_takes = 60 * USEC_PER_SEC;
        MailGroup *g = fake_group(&f);

        usec_t t0 = now(CLOCK_MONOTONIC);
        ASSERT_OK(mail_group_fence(g, 3 * USEC_PER_SEC, on_done, &res));
        ASSERT_TRUE(mail_group_busy(g));
        ASSERT_TRUE(RUN_UNTIL(f.e, res.calls > 0, 5 * USEC_PER_SEC));
        log_info("fence confirmed in %llu ms; calls: %.200s", (unsigned long long) (res.at - t0) / 1000,
                 f.calls.data);
        ASSERT_EQ(res.r, 0);
        ASSERT_TRUE(res.at - t0 < USEC_PER_SEC);
        ASSERT_FALSE(mail_group_busy(g));
        for (size_t i = 0; i < f.n; i++) {
                ASSERT_TRUE(streq(f.units[i].active, "inactive") || streq(f.units[i].active, "failed"));
                ASSERT_TRUE(f.units[i].kills >= 1);
        }
        /* Every kill went out before the first stop: none waits for another unit. */
        ASSERT_TRUE(strncmp(f.calls.data,
                            "K:nginx.service K:postfix@-.service K:dovecot.service K:sogo.service "
                            "S:nginx.service S:postfix@-.service S:dovecot.service S:sogo.service ",
                            strlen("K:nginx.service K:postfix@-.service K:dovecot.service K:sogo.service "
                                   "S:nginx.service S:postfix@-.service S:dovecot.service S:sogo.service ")) == 0);
        ASSERT_EQ(res.calls, 1u);
        mail_group_free(g);
        fake_done(&f);
}

/* A unit whose kill is refused and whose ExecStop= hangs is named in the
 * report with its state and the refused call; the others are not. */
TEST(fence_names_each_unit_not_confirmed) {
        Fake f;
        Result res = {};

        fake_init(&f, "active");
        FakeUnit *d = must_unit(&f, "dovecot.service");
        d->refuse_kill = true;
        d->stop_takes = 60 * USEC_PER_SEC;
        FakeUnit *s = must_unit(&f, "sogo.service");
        s->refuse_kill = true;
        s->refuse_stop = true;
        MailGroup *g = fake_group(&f);

        usec_t t0 = now(CLOCK_MONOTONIC);
        ASSERT_OK(mail_group_fence(g, 500 * USEC_PER_MSEC, on_done, &res));
        ASSERT_TRUE(RUN_UNTIL(f.e, res.calls > 0, 5 * USEC_PER_SEC));
        log_info("fence report: %s", res.error);
        ASSERT_EQ(res.r, -ETIMEDOUT);
        ASSERT_TRUE(res.at - t0 >= 500 * USEC_PER_MSEC && res.at - t0 < 1500 * USEC_PER_MSEC);
        ASSERT_CONTAINS(res.error, "dovecot.service not confirmed stopped within 500ms: deactivating (stop)");
        ASSERT_CONTAINS(res.error, "KillUnit failed: Access denied");
        ASSERT_CONTAINS(res.error, "sogo.service not confirmed stopped within 500ms: active (running)");
        ASSERT_CONTAINS(res.error, "active (running), KillUnit failed: Access denied, StopUnit failed: Access denied");
        ASSERT_NOT_CONTAINS(res.error, "nginx");
        ASSERT_NOT_CONTAINS(res.error, "postfix");
        mail_group_free(g);
        fake_done(&f);
}

/* Calling it again is the retry: the first callback is never called, the
 * second one reports the outcome of the new run. */
TEST(fence_again_replaces_the_run_in_flight) {
        Fake f;
        Result first = {}, second = {};

        fake_init(&f, "active");
        FakeUnit *d = must_unit(&f, "dovecot.service");
        d->refuse_kill = true;
        d->stop_takes = 60 * USEC_PER_SEC;
        MailGroup *g = fake_group(&f);

        ASSERT_OK(mail_group_kill(g, on_done, &first));
        test_run_for(f.e, 150 * USEC_PER_MSEC);
        ASSERT_EQ(first.calls, 0u);
        /* The operator fixed what refused the kill. */
        d->refuse_kill = false;
        ASSERT_OK(mail_group_fence(g, 2 * USEC_PER_SEC, on_done, &second));
        ASSERT_TRUE(RUN_UNTIL(f.e, second.calls > 0, 5 * USEC_PER_SEC));
        ASSERT_EQ(second.r, 0);
        test_run_for(f.e, 100 * USEC_PER_MSEC);
        ASSERT_EQ(first.calls, 0u);
        ASSERT_EQ(second.calls, 1u);

        /* And a stop after a fence, a fence after a stop. */
        ASSERT_OK(mail_group_stop(g, on_done, &first));
        ASSERT_OK(mail_group_fence(g, 2 * USEC_PER_SEC, on_done, &second));
        ASSERT_TRUE(RUN_UNTIL(f.e, second.calls > 1, 5 * USEC_PER_SEC));
        ASSERT_EQ(second.r, 0);
        ASSERT_EQ(first.calls, 0u);
        mail_group_free(g);
        fake_done(&f);
}

/* The connection breaks with the stop calls unanswered: a new one is
 * opened, everything is sent again, and the units are confirmed down. */
TEST(fence_reconnects_when_the_bus_breaks) {
        Fake f;
        Result res = {};

        fake_init(&f, "active");
        must_unit(&f, "postfix@-.service")->stop_takes = 60 * USEC_PER_SEC;
        MailGroup *g = fake_group(&f);

        f.drop_at_next_stop = true;
        ASSERT_OK(mail_group_fence(g, 3 * USEC_PER_SEC, on_done, &res));
        ASSERT_TRUE(RUN_UNTIL(f.e, res.calls > 0, 5 * USEC_PER_SEC));
        ASSERT_EQ(res.r, 0);
        ASSERT_EQ(f.opens, 2u);
        ASSERT_EQ(mail_group_reconnects(g), 1u);
        for (size_t i = 0; i < f.n; i++)
                ASSERT_TRUE(streq(f.units[i].active, "inactive") || streq(f.units[i].active, "failed"));
        mail_group_free(g);
        fake_done(&f);
}

/* ---- the ordered stop and start ---- */

TEST(stop_reports_a_refused_stop) {
        Fake f;
        Result res = {};

        fake_init(&f, "active");
        must_unit(&f, "dovecot.service")->refuse_stop = true;
        MailGroup *g = fake_group(&f);

        ASSERT_OK(mail_group_stop(g, on_done, &res));
        ASSERT_TRUE(RUN_UNTIL(f.e, res.calls > 0, 10 * USEC_PER_SEC));
        ASSERT_EQ(res.r, -EIO);
        ASSERT_CONTAINS(res.error, "dovecot.service: stop job refused (Access denied)");
        /* The rest of the group was stopped all the same, in reverse order. */
        ASSERT_STREQ(must_unit(&f, "nginx.service")->active, "inactive");
        ASSERT_STREQ(must_unit(&f, "sogo.service")->active, "inactive");
        ASSERT_TRUE(strncmp(f.calls.data, "S:sogo.service S:dovecot.service S:postfix@-.service S:nginx.service",
                            strlen("S:sogo.service S:dovecot.service S:postfix@-.service S:nginx.service")) == 0);
        mail_group_free(g);
        fake_done(&f);
}

TEST(stop_and_start_survive_a_broken_bus) {
        Fake f;
        Result res = {};

        fake_init(&f, "active");
        MailGroup *g = fake_group(&f);

        f.drop_at_next_stop = true;
        ASSERT_OK(mail_group_stop(g, on_done, &res));
        ASSERT_TRUE(RUN_UNTIL(f.e, res.calls > 0, 10 * USEC_PER_SEC));
        ASSERT_EQ(res.r, 0);
        ASSERT_EQ(mail_group_reconnects(g), 1u);
        for (size_t i = 0; i < f.n; i++)
                ASSERT_STREQ(f.units[i].active, "inactive");

        /* The server goes away between operations: the start reconnects. */
        f.server = sd_bus_close_unref(f.server);
        test_run_for(f.e, 50 * USEC_PER_MSEC);
        ASSERT_OK(mail_group_start(g, on_done, &res));
        ASSERT_TRUE(RUN_UNTIL(f.e, res.calls > 1, 10 * USEC_PER_SEC));
        ASSERT_EQ(res.r, 0);
        ASSERT_EQ(mail_group_reconnects(g), 2u);
        for (size_t i = 0; i < f.n; i++)
                ASSERT_STREQ(f.units[i].active, "active");
        mail_group_free(g);
        fake_done(&f);
}

/* ---- settled ---- */

typedef struct SettledResult {
        unsigned calls;
        int r;
        bool settled;
        char reason[512];
} SettledResult;

static void on_settled(MailGroup *g, int r, bool settled, const char *reason, void *userdata) {
        SettledResult *s = userdata;
        s->calls++;
        s->r = r;
        s->settled = settled;
        snprintf(s->reason, sizeof s->reason, "%s", reason);
}

static void query(Fake *f, MailGroup *g, usec_t grace, SettledResult *s) {
        *s = (SettledResult) {};
        ASSERT_OK(mail_group_query_settled(g, grace, on_settled, s));
        ASSERT_TRUE(RUN_UNTIL(f->e, s->calls > 0, 10 * USEC_PER_SEC));
        ASSERT_EQ(s->calls, 1u);
}

TEST(settled_query_against_systemd) {
        Fake f;
        SettledResult s;

        fake_init(&f, "active");
        MailGroup *g = fake_group(&f);

        query(&f, g, 30 * USEC_PER_SEC, &s);
        ASSERT_EQ(s.r, 0);
        ASSERT_TRUE(s.settled);
        ASSERT_STREQ(s.reason, "");

        snprintf(f.system_state, sizeof f.system_state, "starting");
        query(&f, g, 30 * USEC_PER_SEC, &s);
        ASSERT_FALSE(s.settled);
        ASSERT_STREQ(s.reason, "the boot transaction is still running (system state starting)");

        /* The node box at boot (issue 10, item 7). */
        snprintf(f.system_state, sizeof f.system_state, "running");
        FakeUnit *p = must_unit(&f, "postfix@-.service");
        set_state(p, "activating", "start-pre");
        p->job_id = 7;
        query(&f, g, 30 * USEC_PER_SEC, &s);
        ASSERT_FALSE(s.settled);
        ASSERT_STREQ(s.reason, "postfix@-.service is activating (start-pre)");

        set_state(p, "inactive", "dead");
        query(&f, g, 30 * USEC_PER_SEC, &s);
        ASSERT_FALSE(s.settled);
        ASSERT_STREQ(s.reason, "postfix@-.service is inactive (dead) with job 7 queued");

        p->job_id = 0;
        set_state(p, "active", "running");
        must_unit(&f, "dovecot.service")->enter = now(CLOCK_MONOTONIC) - 3 * USEC_PER_SEC - 100 * USEC_PER_MSEC;
        query(&f, g, 30 * USEC_PER_SEC, &s);
        ASSERT_FALSE(s.settled);
        ASSERT_STREQ(s.reason, "dovecot.service started 3s ago");
        query(&f, g, 2 * USEC_PER_SEC, &s);
        ASSERT_TRUE(s.settled);

        /* A failed member is settled: that is a failure to act on. */
        set_state(must_unit(&f, "sogo.service"), "failed", "failed");
        query(&f, g, 2 * USEC_PER_SEC, &s);
        ASSERT_TRUE(s.settled);

        /* Another query replaces the one in flight, whose callback is not called. */
        SettledResult first = {}, second = {};
        ASSERT_OK(mail_group_query_settled(g, 0, on_settled, &first));
        ASSERT_OK(mail_group_query_settled(g, 0, on_settled, &second));
        ASSERT_TRUE(RUN_UNTIL(f.e, second.calls > 0, 10 * USEC_PER_SEC));
        test_run_for(f.e, 50 * USEC_PER_MSEC);
        ASSERT_EQ(first.calls, 0u);

        /* A broken connection: the next query opens a new one. */
        f.server = sd_bus_close_unref(f.server);
        test_run_for(f.e, 50 * USEC_PER_MSEC);
        query(&f, g, 2 * USEC_PER_SEC, &s);
        ASSERT_EQ(s.r, 0);
        ASSERT_TRUE(s.settled);
        ASSERT_EQ(mail_group_reconnects(g), 1u);

        /* Freed with a query in flight: no callback, nothing leaks. */
        ASSERT_OK(mail_group_query_settled(g, 0, on_settled, &first));
        mail_group_free(g);
        test_run_for(f.e, 50 * USEC_PER_MSEC);
        ASSERT_EQ(first.calls, 0u);
        fake_done(&f);
}

TEST(units_settled_table) {
        static char *const units[] = { (char *) "a.service", (char *) "b.service", NULL };
        const usec_t now_m = 1000 * USEC_PER_SEC;
        static const struct {
                const char *system;
                UnitProps a, b;
                usec_t grace;
                bool settled;
                const char *reason;
        } cases[] = {
                { "running", { "active", "running", 0, 1 }, { "active", "running", 0, 1 }, 10 * USEC_PER_SEC, true, "" },
                { "degraded", { "failed", "failed", 0, 0 }, { "inactive", "dead", 0, 0 }, 0, true, "" },
                { "initializing", { "active", "running", 0, 1 }, { "active", "running", 0, 1 }, 0, false,
                  "the boot transaction is still running (system state initializing)" },
                { "stopping", { "active", "running", 0, 1 }, { "active", "running", 0, 1 }, 0, false,
                  "the system is shutting down" },
                { "running", { "active", "running", 0, 1 }, { "reloading", "reload", 0, 1 }, 0, false,
                  "b.service is reloading (reload)" },
                { "running", { "deactivating", "stop-sigterm", 3, 1 }, { "activating", "start", 4, 1 }, 0, false,
                  "a.service is deactivating (stop-sigterm)" },
                { "running", { "active", "running", 0, 1000 * USEC_PER_SEC - 400 * USEC_PER_MSEC },
                  { "active", "running", 0, 1 }, USEC_PER_SEC, false, "a.service started 400ms ago" },
                { "running", { "active", "running", 0, 1001 * USEC_PER_SEC }, { "active", "running", 0, 1 },
                  USEC_PER_SEC, false, "a.service started 0s ago" },
        };
        char reason[256];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                UnitProps props[2] = { cases[i].a, cases[i].b };
                bool s = units_settled(cases[i].system, units, props, now_m, cases[i].grace, reason, sizeof reason);
                if (s != cases[i].settled || !streq(reason, cases[i].reason))
                        ASSERT_FAIL("case %zu: %d '%s'", i, s, reason);
        }
}

DEFINE_TEST_MAIN()
