/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0 */
/*
 * vpath ring-buffer records: the single source of the layout shared by the
 * kernel programs (bpf/vpath.bpf.c) and the Rust reader
 * (crates/vpath-bpf/src/raw.rs mirrors it with compile-time size and offset
 * assertions). Fixed-width types, explicit padding, little-endian host.
 *
 * Change a layout only together with raw.rs and VP_ABI_VERSION.
 */
#ifndef VPATH_H
#define VPATH_H

#ifndef __VPATH_TYPES_DEFINED
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef signed long long __s64;
#endif

#define VP_ABI_VERSION 6 /* 6: batches (VP_REC_BATCH); 5: message starts found per thread, flags VP_F_START and VP_F_UNSURE
			  * (4: sends/receives that moved no bytes, and peeks, are counted, not recorded) */

/* First byte of every record. */
#define VP_REC_SOCK 1
#define VP_REC_COMM 2
#define VP_REC_RUN 3
#define VP_REC_BATCH 4 /* struct vp_batch_hdr, then records (in rings only; see below) */

/* Operation: same numbering as vpath_core::Op. */
#define VP_OP_SEND 1
#define VP_OP_RECV 2
#define VP_OP_CONNECT 3
#define VP_OP_ACCEPT 4
#define VP_OP_CLOSE 5

/* Event flags: same bits as vpath_core::flags. */
#define VP_F_PEEK 1 /* never set by the probes since ABI 4 (peeks are counted) */
#define VP_F_SEQ 2
/* Only on records of operations placed in the first data_cap bytes of their
 * message (data_cap > 0; bits 4 and 8 are the reader's). START: the
 * operation begins its message (data_off 0), proven in the kernel. UNSURE: the kernel could not place the
 * operation in its message (the thread had not touched the socket lately
 * and another thread had): its bytes are copied as if it began one
 * (data_off 0), and the reader decides from the socket's operations in time
 * order. Neither: data_off is exact. */
#define VP_F_START 16
#define VP_F_UNSURE 32

/* Address families as the kernel numbers them. */
#define VP_AF_INET 2
#define VP_AF_INET6 10

/* Raw syscall number meaning "not known" (softirq context, no pt_regs). */
#define VP_SYSNR_UNKNOWN (-1)

/* Indexes of the per-CPU counter array map "COUNTERS". */
#define VP_CNT_SOCK_EMITTED 0 /* socket events the probes produced (incl. dropped) */
#define VP_CNT_SOCK_DROPPED 1 /* of those, ring buffer reserve failures */
#define VP_CNT_COMM_EMITTED 2 /* comm records produced (incl. dropped) */
#define VP_CNT_COMM_DROPPED 3 /* of those, reserve failures */
#define VP_CNT_RUN_OPS 4      /* operations merged into the run record of an earlier one */
#define VP_CNT_NO_BYTES 5     /* sends/receives that moved no bytes or peeked: not recorded */
#define VP_CNT_NO_CONTENT 6   /* message chunks not copied: their socket's protocol is not recognized */
#define VP_CNT_RUNS_OPENED 7  /* runs opened (after the lock: see vp_flush_iter) */
#define VP_CNT_RUNS_TAKEN 8   /* runs taken out to be sent (by their thread or the task iterator) */
#define VP_CNT_MAX 9

/* Most bytes of a message's start that a record carries (--payload-bytes). */
#define VP_DATA_MAX 8192
/* Room after data_cap bytes for a short first segment of a vectored call
 * (see vp_copy_data): a data-carrying record reserves 96 + cap + this. */
#define VP_SEG0_MAX 64

/* One socket operation: 96 bytes, followed by `data_len` bytes of the
 * message's data when the loader asked for message starts (data_cap > 0):
 * the bytes this operation moved that lie in the first data_cap bytes of its
 * message (a message: consecutive data operations in one direction on one
 * socket). The ring buffer record is longer than 96 + data_len; the rest is
 * unspecified. */
