/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Just enough XML for S3's answers: flat elements without attributes
 * (<UploadId>, <Key>, <Code>) and the five predefined entities plus
 * numeric references. S3 writes these documents; anything unexpected in
 * them makes a lookup fail rather than guess.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/s3-internal.h"

#define TAG_MAX 64

static const char *find(const char *p, const char *end, const char *needle)
{
        size_t n = strlen(needle);

        return p < end ? memmem(p, (size_t)(end - p), needle, n) : NULL;
}

const char *s3_xml_next(const char *p, const char *end, const char *tag, const char **inner,
                        size_t *inner_len)
{
        char open[TAG_MAX + 3], close[TAG_MAX + 4];
        const char *start, *stop;

        if (strlen(tag) > TAG_MAX)
                return NULL;
        snprintf(open, sizeof(open), "<%s>", tag);
        snprintf(close, sizeof(close), "</%s>", tag);
        start = find(p, end, open);
        if (!start)
                return NULL;
        start += strlen(open);
        stop = find(start, end, close);
        if (!stop)
                return NULL;
        *inner = start;
        *inner_len = (size_t)(stop - start);
        return stop + strlen(close);
}

static int entity(const char *s, size_t len, char *out, size_t *used)
{
        static const struct {
                const char *name;
                char c;
        } named[] = {
            {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        const char *semi = memchr(s, ';', KYB_MIN(len, (size_t)12));
        unsigned long v;
        char *e;

        for (size_t i = 0; i < KYB_ARRAY_SIZE(named); i++) {
                size_t n = strlen(named[i].name);

                if (len >= n && !memcmp(s, named[i].name, n)) {
                        *out = named[i].c;
                        *used = n;
                        return 0;
                }
        }
        if (!semi || len < 4 || s[1] != '#')
                return -EBADMSG;
        v = s[2] == 'x' ? strtoul(s + 3, &e, 16) : strtoul(s + 2, &e, 10);
        /* Keys are ASCII here; a reference outside it is not ours to decode. */
        if (e != semi || v == 0 || v > 0x7f)
                return -EBADMSG;
        *out = (char)v;
        *used = (size_t)(semi - s) + 1;
        return 0;
}

static int unescape(const char *s, size_t len, char **out)
{
        char *d = malloc(len + 1);
        size_t j = 0;

        if (!d)
                return -ENOMEM;
        for (size_t i = 0; i < len;) {
                size_t used = 1;

                if (s[i] == '&' && entity(s + i, len - i, &d[j], &used) < 0) {
                        free(d);
                        return -EBADMSG;
                }
                if (s[i] != '&')
                        d[j] = s[i];
                j++;
                i += used;
        }
        d[j] = '\0';
        *out = d;
        return 0;
}

int s3_xml_text(const char *xml, size_t len, const char *tag, char **out)
{
        const char *inner = NULL;
        size_t n = 0;

        *out = NULL;
        if (!xml || !s3_xml_next(xml, xml + len, tag, &inner, &n))
                return -ENOENT;
        return unescape(inner, n, out);
}
