#include "CMTShim.h"

#include <stddef.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <sys/timex.h>

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
