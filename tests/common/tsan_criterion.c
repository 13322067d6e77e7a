/* tsan_criterion.c: linked into the test binaries of ThreadSanitizer builds
 * only (tests/CMakeLists.txt).
 *
 * Criterion's BoxFort places its inheritable arena at an address it draws
 * with rand_r() from [0x2000'0000'0000, 0x6000'0000'0000) and maps it with
 * MAP_FIXED. Under ThreadSanitizer most of that range is not application
 * memory, TSan refuses the mapping, and every test binary dies with
 * "Could not initialize inheritable arena" (Criterion issue #274, open).
 * This rand_r steers the draw into TSan's application range for PIE
 * binaries (0x5500'0000'0000 to 0x5680'0000'0000), above where the kernel
 * places a PIE executable, so the arena maps. Nothing else in the tests or
 * the libraries calls rand_r. */
#include <stdlib.h>

__attribute__((visibility("default"))) int rand_r(unsigned *seed)
{
    /* base = 0x2000'0000'0000 + r * 16 MiB: 0x5670..., 0x5678..., 0x5660... */
    static const int picks[] = {0x367000, 0x367800, 0x366000, 0x365800};
    unsigned i = (*seed)++;
    return picks[i % (sizeof picks / sizeof picks[0])];
}
