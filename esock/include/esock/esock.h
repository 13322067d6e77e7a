/* esock/esock.h: SCTP and TCP endpoints and associations as processes of
 * the rt runtime (<rt/rt.h>).
 *
 * This first part holds what the rest builds on: the library's version and
 * the probe that tells whether the running kernel has SCTP.
 */
#ifndef ESOCK_ESOCK_H
#define ESOCK_ESOCK_H

#include <stdbool.h>

#include <rt/rt.h>

#if defined(ESOCK_BUILDING)
#define ESOCK_API __attribute__((visibility("default")))
#else
#define ESOCK_API
#endif

/* esock_version: the library's version, "MAJOR.MINOR.PATCH". Static. */
ESOCK_API const char *esock_version(void);

/* esock_sctp_available: 0 if the running kernel can open SCTP sockets,
 * else the negative errno of the probe (-EPROTONOSUPPORT,
 * -ESOCKTNOSUPPORT: no SCTP in this kernel; -EACCES, -EMFILE: the probe
 * could not tell). Opens and closes one socket. Any thread. */
ESOCK_API int esock_sctp_available(void);

#endif
