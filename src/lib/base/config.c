/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "base/config.h"

typedef struct unit {
        const char *suffix;
        int64_t factor;
} unit;

/* Kubernetes quantity convention: K/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024. */
static const unit size_units[] = {
    {"Ki", INT64_C(1) << 10},
    {"Mi", INT64_C(1) << 20},
    {"Gi", INT64_C(1) << 30},
    {"Ti", INT64_C(1) << 40},
    {"K", INT64_C(1000)},
    {"k", INT64_C(1000)},
    {"M", INT64_C(1000000)},
    {"G", INT64_C(1000000000)},
    {"T", INT64_C(1000000000000)},
    {"B", 1},
    {"", 1},
};

/* "ms" before "m" so that the longest suffix wins. */
static const unit duration_units[] = {
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
};

static const char *const type_names[] = {"STRING", "BOOL", "INT", "SIZE", "DURATION"};

/* One load in progress: everything the sources need to apply values. */
typedef struct cfg {
        const kyb_config_option *table;
        size_t n;
        void *target;
        const kyb_config_sources *src;
} cfg;

/* Parsed command-line item. */
typedef enum flag_kind { FLAG_OPTION, FLAG_CONFIG, FLAG_HELP } flag_kind;

typedef struct flag {
        flag_kind kind;
        const kyb_config_option *opt;
        const char *value;
} flag;

static void *field(const kyb_config_option *opt, void *target)
{
        return (char *)target + opt->offset;
}

/* ---- value parsers ---- */

int kyb_parse_bool(const char *s, bool *out, kyb_error **err)
{
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};

        for (size_t i = 0; s && i < KYB_ARRAY_SIZE(yes); i++) {
                if (!strcasecmp(s, yes[i]) || !strcasecmp(s, no[i])) {
                        *out = !strcasecmp(s, yes[i]);
                        return 0;
                }
        }
        return kyb_error_setf(err, EINVAL, "'%.64s' is not a boolean (true or false)", s ? s : "");
}

int kyb_parse_int64(const char *s, int64_t *out, kyb_error **err)
{
        char *end = NULL;
        long long v;

        /* strtoll would skip leading blanks and accept "" as 0. */
        if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '-' || s[0] == '+'))
                return kyb_error_setf(err, EINVAL, "'%.64s' is not an integer", s ? s : "");
        errno = 0;
        v = strtoll(s, &end, 10);
        if (end == s || *end)
                return kyb_error_setf(err, EINVAL, "'%.64s' is not an integer", s);
        if (errno == ERANGE)
                return kyb_error_setf(err, ERANGE, "'%.64s' does not fit in 64 bits", s);
        *out = v;
        return 0;
}

/* Reads [0-9]+ at *p without sign or blanks; false if none or overflow. */
static bool parse_digits(const char **p, int64_t *out)
{
        int64_t v = 0;
        const char *s = *p;

        if (!isdigit((unsigned char)*s))
                return false;
        for (; isdigit((unsigned char)*s); s++) {
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v))
                        return false;
        }
        *p = s;
        *out = v;
        return true;
}

/* Matches the longest listed suffix at the start of s. */
static const unit *match_unit(const unit *units, size_t n, const char *s, bool whole)
{
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(units[i].suffix);

                if (strncmp(s, units[i].suffix, len))
                        continue;
                if (!whole || s[len] == '\0')
                        return &units[i];
        }
        return NULL;
}

int kyb_parse_size(const char *s, int64_t *out, kyb_error **err)
{
        const char *p = s;
        const unit *u;
        int64_t v = 0;

        if (!s || !parse_digits(&p, &v) ||
            !(u = match_unit(size_units, KYB_ARRAY_SIZE(size_units), p, true)))
                return kyb_error_setf(err, EINVAL, "'%.64s' is not a size (e.g. 512, 64Ki, 1G)",
                                      s ? s : "");
        if (__builtin_mul_overflow(v, u->factor, &v))
                return kyb_error_setf(err, ERANGE, "'%.64s' does not fit in 64 bits", s);
        *out = v;
        return 0;
}

