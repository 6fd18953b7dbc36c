#include "CMTShim.h"

#include <stddef.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <sys/timex.h>
#include <pthread.h>
#include <malloc.h>
#include <string.h>

int mt_blk_getsize64(int fd, uint64_t *bytes) { return ioctl(fd, BLKGETSIZE64, bytes); }
int mt_blk_sszget(int fd, int *logical_block_size) { return ioctl(fd, BLKSSZGET, logical_block_size); }
int mt_blk_pbszget(int fd, unsigned int *physical_block_size) { return ioctl(fd, BLKPBSZGET, physical_block_size); }
int mt_blk_roget(int fd, int *read_only) { return ioctl(fd, BLKROGET, read_only); }

int mt_clock_synchronized(void) {
    struct timex tx = {0};
    int state = adjtimex(&tx);
    if (state < 0) return -1;
    return (state == TIME_ERROR || (tx.status & STA_UNSYNC)) ? 0 : 1;
}

int mt_malloc_one_arena(void) { return mallopt(M_ARENA_MAX, 1); }

/* CRC-32C: reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF. */

static uint32_t crc32c_table[256];

static void crc32c_table_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[n] = c;
    }
}

static uint32_t crc32c_software(uint32_t crc, const unsigned char *p, size_t length) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, crc32c_table_init);
    while (length--) crc = crc32c_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const unsigned char *p, size_t length) {
    uint64_t c = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        length -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (length--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

uint32_t mt_crc32c(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = data;
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc32c_sse42(crc, p, length);
#endif
    return ~crc32c_software(crc, p, length);
}
