/* The live-snapshot consistency workload: a process that keeps writing a known pattern.
 *
 * It maps PAGES pages of anonymous memory, locked in RAM, and stamps each page's first 24
 * bytes with {MAGIC, page index, sweep}. Then, forever, it increments the sweep counter and
 * writes it into every page, in index order. At any single instant the pages therefore hold
 * one sweep k in pages 0..j-1 and k-1 in pages j..PAGES-1, for some j: a dump of one instant
 * shows exactly that shape, while a copy made page by page as the guest runs shows sweeps
 * that jump around or step up. The test scans a dump for the pages (MAGIC at offset 0).
 *
 * Prints "GUESTCORE-PATTERN pages N magic 0x..." on stdout (the console) once the pages are
 * stamped and the sweeps have begun. Build: gcc -static -O2 -o pattern_writer pattern_writer.c
 */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>

#define PAGES 4096
#define PAGE 4096
#define MAGIC 0x4e5254544150434fULL /* "OCPATTRN" little-endian */

int main(void) {
    volatile uint64_t *mem = mmap(0, (size_t)PAGES * PAGE, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (mem == MAP_FAILED) {
        perror("GUESTCORE-WARN pattern_writer mmap");
        return 1;
    }
    if (mlock((void *)mem, (size_t)PAGES * PAGE) != 0)
        perror("GUESTCORE-WARN pattern_writer mlock");
    for (uint64_t i = 0; i < PAGES; i++) {
        volatile uint64_t *p = mem + i * (PAGE / 8);
        p[0] = MAGIC;
        p[1] = i;
        p[2] = 0;
    }
    printf("GUESTCORE-PATTERN pages %d magic %#llx\n", PAGES, (unsigned long long)MAGIC);
    fflush(stdout);
    for (uint64_t sweep = 1;; sweep++)
        for (uint64_t i = 0; i < PAGES; i++)
            mem[i * (PAGE / 8) + 2] = sweep;
}