int kyb_parse_duration_ms(const char *s, int64_t *out, kyb_error **err)
{
        const char *p = s;
        int64_t total = 0, v = 0;
        const unit *u;

        if (s && !strcmp(s, "0")) {
                *out = 0;
                return 0;
        }
        /* A bare number is rejected: "30" could mean seconds or milliseconds. */
        do {
                if (!s || !parse_digits(&p, &v) ||
                    !(u = match_unit(duration_units, KYB_ARRAY_SIZE(duration_units), p, false)))
                        return kyb_error_setf(err, EINVAL,
                                              "'%.64s' is not a duration (e.g. 500ms, 30s, 5m, 1h)",
                                              s ? s : "");
                p += strlen(u->suffix);
                if (__builtin_mul_overflow(v, u->factor, &v) ||
                    __builtin_add_overflow(total, v, &total))
                        return kyb_error_setf(err, ERANGE, "'%.64s' does not fit in 64 bits", s);
        } while (*p);
        *out = total;
        return 0;
}

/* Shortest exact rendering in the option's own units, for messages and help. */
static void format_number(kyb_config_type type, int64_t v, char *buf, size_t size)
{
        const unit *units = type == KYB_CONFIG_SIZE ? size_units : duration_units;
        size_t n = type == KYB_CONFIG_SIZE ? 4 : KYB_ARRAY_SIZE(duration_units);

        if (type == KYB_CONFIG_INT64 || v == 0) {
                snprintf(buf, size, "%lld", (long long)v);
                return;
        }
        /* size_units starts with the binary ones; try big to small. */
        for (size_t i = n; i-- > 0;) {
                if (v % units[i].factor == 0) {
                        snprintf(buf, size, "%lld%s", (long long)(v / units[i].factor),
                                 units[i].suffix);
                        return;
                }
        }
        snprintf(buf, size, "%lld", (long long)v);
}

static int check_bounds(const kyb_config_option *opt, int64_t v, kyb_error **err)
{
        char val[32], lo[32], hi[32];

        if ((opt->min == 0 && opt->max == 0) || (v >= opt->min && v <= opt->max))
                return 0;
        format_number(opt->type, v, val, sizeof(val));
        format_number(opt->type, opt->min, lo, sizeof(lo));
        format_number(opt->type, opt->max, hi, sizeof(hi));
        return kyb_error_setf(err, ERANGE, "%s is out of range %s..%s", val, lo, hi);
}

static int parse_number(const kyb_config_option *opt, const char *value, int64_t *v,
                        kyb_error **err)
{
        switch (opt->type) {
        case KYB_CONFIG_INT64:
                return kyb_parse_int64(value, v, err);
        case KYB_CONFIG_SIZE:
                return kyb_parse_size(value, v, err);
        case KYB_CONFIG_DURATION:
                return kyb_parse_duration_ms(value, v, err);
        default:
                return kyb_error_setf(err, EINVAL, "unknown option type %d", (int)opt->type);
        }
}

static int set_string(char **dst, const char *value, kyb_error **err)
{
        char *copy = strdup(value);

        if (!copy)
                return kyb_error_set(err, ENOMEM, "copy value");
        free(*dst);
        *dst = copy;
        return 0;
}

int kyb_config_set(const kyb_config_option *opt, void *target, const char *value, kyb_error **err)
{
        int64_t v = 0;
        int rc;

        if (!value)
                return kyb_error_setf(err, EINVAL, "missing value");
        if (opt->type == KYB_CONFIG_STRING)
                return set_string(field(opt, target), value, err);
        if (opt->type == KYB_CONFIG_BOOL)
                return kyb_parse_bool(value, field(opt, target), err);
        rc = parse_number(opt, value, &v, err);
        if (rc == 0)
                rc = check_bounds(opt, v, err);
        if (rc == 0)
                *(int64_t *)field(opt, target) = v;
        return rc;
}

void kyb_config_free(const kyb_config_option *table, size_t n, void *target)
{
        for (size_t i = 0; target && i < n; i++) {
                if (table[i].type == KYB_CONFIG_STRING) {
                        char **s = field(&table[i], target);
                        free(*s);
                        *s = NULL;
                }
        }
}

static const kyb_config_option *find_option(const cfg *c, const char *name, size_t len)
{
        for (size_t i = 0; i < c->n; i++) {
                if (strlen(c->table[i].name) == len && !strncmp(c->table[i].name, name, len))
                        return &c->table[i];
        }
        return NULL;
}

/* ---- defaults ---- */

static void set_zero(const kyb_config_option *opt, void *target)
{
        if (opt->type == KYB_CONFIG_STRING) {
                char **s = field(opt, target);
                free(*s);
                *s = NULL;
        } else if (opt->type == KYB_CONFIG_BOOL) {
                *(bool *)field(opt, target) = false;
        } else {
                *(int64_t *)field(opt, target) = 0;
        }
}

