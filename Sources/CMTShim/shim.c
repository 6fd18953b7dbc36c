#include "CMTShim.h"

#include <stddef.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

int mt_blk_getsize64(int fd, uint64_t *bytes) { return ioctl(fd, BLKGETSIZE64, bytes); }
int mt_blk_sszget(int fd, int *logical_block_size) { return ioctl(fd, BLKSSZGET, logical_block_size); }
int mt_blk_pbszget(int fd, unsigned int *physical_block_size) { return ioctl(fd, BLKPBSZGET, physical_block_size); }
int mt_blk_roget(int fd, int *read_only) { return ioctl(fd, BLKROGET, read_only); }
