#ifndef CMTSHIM_H
#define CMTSHIM_H

#include <stdint.h>

/// Block-device ioctls whose request numbers are C macros Swift cannot import.
/// Each returns 0 on success or -1 with errno set.
int mt_blk_getsize64(int fd, uint64_t *bytes);
int mt_blk_sszget(int fd, int *logical_block_size);
int mt_blk_pbszget(int fd, unsigned int *physical_block_size);
int mt_blk_roget(int fd, int *read_only);

/// The kernel's NTP discipline state (adjtimex): 1 synchronised, 0 not, -1 on error.
int mt_clock_synchronized(void);

#endif