static int apply_defaults(const cfg *c, kyb_error **err)
{
        for (size_t i = 0; i < c->n; i++) {
                const kyb_config_option *opt = &c->table[i];
                int rc;

                set_zero(opt, c->target);
                if (!opt->def)
                        continue;
                rc = kyb_config_set(opt, c->target, opt->def, err);
                if (rc < 0)
                        return kyb_error_wrap(err, rc, "config default: option %s", opt->name);
        }
        return 0;
}

/* A table bug would otherwise surface as a confusing parse error later. */
static int check_table(const cfg *c, kyb_error **err)
{
        for (size_t i = 0; i < c->n; i++) {
                const char *name = c->table[i].name;

                if (!name || !name[0] || !strcmp(name, "config") || !strcmp(name, "help") ||
                    (unsigned)c->table[i].type >= KYB_ARRAY_SIZE(type_names))
                        return kyb_error_setf(err, EINVAL, "config table: bad option %zu '%s'", i,
                                              name ? name : "");
                if (find_option(c, name, strlen(name)) != &c->table[i])
                        return kyb_error_setf(err, EINVAL, "config table: duplicate option '%s'",
                                              name);
        }
        return 0;
}

/* ---- command line ---- */

static int take_value(const cfg *c, int *i, const char *name, size_t len, const char *inline_val,
                      flag *f, kyb_error **err)
{
        if (inline_val) {
                f->value = inline_val;
                return 1;
        }
        if (*i >= c->src->argc)
                return kyb_error_setf(err, EINVAL,
                                      "config command line: option --%.*s needs a value", (int)len,
                                      name);
        f->value = c->src->argv[(*i)++];
        return 1;
}

static int resolve_flag(const cfg *c, int *i, const char *name, const char *eq, flag *f,
                        kyb_error **err)
{
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const char *inline_val = eq ? eq + 1 : NULL;

        f->opt = find_option(c, name, len);
        if (len == 6 && !strncmp(name, "config", 6)) {
                f->kind = FLAG_CONFIG;
                return take_value(c, i, name, len, inline_val, f, err);
        }
        if (f->opt && f->opt->type == KYB_CONFIG_BOOL) {
                f->value = inline_val ? inline_val : "true";
                return 1;
        }
        if (f->opt)
                return take_value(c, i, name, len, inline_val, f, err);
        if (len > 3 && !strncmp(name, "no-", 3)) {
                f->opt = find_option(c, name + 3, len - 3);
                if (f->opt && f->opt->type == KYB_CONFIG_BOOL && inline_val)
                        return kyb_error_setf(err, EINVAL,
                                              "config command line: option --%.*s takes no value",
                                              (int)len, name);
                if (f->opt && f->opt->type == KYB_CONFIG_BOOL) {
                        f->value = "false";
                        return 1;
                }
        }
        return kyb_error_setf(err, EINVAL, "config command line: unknown option --%.*s", (int)len,
                              name);
}

/* Returns 1 and the next flag, or 0 at the end of the options with *i at
 * the first argument that is not one (after a "--"). */
static int next_flag(const cfg *c, int *i, flag *f, kyb_error **err)
{
        const char *a;

        *f = (flag){.kind = FLAG_OPTION};
        if (!c->src->argv || *i >= c->src->argc)
                return 0;
        a = c->src->argv[*i];
        if (!strcmp(a, "--")) {
                (*i)++;
                return 0;
        }
        if (a[0] != '-' || a[1] == '\0')
                return 0;
        (*i)++;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                f->kind = FLAG_HELP;
                return 1;
        }
        if (a[1] != '-' || a[2] == '\0' || a[2] == '=')
                return kyb_error_setf(err, EINVAL, "config command line: unknown option %s", a);
        return resolve_flag(c, i, a + 2, strchr(a + 2, '='), f, err);
}

/* First pass: syntax, --help and --config, before any file is read. */
static int scan_flags(const cfg *c, kyb_config_status *st, const char **file, kyb_error **err)
{
        int i = 1;
        flag f;
        int rc = 0;

        /* --help wins over whatever follows it: the user wants the help. */
        while (!st->help && (rc = next_flag(c, &i, &f, err)) > 0) {
                if (f.kind == FLAG_HELP)
                        st->help = true;
                else if (f.kind == FLAG_CONFIG)
                        *file = f.value;
        }
        st->next_arg = c->src->argv ? KYB_MIN(i, c->src->argc) : 0;
        return st->help ? 0 : rc;
}

