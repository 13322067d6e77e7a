/* rt/rt.h: the whole runtime API. */
#ifndef RT_RT_H
#define RT_RT_H

#include <rt/call.h>
#include <rt/err.h>
#include <rt/msg.h>
#include <rt/proc.h>
#include <rt/runtime.h>
#include <rt/sup.h>
#include <rt/timer.h>

#endif
