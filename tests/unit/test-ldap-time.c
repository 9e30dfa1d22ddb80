/* SPDX-License-Identifier: GPL-2.0-or-later */
/* GeneralizedTime as directory servers publish their clock: Active
 * Directory's rootDSE currentTime, 389 Directory Server's and OpenLDAP's
 * monitor entries. Checked against times computed independently (date -u). */

#include <errno.h>
#include <string.h>

#include "lib/macro.h"
#include "probes/ldap-time.h"
#include "tests.h"

TEST(valid_times) {
        static const struct {
                const char *text;
                int64_t seconds;
        } cases[] = {
                { "19700101000000Z", 0 },
                { "20261128103859Z", 1795862339 },         /* date -u -d '2026-11-28 10:38:59' +%s */
                { "20261128103859.0Z", 1795862339 },       /* Active Directory */
                { "20261128103859,123456Z", 1795862339 },  /* a comma as the decimal sign */
                { "20261128133859+0300", 1795862339 },     /* Moscow time */
                { "20261128050859-0530", 1795862339 },
                { "20240229120000Z", 1709208000 },         /* a leap day */
                { "20161231235960Z", 1483228799 },         /* a leap second counts as :59 */
                { "19691231235959Z", -1 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int64_t t = 0;
                fprintf(stderr, "%s\n", cases[i].text);
                ASSERT_OK(ldap_generalized_time_parse(cases[i].text, strlen(cases[i].text), &t));
                ASSERT_EQ(t, cases[i].seconds);
        }
}

TEST(invalid_times) {
        static const char *const cases[] = {
                "",
                "2026112810Z",          /* no minutes or seconds: too coarse to judge */
                "20261128103859",       /* no zone */
                "20261128103859z",
                "20261328103859Z",      /* month 13 */
                "20230229120000Z",      /* not a leap year */
                "21000229120000Z",      /* nor is 2100 */
                "20261128243859Z",
                "20261128106159Z",
                "20261128103861Z",
                "20261128103859.Z",     /* an empty fraction */
                "20261128103859+03",    /* a zone without minutes */
                "20261128103859+2400",
                "20261128103859Z ",     /* trailing bytes */
                "2026-11-28T10:38:59Z", /* ISO 8601 is another syntax */
                " 20261128103859Z",
        };
        int64_t t;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                fprintf(stderr, "'%s'\n", cases[i]);
                ASSERT_EQ(ldap_generalized_time_parse(cases[i], strlen(cases[i]), &t), -EINVAL);
        }
        /* The length is the caller's: no NUL is looked for. */
        ASSERT_EQ(ldap_generalized_time_parse("20261128103859Zjunk", 15, &t), 0);
        ASSERT_EQ(t, 1795862339);
        ASSERT_EQ(ldap_generalized_time_parse("20261128103859Z", 14, &t), -EINVAL);
}

DEFINE_TEST_MAIN();