static int apply_flags(const cfg *c, kyb_error **err)
{
        int i = 1;
        flag f;
        int rc;

        while ((rc = next_flag(c, &i, &f, err)) > 0) {
                if (f.kind != FLAG_OPTION)
                        continue;
                rc = kyb_config_set(f.opt, c->target, f.value, err);
                if (rc < 0)
                        return kyb_error_wrap(err, rc, "config command line: option %s",
                                              f.opt->name);
        }
        return rc;
}

/* ---- environment ---- */

/* "socket-path" with prefix "KYB" -> "KYB_SOCKET_PATH" */
static char *env_name(const char *prefix, const char *name)
{
        char *s = NULL;

        if (asprintf(&s, "%s_%s", prefix, name) < 0)
                return NULL;
        for (char *p = s; *p; p++)
                *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        return s;
}

static const char *env_lookup(const cfg *c, const char *name)
{
        size_t len = strlen(name);
        const char *v = NULL;

        if (!c->src->envp) {
                v = getenv(name);
        } else {
                for (char *const *e = c->src->envp; *e && !v; e++) {
                        if (!strncmp(*e, name, len) && (*e)[len] == '=')
                                v = *e + len + 1;
                }
        }
        return v && v[0] ? v : NULL;
}

static int apply_env(const cfg *c, kyb_error **err)
{
        for (size_t i = 0; c->src->env_prefix && i < c->n; i++) {
                _cleanup_free_ char *name = env_name(c->src->env_prefix, c->table[i].name);
                const char *v;
                int rc;

                if (!name)
                        return kyb_error_set(err, ENOMEM, "config environment");
                v = env_lookup(c, name);
                if (!v)
                        continue;
                rc = kyb_config_set(&c->table[i], c->target, v, err);
                if (rc < 0)
                        return kyb_error_wrap(err, rc, "config environment %s: option %s", name,
                                              c->table[i].name);
        }
        return 0;
}

/* ---- YAML ---- */

typedef struct yaml_ctx {
        const cfg *c;
        const char *path;
        yaml_parser_t parser;
        bool *seen; /* per option: duplicates are an error, not "last wins" */
} yaml_ctx;

static int yaml_error_at(const yaml_ctx *y, const yaml_mark_t *m, kyb_error **err, const char *what)
{
        return kyb_error_setf(err, EINVAL, "config %s:%zu:%zu: %s", y->path, m->line + 1,
                              m->column + 1, what);
}

static int next_event(yaml_ctx *y, yaml_event_t *ev, kyb_error **err)
{
        const yaml_parser_t *p = &y->parser;

        if (yaml_parser_parse(&y->parser, ev))
                return 0;
        if (p->error == YAML_MEMORY_ERROR)
                return kyb_error_set(err, ENOMEM, "config %s", y->path);
        if (p->error == YAML_READER_ERROR)
                return kyb_error_setf(err, EINVAL, "config %s: invalid YAML: %s at byte %zu",
                                      y->path, p->problem ? p->problem : "read error",
                                      p->problem_offset);
        return kyb_error_setf(err, EINVAL, "config %s:%zu:%zu: invalid YAML: %s%s%s", y->path,
                              p->problem_mark.line + 1, p->problem_mark.column + 1,
                              p->problem ? p->problem : "syntax error", p->context ? " " : "",
                              p->context ? p->context : "");
}

static const char *event_name(yaml_event_type_t t)
{
        switch (t) {
        case YAML_SEQUENCE_START_EVENT:
                return "a sequence";
        case YAML_MAPPING_START_EVENT:
                return "a mapping";
        case YAML_ALIAS_EVENT:
                return "an alias";
        default:
                return "not a scalar";
        }
}

static bool is_null_scalar(const yaml_event_t *ev)
{
        const char *v = (const char *)ev->data.scalar.value;

        if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;
        return !v[0] || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
               !strcmp(v, "NULL");
}

