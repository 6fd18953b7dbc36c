#ifndef CMTSHIM_H
#define CMTSHIM_H

#include <stddef.h>
#include <stdint.h>

/// Block-device ioctls whose request numbers are C macros Swift cannot import.
/// Each returns 0 on success or -1 with errno set.
int mt_blk_getsize64(int fd, uint64_t *bytes);
int mt_blk_sszget(int fd, int *logical_block_size);
int mt_blk_pbszget(int fd, unsigned int *physical_block_size);
int mt_blk_roget(int fd, int *read_only);

/// The kernel's NTP discipline state (adjtimex): 1 synchronised, 0 not, -1 on error.
int mt_clock_synchronized(void);

/// CRC-32C (Castagnoli, as in iSCSI and ext4) of `length` bytes, continuing from `crc` (0 to
/// start; pass the previous result to continue over more bytes). SSE4.2's crc32 instruction where
/// the CPU has it, a table otherwise.
uint32_t mt_crc32c(uint32_t crc, const void *data, size_t length);

/// Limits malloc to one arena (mallopt M_ARENA_MAX), which takes effect only when called before
/// any thread but the main one allocates. Returns mallopt's result: 1 on success.
int mt_malloc_one_arena(void);

#endif