struct vp_sock_event {
	__u8 kind;      /*  0: VP_REC_SOCK */
	__u8 op;        /*  1: VP_OP_* */
	__u8 flags;     /*  2: VP_F_* */
	__u8 family;    /*  3: VP_AF_INET or VP_AF_INET6 */
	__u32 pid;      /*  4: tgid, host pid namespace; 0 = not attributed */
	__u32 tid;      /*  8: thread id; 0 = not attributed (softirq) */
	__u32 netns;    /* 12: network namespace inode */
	__u64 ts_ns;    /* 16: bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u64 cgroup;   /* 24: cgroup v2 id of the acting thread, 0 unknown */
	__u64 cookie;   /* 32: socket cookie */
	__s64 ret;      /* 40: bytes moved, 0 EOF, negative errno */
	__u32 seq;      /* 48: TCP stream position of the first byte */
	__s32 sysnr;    /* 52: raw x86_64 syscall number, VP_SYSNR_UNKNOWN */
	__u16 lport;    /* 56: local port, host byte order */
	__u16 rport;    /* 58: remote port, host byte order */
	__u16 data_len; /* 60: message bytes following this record */
	__u16 data_off; /* 62: offset of those bytes in their message */
	__u8 laddr[16]; /* 64: local address: IPv4 in the first 4 bytes */
	__u8 raddr[16]; /* 80: remote address */
};

/* A thread's name, sent the first time the thread is seen: 40 bytes. */
struct vp_comm_event {
	__u8 kind;      /*  0: VP_REC_COMM */
	__u8 _pad0[3];  /*  1: zero */
	__u32 pid;      /*  4 */
	__u32 tid;      /*  8 */
	__u32 _pad1;    /* 12: zero */
	__u64 ts_ns;    /* 16 */
	char comm[16];  /* 24: NUL-padded */
};

/* A run: consecutive data operations of one thread on one socket in one
 * direction, over contiguous stream bytes, none of which carries message
 * data, merged in the kernel into one record: 112 bytes. `e` is the first
 * operation's record except that e.kind is VP_REC_RUN and e.ret counts the
 * bytes of all `count` operations. "Consecutive": the thread made no other
 * recorded operation in between (see vp_run_* in vpath.bpf.c). */
struct vp_run_event {
	struct vp_sock_event e; /*   0 */
	__u64 ts_last;          /*  96: timestamp of the last operation */
	__u32 count;            /* 104: operations merged, at least 1 */
	__u32 first_ret;        /* 108: bytes the first operation moved */
};

/* A batch: socket and run records a CPU's probes gathered in a per-CPU
 * buffer and put in the ring together, one reserve and commit for all (the
 * ring's commit was as costly as the probes' own code). `len` bytes of
 * records follow the header, each a struct vp_sock_event and its data_len
 * message bytes, or a struct vp_run_event, padded to a multiple of 8 bytes.
 * Batches exist in rings only: the reader splits them, and a raw log stores
 * the records (so runs in batches changed no stored layout). */
struct vp_batch_hdr {
	__u8 kind;     /*  0: VP_REC_BATCH */
	__u8 _pad0[3]; /*  1: zero */
	__u32 len;     /*  4: bytes of records after the header */
	__u32 count;   /*  8: records */
	__u32 _pad1;   /* 12: zero */
};

/* A batch goes to the ring once it holds this many bytes of records (its
 * buffer holds one more record past it); message bytes are batched only up
 * to VP_BATCH_DATA_MAX per record (larger captures are not batched). */
#define VP_BATCH_BYTES 4096
#define VP_BATCH_DATA_MAX 256

/* The Rust mirror (raw.rs) asserts the same numbers. */
_Static_assert(sizeof(struct vp_sock_event) == 96, "vp_sock_event size");
_Static_assert(__builtin_offsetof(struct vp_sock_event, ts_ns) == 16, "vp_sock_event.ts_ns");
_Static_assert(__builtin_offsetof(struct vp_sock_event, seq) == 48, "vp_sock_event.seq");
_Static_assert(__builtin_offsetof(struct vp_sock_event, data_len) == 60, "vp_sock_event.data_len");
_Static_assert(__builtin_offsetof(struct vp_sock_event, laddr) == 64, "vp_sock_event.laddr");
_Static_assert(__builtin_offsetof(struct vp_sock_event, raddr) == 80, "vp_sock_event.raddr");
_Static_assert(sizeof(struct vp_run_event) == 112, "vp_run_event size");
_Static_assert(__builtin_offsetof(struct vp_run_event, ts_last) == 96, "vp_run_event.ts_last");
_Static_assert(__builtin_offsetof(struct vp_run_event, count) == 104, "vp_run_event.count");
_Static_assert(__builtin_offsetof(struct vp_run_event, first_ret) == 108, "vp_run_event.first_ret");
_Static_assert(sizeof(struct vp_comm_event) == 40, "vp_comm_event size");
_Static_assert(sizeof(struct vp_batch_hdr) == 16, "vp_batch_hdr size");
_Static_assert(__builtin_offsetof(struct vp_comm_event, comm) == 24, "vp_comm_event.comm");

#endif /* VPATH_H */