static int yaml_apply(yaml_ctx *y, const kyb_config_option *opt, const yaml_event_t *ev,
                      kyb_error **err)
{
        const yaml_mark_t *m = &ev->start_mark;
        size_t idx = (size_t)(opt - y->c->table);
        int rc;

        if (ev->type != YAML_SCALAR_EVENT)
                rc = kyb_error_setf(err, EINVAL, "expected a value, got %s", event_name(ev->type));
        else if (y->seen[idx])
                rc = kyb_error_setf(err, EINVAL, "set twice");
        else if (is_null_scalar(ev))
                rc = kyb_error_setf(err, EINVAL, "no value given");
        else if (strlen((const char *)ev->data.scalar.value) != ev->data.scalar.length)
                rc = kyb_error_setf(err, EINVAL, "value contains a NUL character");
        else
                rc = kyb_config_set(opt, y->c->target, (const char *)ev->data.scalar.value, err);
        y->seen[idx] = true;
        if (rc < 0)
                return kyb_error_wrap(err, rc, "config %s:%zu:%zu: option %s", y->path, m->line + 1,
                                      m->column + 1, opt->name);
        return 0;
}

/* Reads one "key: value" pair; returns 1 after a pair, 0 at the mapping end. */
static int yaml_pair(yaml_ctx *y, kyb_error **err)
{
        yaml_event_t key, val;
        const kyb_config_option *opt;
        int rc = next_event(y, &key, err);

        if (rc < 0)
                return rc;
        if (key.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&key);
                return 0;
        }
        if (key.type != YAML_SCALAR_EVENT) {
                rc = yaml_error_at(y, &key.start_mark, err, "option names must be scalars");
        } else {
                const char *name = (const char *)key.data.scalar.value;
                opt = find_option(y->c, name, key.data.scalar.length);
                if (!opt)
                        rc = kyb_error_setf(err, EINVAL, "config %s:%zu:%zu: unknown option '%s'",
                                            y->path, key.start_mark.line + 1,
                                            key.start_mark.column + 1, name);
                else if ((rc = next_event(y, &val, err)) == 0) {
                        rc = yaml_apply(y, opt, &val, err);
                        yaml_event_delete(&val);
                }
        }
        yaml_event_delete(&key);
        return rc < 0 ? rc : 1;
}

/* Expects event type `want` next; `what` describes it for the message. */
static int yaml_expect(yaml_ctx *y, yaml_event_type_t want, const char *what, kyb_error **err)
{
        yaml_event_t ev;
        int rc = next_event(y, &ev, err);

        if (rc < 0)
                return rc;
        if (ev.type != want)
                rc = yaml_error_at(y, &ev.start_mark, err, what);
        yaml_event_delete(&ev);
        return rc;
}

/* Body of a document: a mapping, or nothing at all ("---" alone). */
static int yaml_body(yaml_ctx *y, kyb_error **err)
{
        yaml_event_t ev;
        bool empty;
        int rc = next_event(y, &ev, err);

        if (rc < 0)
                return rc;
        empty = ev.type == YAML_SCALAR_EVENT && is_null_scalar(&ev);
        if (ev.type != YAML_MAPPING_START_EVENT && !empty)
                rc = yaml_error_at(y, &ev.start_mark, err,
                                   "expected a mapping of option names to values");
        yaml_event_delete(&ev);
        if (rc < 0 || empty)
                return rc;
        while ((rc = yaml_pair(y, err)) > 0)
                ;
        return rc;
}

static int yaml_document(yaml_ctx *y, kyb_error **err)
{
        yaml_event_t ev;
        int rc = next_event(y, &ev, err);

        if (rc < 0)
                return rc;
        if (ev.type == YAML_STREAM_END_EVENT) {
                yaml_event_delete(&ev);
                return 0; /* empty file */
        }
        yaml_event_delete(&ev);
        rc = yaml_body(y, err);
        if (rc == 0)
                rc = yaml_expect(y, YAML_DOCUMENT_END_EVENT, "expected the end of the document",
                                 err);
        if (rc == 0)
                rc =
                    yaml_expect(y, YAML_STREAM_END_EVENT, "only one YAML document is allowed", err);
        return rc;
}

static int yaml_parse_file(const cfg *c, const char *path, FILE *f, kyb_error **err)
{
        yaml_ctx y = {.c = c, .path = path};
        int rc;

        y.seen = calloc(c->n ? c->n : 1, sizeof(*y.seen));
        if (!y.seen)
                return kyb_error_set(err, ENOMEM, "config %s", path);
        if (!yaml_parser_initialize(&y.parser)) {
                free(y.seen);
                return kyb_error_set(err, ENOMEM, "config %s", path);
        }
        yaml_parser_set_input_file(&y.parser, f);
        rc = yaml_expect(&y, YAML_STREAM_START_EVENT, "expected a YAML stream", err);
        if (rc == 0)
                rc = yaml_document(&y, err);
        yaml_parser_delete(&y.parser);
        free(y.seen);
        return rc;
}

