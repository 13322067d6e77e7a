/* rt/export.h: symbol visibility for the runtime library. */
#ifndef RT_EXPORT_H
#define RT_EXPORT_H

#if defined(RT_BUILDING) || defined(ESOCK_BUILDING)
#define RT_API __attribute__((visibility("default")))
#else
#define RT_API
#endif

#if defined(__GNUC__)
#define RT_NORETURN  __attribute__((noreturn))
#define RT_NODISCARD __attribute__((warn_unused_result))
#else
#define RT_NORETURN
#define RT_NODISCARD
#endif

#endif
