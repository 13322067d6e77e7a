/* err.c: rt_strerror and rt_errname from the one table in rt/err.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rt/err.h>

#include "internal.h"

static const struct {
    int code;
    const char *name;
    const char *text;
} table[] = {
#define RT_ERR_ROW(name, value, text) {value, #name, text},
    RT_ERRORS(RT_ERR_ROW)
#undef RT_ERR_ROW
};

static _Thread_local char buf[64];

RT_API const char *rt_strerror(int code)
{
    if (code == RT_EXIT_NORMAL)
        return "normal";
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == code)
            return table[i].text;
    if (code < 0 && code > -4096) {
        const char *d = strerrordesc_np(-code);
        if (d)
            return d;
    }
    snprintf(buf, sizeof buf, "%s %d", code > 0 ? "exit reason" : "unknown error", code);
    return buf;
}

RT_API const char *rt_errname(int code)
{
    if (code == RT_EXIT_NORMAL)
        return "RT_EXIT_NORMAL";
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == code)
            return table[i].name;
    if (code < 0 && code > -4096)
        return strerrorname_np(-code);
    return NULL;
}