/* Returns 1 when the file was read, 0 when an optional one is absent. */
static int apply_file(const cfg *c, const char *path, bool optional, kyb_error **err)
{
        FILE *f = fopen(path, "re");
        int rc;

        if (!f && optional && errno == ENOENT)
                return 0;
        if (!f)
                return kyb_error_set(err, errno, "config %s", path);
        rc = yaml_parse_file(c, path, f, err);
        fclose(f);
        return rc < 0 ? rc : 1;
}

/* --config, then <PREFIX>_CONFIG, then the default file (which may be absent). */
static const char *pick_file(const cfg *c, const char *flag_file, bool *optional)
{
        _cleanup_free_ char *name = NULL;
        const char *env = NULL;

        *optional = false;
        if (flag_file)
                return flag_file[0] ? flag_file : NULL;
        if (c->src->env_prefix && (name = env_name(c->src->env_prefix, "config")))
                env = env_lookup(c, name);
        if (env)
                return env;
        *optional = true;
        return c->src->default_file && c->src->default_file[0] ? c->src->default_file : NULL;
}

/* ---- entry points ---- */

static int load(const cfg *c, kyb_config_status *st, kyb_error **err)
{
        const char *flag_file = NULL;
        bool optional;
        int rc;

        rc = check_table(c, err);
        if (rc == 0)
                rc = scan_flags(c, st, &flag_file, err);
        if (rc == 0)
                rc = apply_defaults(c, err);
        if (rc < 0 || st->help)
                return rc;
        st->file = pick_file(c, flag_file, &optional);
        if (st->file)
                rc = apply_file(c, st->file, optional, err);
        if (rc == 0)
                st->file = NULL;
        rc = KYB_MIN(rc, 0);
        if (rc == 0)
                rc = apply_env(c, err);
        if (rc == 0)
                rc = apply_flags(c, err);
        return rc;
}

int kyb_config_load(const kyb_config_option *table, size_t n, void *target,
                    const kyb_config_sources *src, kyb_config_status *status, kyb_error **err)
{
        static const kyb_config_sources none = {0};
        kyb_config_status ignored;
        cfg c = {.table = table, .n = n, .target = target, .src = src ? src : &none};
        int rc;

        if (!status)
                status = &ignored;
        *status = (kyb_config_status){0};
        rc = load(&c, status, err);
        if (rc < 0)
                kyb_config_free(table, n, target);
        return rc;
}

/* ---- help ---- */

static void help_option(FILE *f, const kyb_config_option *opt, const char *env_prefix)
{
        _cleanup_free_ char *env = env_prefix ? env_name(env_prefix, opt->name) : NULL;
        char lo[32], hi[32];

        if (opt->type == KYB_CONFIG_BOOL)
                fprintf(f, "  --[no-]%s\n", opt->name);
        else
                fprintf(f, "  --%s %s\n", opt->name, type_names[opt->type]);
        if (opt->help)
                fprintf(f, "        %s\n", opt->help);
        fprintf(f, "        default: %s", opt->def ? opt->def : "none");
        if (opt->type >= KYB_CONFIG_INT64 && (opt->min != 0 || opt->max != 0)) {
                format_number(opt->type, opt->min, lo, sizeof(lo));
                format_number(opt->type, opt->max, hi, sizeof(hi));
                fprintf(f, "; range: %s..%s", lo, hi);
        }
        if (env)
                fprintf(f, "; env: %s", env);
        fputc('\n', f);
}

char *kyb_config_help(const kyb_config_option *table, size_t n, const char *env_prefix)
{
        _cleanup_free_ char *env = env_prefix ? env_name(env_prefix, "config") : NULL;
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        fprintf(f, "  --config FILE\n        YAML file with option values%s%s%s\n",
                env ? " (env: " : "", env ? env : "", env ? ")" : "");
        for (size_t i = 0; i < n; i++)
                help_option(f, &table[i], env_prefix);
        fprintf(f, "  -h, --help\n        show this help\n");
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}
