// SPDX-License-Identifier: GPL-2.0
/*
 * vpath kernel side: one record per TCP send/receive, connect, accept and
 * close (consecutive sends or receives of a thread on a socket that carry no
 * message data merge into one run record), plus a thread's comm the first
 * time the thread is seen.
 * Layouts: vpath.h. Inventory and measured costs: docs/probes.md.
 *
 * Build: scripts/build-bpf.sh (CO-RE, no generated vmlinux.h).
 */
#include "vp_kernel.h"
#include "vpath.h"

char LICENSE[] SEC("license") = "GPL";

#define IPPROTO_TCP 6
#define MSG_PEEK 2

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9

#define ECONNABORTED 103
#define SOCK_DONE 1 /* enum sock_flags, unchanged since 2.6 */

/* x86_64 numbers of the syscalls whose exits we attach to. */
#define VP_NR_ACCEPT 43
#define VP_NR_ACCEPT4 288

/* ---- Load-time configuration (set by the loader before load). ---------- */
const volatile __u32 own_tgid = 0;     /* the recorder's own process: never traced */
const volatile __u8 filter_pids = 0;   /* 1: only tgids in PID_FILTER */
const volatile __u8 filter_ports = 0;  /* 1: only sockets with a port in PORT_FILTER */
const volatile __u32 filter_netns = 0; /* non-zero: only this netns inode */
const volatile __u64 filter_cgroup = 0; /* non-zero: only threads in this cgroup (or below) */
const volatile __u32 filter_cgroup_level = 0; /* the level of filter_cgroup in the hierarchy */
/* 1: return right after the filter checks, record nothing (the "events
 * caught" stage of the overhead dissection; never set for real captures). */
const volatile __u8 discard_events = 0;
/* Bytes captured at the start of every message (consecutive data operations
 * in one direction on one socket); 0: none. At most VP_DATA_MAX. */
const volatile __u32 data_cap = 0;
/* 1: user space names sockets whose bytes it does not read in NO_CONTENT
 * (protocol labels only: a payload capture keeps every message's bytes). */
const volatile __u8 content_skip = 0;

/* Bumped whenever a thread's comm may have changed or a tid may be reused,
 * to invalidate the per-CPU last-thread caches. */
__u32 comm_gen = 0;

/* ---- Maps. -------------------------------------------------------------- */
/* One ring per CPU: a probe reserves in the ring of the CPU it runs on
 * (looked up once per invocation), so the CPUs never share a ring's lock or
 * producer position. User space creates a ring per possible CPU, of its own
 * size, puts it in RINGS and drains them all at every poll. The size here
 * is only the template's: the kernel does not compare ring sizes. */
struct vp_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* set at load: the possible CPUs */
	__type(key, __u32);
	__array(values, struct vp_ring);
} RINGS SEC(".maps");

/* Per CPU, the batch its data probes are filling (see struct vp_batch_hdr).
 * `busy` is set while a probe appends or flushes: whatever interrupts it on
 * this CPU (the flush program, run by user space on each CPU before it
 * drains the rings, in an interrupt; or another task's probe, if the kernel
 * preempts BPF programs) leaves the batch alone: the flush program asks for
 * a flush (`flush_req`), which the probe does when it is done; another
 * probe writes its record to the ring directly. Room: the threshold, then
 * one more record of the largest batched size. */
#define VP_BATCH_ROOM (VP_BATCH_BYTES + 512)
struct vp_batch {
	__u32 busy;
	__u32 flush_req;
	struct vp_batch_hdr h;
	__u8 buf[VP_BATCH_ROOM];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vp_batch);
} BATCH SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VP_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} COUNTERS SEC(".maps");

/* Threads whose comm was sent (value unused). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} SEEN_TIDS SEC(".maps");

struct vp_last {
	__u32 tid;
	__u32 gen;
	__u64 start;  /* task start_time: a reused tid is another thread */
	__u64 cgroup; /* the thread's cgroup id when it was cached */
};

/* Per CPU, threads that passed the thread filters and are known to be in
 * SEEN_TIDS, with their cgroup ids, in a direct-mapped table (slot: tid %
 * VP_LAST_SLOTS): a thread's events skip the PID_FILTER and SEEN_TIDS
 * lookups and the cgroup helper. A busy server interleaves dozens of
 * threads on a CPU, so one entry missed often (a SEEN_TIDS hash lookup, ~5%
 * of the probes' time on Tomcat). Keyed by (tid, start_time), so a thread's
 * exit needs no global invalidation; comm_gen invalidates all CPUs on a
 * rename of a seen thread, an exec or a cgroup move. */
#define VP_LAST_SLOTS 64
struct vp_last_table {
	struct vp_last slot[VP_LAST_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vp_last_table);
} LAST_TID SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} PID_FILTER SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} PORT_FILTER SEC(".maps");

/* Per thread (task-local storage, freed with the thread), its open run (see
 * struct vp_run_event in vpath.h): the data operations merged so far. Every
 * recorded operation of a thread passes through its storage, so an
 * operation joins the run only if the thread made no other recorded
 * operation since and it does not begin a message. The run goes out as one
 * record when an operation of the thread cannot join it, when the thread
 * connects, accepts, closes or exits, and whenever user space runs the
 * task iterator vp_flush_iter (every poll while a run is open: the
 * checkpoint promise covers open runs too). The lock orders the thread's
 * probes against the iterator, which runs on another CPU. The storage also
 * places the thread's operations in their messages (vp_msg_place). */
/* Where a socket the thread used lately stood after the thread's last data
 * operation on it (see vp_msg_place). */
struct vp_mslot {
	__u64 cookie; /* 0: free */
	__u32 snd;    /* send-stream position (write_seq) */
	__u32 rcv;    /* receive-stream position (vp_rcv_pos) */
	__u32 pos;    /* bytes of the operation's message up to its end, saturating */
	__u8 op;      /* VP_OP_SEND or VP_OP_RECV */
	__u8 no_content; /* the socket is in NO_CONTENT: its bytes are not copied */
	__u16 starts; /* messages begun in the slot (saturating): when to look */
};

/* Sockets whose message bytes user space does not read (its labeler found
 * no protocol it knows in several messages in a row, and none before: see
 * vpath_core::content::Labeler), by cookie. The probes look a socket up
 * at the 1st, 4th, 8th, 16th, ... message a thread begins on it, only
 * while NO_CONTENT_N says the map holds any (a lookup is a cache miss in
 * the bucket array: at the 4th, 8th and 16th message of each connection
 * it cost Tomcat 5% of the probes' time with the map empty), and remember
 * a hit in the thread's slot. Only a hint: an entry missing (not yet
 * added, evicted) costs a copy that user space then ignores, never a
 * label. LRU: an entry whose close was not seen cannot fill the map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
} NO_CONTENT SEC(".maps");

/* How many sockets user space put in NO_CONTENT and has not taken out (an
 * evicted entry still counts: the count only saves lookups). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} NO_CONTENT_N SEC(".maps");

#define VP_MSG_SLOTS 4

struct vp_trun {
	struct bpf_spin_lock lock;
	__u32 seq_next; /* stream position after the run's last byte */
	__u32 accepts;  /* the thread's ACCEPTS count when the run began */
	__u32 next_slot; /* the slot the next new socket takes (round robin) */
	struct vp_run_event run; /* run.count == 0: no open run */
	/* Touched only by the thread's own probes: outside the lock. */
	struct vp_mslot slot[VP_MSG_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct vp_trun);
} RUNS SEC(".maps");

/* Per thread, how many accepts it made: the accept probes are classic
 * tracepoint programs, which may not touch a map with a lock, so they end
 * the thread's run by moving this count instead. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u32);
} ACCEPTS SEC(".maps");

/* x86_64 numbers of the data syscalls whose user buffers we can find. */
#define VP_NR_READ 0
#define VP_NR_WRITE 1
#define VP_NR_READV 19
#define VP_NR_WRITEV 20
#define VP_NR_SENDTO 44
#define VP_NR_RECVFROM 45
#define VP_NR_SENDMSG 46
#define VP_NR_RECVMSG 47

/* ---- Helpers. ----------------------------------------------------------- */
static __always_inline void vp_add(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&COUNTERS, &idx);
	if (c)
		*c += n;
}

static __always_inline void vp_count(__u32 idx)
{
	vp_add(idx, 1);
}

/* A pid or cgroup filter is set: the thread-attributed accept probes are
 * attached, and events without a thread cannot pass the filters. */
static __always_inline int vp_thread_filters(void)
{
	return filter_pids || filter_cgroup;
}

/* This CPU's ring, or NULL if user space put none there (every record then
 * counts as dropped). Programs run with migration disabled: the CPU stays. */
static __always_inline void *vp_ring(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&RINGS, &cpu);
}

static __always_inline __s32 vp_sysnr_of(struct task_struct *task)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return VP_SYSNR_UNKNOWN;
	return (__s32)regs->orig_ax;
}

static __always_inline __s32 vp_sysnr(void)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return VP_SYSNR_UNKNOWN;
	return (__s32)regs->orig_ax;
}

/* Filters on the acting thread: own process, pid set, cgroup. */
static __always_inline int vp_thread_ok(__u32 tgid)
{
	if (tgid == own_tgid)
		return 0;
	if (filter_pids && !bpf_map_lookup_elem(&PID_FILTER, &tgid))
		return 0;
	if (filter_cgroup && bpf_get_current_ancestor_cgroup_id(filter_cgroup_level) != filter_cgroup)
		return 0;
	return 1;
}

/* Filters on the socket: netns and ports. */
static __always_inline int vp_sock_filter_ok(__u32 netns, __u16 lport, __u16 rport)
{
	if (filter_netns && netns != filter_netns)
		return 0;
	if (filter_ports && !bpf_map_lookup_elem(&PORT_FILTER, &lport) &&
	    !bpf_map_lookup_elem(&PORT_FILTER, &rport))
		return 0;
	return 1;
}

/* The per-CPU cache slot of thread `tid`, or NULL (never: the array has
 * one entry). */
static __always_inline struct vp_last *vp_last(__u32 tid)
{
	__u32 zero = 0;
	struct vp_last_table *t = bpf_map_lookup_elem(&LAST_TID, &zero);
	if (!t)
		return NULL;
	return &t->slot[tid & (VP_LAST_SLOTS - 1)];
}

/* Caches a thread that passed the thread filters and whose comm was sent.
 * tid goes last: a program preempting this one on the CPU either misses or
 * sees the whole entry. */
static __always_inline void vp_last_set(struct vp_last *last, __u32 tid, __u32 gen, __u64 start,
					__u64 cgroup)
{
	last->tid = 0;
	asm volatile("" ::: "memory");
	last->cgroup = cgroup;
	last->start = start;
	last->gen = gen;
	asm volatile("" ::: "memory");
	last->tid = tid;
}

/* Cache miss: sends the thread's comm unless SEEN_TIDS has the thread, and
 * caches the thread unless the comm record was dropped. */
static __always_inline void vp_comm_miss(void *ring, struct vp_last *last, __u32 gen, __u64 start,
					 __u64 pid_tgid, __u64 ts, __u64 cgroup)
{
	__u32 tid = (__u32)pid_tgid;
	if (bpf_map_lookup_elem(&SEEN_TIDS, &tid)) {
		vp_last_set(last, tid, gen, start, cgroup);
		return;
	}
	__u8 one = 1;
	if (bpf_map_update_elem(&SEEN_TIDS, &tid, &one, BPF_NOEXIST))
		return; /* another CPU raced us for this thread: it sends the comm */
	vp_count(VP_CNT_COMM_EMITTED);
	struct vp_comm_event *c = ring ? bpf_ringbuf_reserve(ring, sizeof(*c), 0) : NULL;
	if (!c) {
		vp_count(VP_CNT_COMM_DROPPED);
		bpf_map_delete_elem(&SEEN_TIDS, &tid); /* try again next time */
		return;
	}
	c->kind = VP_REC_COMM;
	c->_pad0[0] = 0;
	c->_pad0[1] = 0;
	c->_pad0[2] = 0;
	c->pid = pid_tgid >> 32;
	c->tid = tid;
	c->_pad1 = 0;
	c->ts_ns = ts;
	*(__u64 *)&c->comm[0] = 0;
	*(__u64 *)&c->comm[8] = 0;
	bpf_get_current_comm(c->comm, sizeof(c->comm));
	bpf_ringbuf_submit(c, BPF_RB_NO_WAKEUP);
	vp_last_set(last, tid, gen, start, cgroup);
}

/* Sends the current thread's comm unless this thread was seen before (for
 * the per-connection programs, whose thread passed the filters). */
static __always_inline void vp_comm_once(void *ring, __u64 pid_tgid, __u64 ts)
{
	__u32 gen = *(volatile __u32 *)&comm_gen;
	struct vp_last *last = vp_last((__u32)pid_tgid);
	if (!last)
		return;
	__u64 start = bpf_get_current_task_btf()->start_time;
	if (last->tid == (__u32)pid_tgid && last->gen == gen && last->start == start)
		return;
	vp_comm_miss(ring, last, gen, start, pid_tgid, ts, bpf_get_current_cgroup_id());
}

/* The socket's addresses, read through its BTF pointer (tp_btf programs). */
struct vp_tuple {
	__u32 netns;
	__u16 family;
	__u16 lport;
	__u16 rport;
};

static __always_inline int vp_tuple_btf(struct sock *sk, struct vp_tuple *t)
{
	t->family = sk->__sk_common.skc_family;
	if (t->family != VP_AF_INET && t->family != VP_AF_INET6)
		return 0;
	t->lport = sk->__sk_common.skc_num;
	t->rport = __builtin_bswap16(sk->__sk_common.skc_dport);
	t->netns = sk->__sk_common.skc_net.net->ns.inum;
	return 1;
}

static __always_inline void vp_addrs_btf(struct vp_sock_event *e, struct sock *sk, __u16 family)
{
	if (family == VP_AF_INET) {
		*(__u32 *)&e->laddr[0] = sk->__sk_common.skc_rcv_saddr;
		*(__u32 *)&e->laddr[4] = 0;
		*(__u64 *)&e->laddr[8] = 0;
		*(__u32 *)&e->raddr[0] = sk->__sk_common.skc_daddr;
		*(__u32 *)&e->raddr[4] = 0;
		*(__u64 *)&e->raddr[8] = 0;
	} else {
		*(__u64 *)&e->laddr[0] = *(__u64 *)&sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[0];
		*(__u64 *)&e->laddr[8] = *(__u64 *)&sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[2];
		*(__u64 *)&e->raddr[0] = *(__u64 *)&sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[0];
		*(__u64 *)&e->raddr[8] = *(__u64 *)&sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[2];
	}
}

static __always_inline void vp_fill(struct vp_sock_event *e, __u8 op, __u8 flags, __u32 pid, __u32 tid,
				    __u64 ts, __u64 cgroup, __u64 cookie, __s64 ret, __u32 seq, __s32 sysnr,
				    const struct vp_tuple *t)
{
	e->kind = VP_REC_SOCK;
	e->op = op;
	e->flags = flags;
	e->family = (__u8)t->family;
	e->pid = pid;
	e->tid = tid;
	e->netns = t->netns;
	e->ts_ns = ts;
	e->cgroup = cgroup;
	e->cookie = cookie;
	e->ret = ret;
	e->seq = seq;
	e->sysnr = sysnr;
	e->lport = t->lport;
	e->rport = t->rport;
	e->data_len = 0;
	e->data_off = 0;
}

static __always_inline struct vp_sock_event *vp_reserve(void *ring)
{
	vp_count(VP_CNT_SOCK_EMITTED);
	struct vp_sock_event *e = ring ? bpf_ringbuf_reserve(ring, sizeof(*e), 0) : NULL;
	if (!e)
		vp_count(VP_CNT_SOCK_DROPPED);
	return e;
}

/* This CPU's batch. */
static __always_inline struct vp_batch *vp_batch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&BATCH, &zero);
}

/* Puts the batch in the ring and empties it. Call with b->busy set (or
 * from the flush program, which nothing on this CPU interrupts). A batch
 * the ring has no room for is dropped, and its records counted so. */
static __always_inline void vp_batch_flush(struct vp_batch *b, void *ring)
{
	__u64 n = b->h.len;
	if (n) {
		if (n > VP_BATCH_ROOM)
			n = VP_BATCH_ROOM;
		/* The clamped value, not one the compiler derives from the
		 * unclamped (the verifier must see the bound on the size). */
		asm volatile("" : "+r"(n));
		b->h.kind = VP_REC_BATCH;
		if (!ring || bpf_ringbuf_output(ring, &b->h, sizeof(b->h) + n, BPF_RB_NO_WAKEUP))
			vp_add(VP_CNT_SOCK_DROPPED, b->h.count);
	}
	b->h.len = 0;
	b->h.count = 0;
	b->flush_req = 0;
}

/* A place for one socket record in this CPU's batch, if no probe on this
 * CPU is using it: the batch is then busy (*bp set) until vp_batch_done.
 * NULL: write to the ring instead. */
static __always_inline struct vp_sock_event *vp_batch_slot(struct vp_batch **bp, void *ring)
{
	struct vp_batch *b = data_cap <= VP_BATCH_DATA_MAX ? vp_batch() : NULL;
	*bp = NULL;
	if (!b || b->busy)
		return NULL;
	b->busy = 1;
	asm volatile("" ::: "memory");
	__u32 at = b->h.len;
	if (at > VP_BATCH_BYTES) {
		/* Never: a full batch is flushed by the probe that filled it. */
		vp_batch_flush(b, ring);
		asm volatile("" ::: "memory");
		b->busy = 0;
		return NULL;
	}
	vp_count(VP_CNT_SOCK_EMITTED);
	*bp = b;
	return (struct vp_sock_event *)&b->buf[at];
}

/* The record in the batch slot is written, `len` bytes with its message
 * bytes: the batch takes it (padded to 8), goes to the ring if full or
 * asked for, and is free again. */
static __always_inline void vp_batch_done(struct vp_batch *b, void *ring, __u32 len)
{
	b->h.len += (len + 7) & ~7U;
	b->h.count += 1;
	if (b->flush_req || b->h.len >= VP_BATCH_BYTES)
		vp_batch_flush(b, ring);
	asm volatile("" ::: "memory");
	b->busy = 0;
}

/* Records a connection event (connect, passive open, close) of `sk`. */
static __always_inline void vp_conn_event(struct sock *sk, const struct vp_tuple *t, void *ring, __u8 op,
					  __u32 pid, __u32 tid, __u64 ts, __u64 cgroup, __u64 cookie, __s64 ret,
					  __s32 sysnr)
{
	struct vp_batch *b;
	struct vp_sock_event *e = vp_batch_slot(&b, ring);
	if (!e)
		e = vp_reserve(ring);
	if (!e)
		return;
	vp_fill(e, op, 0, pid, tid, ts, cgroup, cookie, ret, 0, sysnr, t);
	vp_addrs_btf(e, sk, t->family);
	if (b)
		vp_batch_done(b, ring, sizeof(*e));
	else
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* Sends a run taken out of its storage: into this CPU's batch if free, else
 * straight to the ring. */
static __attribute__((noinline)) void vp_run_send(void *ring, const struct vp_run_event *run)
{
	struct vp_batch *b;
	struct vp_sock_event *e = vp_batch_slot(&b, ring);
	if (e) {
		__builtin_memcpy((struct vp_run_event *)e, run, sizeof(*run));
		vp_batch_done(b, ring, sizeof(*run));
		return;
	}
	vp_count(VP_CNT_SOCK_EMITTED);
	struct vp_run_event *r = ring ? bpf_ringbuf_reserve(ring, sizeof(*r), 0) : NULL;
	if (!r) {
		vp_count(VP_CNT_SOCK_DROPPED);
		return;
	}
	__builtin_memcpy(r, run, sizeof(*r));
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

/* Takes the open run out of `tr` into `out`; 1 if there was one. */
static __always_inline int vp_run_take(struct vp_trun *tr, struct vp_run_event *out)
{
	int took = 0;
	bpf_spin_lock(&tr->lock);
	if (tr->run.count) {
		__builtin_memcpy(out, &tr->run, sizeof(*out));
		tr->run.count = 0;
		took = 1;
	}
	bpf_spin_unlock(&tr->lock);
	if (took)
		vp_count(VP_CNT_RUNS_TAKEN);
	return took;
}

/* Before a connect, accept, close or exit of the current thread is recorded:
 * the thread's open run ends here. */
static __always_inline void vp_run_end(void *ring)
{
	struct vp_trun *tr = bpf_task_storage_get(&RUNS, bpf_get_current_task_btf(), 0, 0);
	struct vp_run_event out;
	/* Only this thread opens its run: an unlocked "no run" is exact. */
	if (tr && tr->run.count && vp_run_take(tr, &out))
		vp_run_send(ring, &out);
}

/* One user-space segment of a syscall's buffer (struct iovec's layout). */
struct vp_seg {
	__u64 base;
	__u64 len;
};

/* The first two segments of the current syscall's user buffer, from its
 * saved registers: the buffer of read/write/sendto/recvfrom, the iovec of
 * readv/writev, the msghdr's iovec of sendmsg/recvmsg. 0: not a call whose
 * buffer we know (sendfile, splice, io_uring, ...). */
static __always_inline int vp_user_segs(struct pt_regs *regs, __s32 sysnr, struct vp_seg *segs)
{
	__u64 iov = 0, cnt = 0;
	segs[1].base = 0;
	segs[1].len = 0;
	switch (sysnr) {
	case VP_NR_READ:
	case VP_NR_WRITE:
	case VP_NR_SENDTO:
	case VP_NR_RECVFROM:
		segs[0].base = regs->si;
		segs[0].len = regs->dx;
		return 1;
	case VP_NR_READV:
	case VP_NR_WRITEV:
		iov = regs->si;
		cnt = regs->dx;
		break;
	case VP_NR_SENDMSG:
	case VP_NR_RECVMSG: {
		/* struct user_msghdr: msg_iov at 16, msg_iovlen at 24. */
		__u64 hdr[2];
		if (bpf_probe_read_user(hdr, sizeof(hdr), (void *)(regs->si + 16)))
			return 0;
		iov = hdr[0];
		cnt = hdr[1];
		break;
	}
	default:
		return 0;
	}
	if (!iov || !cnt)
		return 0;
	if (bpf_probe_read_user(segs, cnt >= 2 ? 2 * sizeof(*segs) : sizeof(*segs), (void *)iov))
		return 0;
	return 1;
}

/* Copies up to n bytes of the current syscall's buffer into `dst`, which
 * holds data_cap + VP_SEG0_MAX bytes: the first segment (up to data_cap),
 * then, when the first was shorter than VP_SEG0_MAX (a protocol header
 * written apart from its body), the second. Returns the bytes copied. */
static __always_inline __u32 vp_copy_data(__u8 *dst, __u64 n, struct task_struct *task, __s32 sysnr)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	struct vp_seg segs[2];
	if (!regs || !vp_user_segs(regs, sysnr, segs))
		return 0;
	/* 64-bit throughout, so that each bound check below lands on the very
	 * register the verifier then sees as the copy's size. */
	__u64 cap = data_cap;
	__u64 k0 = segs[0].len < n ? segs[0].len : n;
	if (k0 > cap) /* never: n <= data_cap; bounds the copy for the verifier */
		return 0;
	if (k0 && bpf_probe_read_user(dst, k0, (void *)segs[0].base))
		return 0;
	if (k0 >= n || !segs[1].len)
		return (__u32)k0;
	if (k0 >= VP_SEG0_MAX)
		return (__u32)k0;
	__u64 k1 = segs[1].len < n - k0 ? segs[1].len : n - k0;
	if (k1 > cap)
		return (__u32)k0;
	if (bpf_probe_read_user(dst + k0, k1, (void *)segs[1].base))
		return (__u32)k0;
	return (__u32)(k0 + k1);
}

/* Where a data operation lies in its message (a message: consecutive data
 * operations in one direction on one socket), from the thread's last
 * operation on the same socket and both streams' positions, without any
 * per-socket state (socket storage, created and freed with every
 * connection, was a fifth of the probes' time on a connection-churning
 * server). `seq`: this direction's position before the operation; `snd`,
 * `rcv`: both positions after it. Positions only move forward, by the bytes
 * each operation moves, so equal positions prove that nothing moved:
 * - this direction moved since the thread's last operation on the socket
 *   (another thread sent or received in between), or the thread has no
 *   recent operation there: not known, VP_F_UNSURE (placed at 0);
 * - else, if that operation was in this direction and the other direction
 *   has not moved since: the message goes on, at that operation's end;
 * - else an operation in the other direction came last: a new message,
 *   VP_F_START.
 * Updates the socket's slot; returns the flags, the offset in `off`. */
static __always_inline __u8 vp_msg_place(struct vp_trun *tr, __u64 cookie, __u8 op, __u32 seq, __u32 ret,
					 __u32 snd, __u32 rcv, __u32 *off, struct vp_mslot **slot)
{
	struct vp_mslot *m = NULL;
#pragma unroll
	for (int i = 0; i < VP_MSG_SLOTS; i++) {
		if (tr->slot[i].cookie == cookie)
			m = &tr->slot[i];
	}
	__u8 fl;
	__u32 at = 0;
	if (!m) {
		m = &tr->slot[tr->next_slot & (VP_MSG_SLOTS - 1)];
		tr->next_slot += 1;
		m->no_content = 0;
		m->starts = 0;
		fl = VP_F_UNSURE;
	} else {
		__u32 was_this = op == VP_OP_SEND ? m->snd : m->rcv;
		__u32 other_was = op == VP_OP_SEND ? m->rcv : m->snd;
		__u32 other_now = op == VP_OP_SEND ? rcv : snd;
		if (was_this != seq) {
			fl = VP_F_UNSURE;
		} else if (m->op == op && other_was == other_now) {
			at = m->pos;
			fl = at ? 0 : VP_F_START;
		} else {
			fl = VP_F_START;
		}
	}
	__u64 end = (__u64)at + ret;
	m->cookie = cookie;
	m->snd = snd;
	m->rcv = rcv;
	m->pos = end > 0xffffffffULL ? 0xffffffffU : (__u32)end;
	m->op = op;
	if (!at && m->starts != 0xffff)
		m->starts += 1;
	*off = at;
	*slot = m;
	return fl;
}

/* Whether the thread's slot `m` for socket `cookie` says its bytes are not
 * wanted: looked up in NO_CONTENT, if the map is not empty, when a message
 * begins and it is the 1st, 4th, 8th, 16th, ... the slot has seen (the 1st:
 * a thread pool's workers take turns on pooled connections, and their
 * slots change sockets often). */
static __always_inline int vp_no_content(struct vp_mslot *m, __u64 cookie, __u32 off)
{
	if (m->no_content)
		return 1;
	__u32 n = m->starts; /* >= 1: this message counted */
	if (off || n == 2 || (n & (n - 1)))
		return 0;
	__u32 zero = 0;
	__u32 *any = bpf_map_lookup_elem(&NO_CONTENT_N, &zero);
	if (!any || !*any)
		return 0;
	if (!bpf_map_lookup_elem(&NO_CONTENT, &cookie))
		return 0;
	m->no_content = 1;
	return 1;
}

/* ---- Data: every send/recv-family call on a socket. --------------------- */
static __always_inline int vp_data(unsigned long long *ctx, __u8 op)
{
	struct sock *sk = (struct sock *)VP_ARG(ctx, 0);

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	/* pid and tgid straight from the task (host namespace values, as
	 * bpf_get_current_pid_tgid gives), saving a helper call. */
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 pid_tgid = ((__u64)(__u32)task->tgid << 32) | (__u32)task->pid;
	__u64 start = task->start_time;
	__u32 gen = *(volatile __u32 *)&comm_gen;
	struct vp_last *last = vp_last((__u32)pid_tgid);
	if (!last)
		return 0;
	/* The cached thread passed the thread filters when it was cached; the
	 * pid set is fixed and a cgroup move invalidates the cache. */
	int hit = last->tid == (__u32)pid_tgid && last->gen == gen && last->start == start;
	if (!hit && !vp_thread_ok(pid_tgid >> 32))
		return 0;
	struct vp_tuple t;
	if (!vp_tuple_btf(sk, &t) || !vp_sock_filter_ok(t.netns, t.lport, t.rport))
		return 0;
	if (discard_events)
		return 0;
	/* An operation that moved no bytes (EAGAIN, EOF, an error) or only
	 * looked at them (MSG_PEEK) is not part of any message: counted, not
	 * recorded. Before this, a non-blocking server's EAGAIN reads were 12%
	 * of Tomcat's records, which the analyzer then ignored. */
	int ret = (int)VP_ARG(ctx, 1);
	if (ret <= 0 || (op == VP_OP_RECV && ((int)VP_ARG(ctx, 2) & MSG_PEEK))) {
		vp_count(VP_CNT_NO_BYTES);
		return 0;
	}

	void *ring = vp_ring();
	__u64 ts = bpf_ktime_get_ns();
	__u64 cgroup;
	if (hit) {
		cgroup = last->cgroup;
	} else {
		cgroup = bpf_get_current_cgroup_id();
		vp_comm_miss(ring, last, gen, start, pid_tgid, ts, cgroup);
	}

	__u8 flags = 0;
	__u32 seq = 0, snd = 0, rcv = 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (tp) {
		flags |= VP_F_SEQ;
		/* Both streams' positions after the operation (the tracepoint
		 * fires after the copy). A read that reaches a FIN riding on its
		 * last data segment also moves copied_seq over the FIN's
		 * sequence number; a FIN was received (SOCK_DONE) and consumed
		 * exactly when copied_seq caught up with rcv_nxt, which counts
		 * it. */
		snd = tp->write_seq;
		rcv = tp->copied_seq;
		if ((sk->__sk_common.skc_flags & (1UL << SOCK_DONE)) && rcv == tp->rcv_nxt)
			rcv -= 1;
		/* Step back over the bytes moved. */
		seq = (op == VP_OP_SEND ? snd : rcv) - (__u32)ret;
	}

	__s32 sysnr = vp_sysnr_of(task);
	/* The cookie is made on first use; once made, a plain read. */
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	if (!cookie)
		cookie = bpf_get_socket_cookie(sk);

	/* The thread's storage: its open run and its recent sockets. Made for
	 * any operation at a known stream position. */
	struct vp_trun *tr = bpf_task_storage_get(&RUNS, task, 0, tp ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);

	/* Where the operation lies in its message (runs need it: see below);
	 * with data_cap, how many of its bytes lie in the first data_cap bytes
	 * of its message. */
	__u32 off = 0, want = 0;
	__u8 place = VP_F_UNSURE;
	struct vp_mslot *m = NULL;
	if (tr && tp)
		place = vp_msg_place(tr, cookie, op, seq, (__u32)ret, snd, rcv, &off, &m);
	if (data_cap) {
		flags |= place;
		if (content_skip && m && off < data_cap && vp_no_content(m, cookie, off)) {
			vp_count(VP_CNT_NO_CONTENT);
		} else if (off < data_cap) {
			want = data_cap - off;
			if (want > (__u32)ret)
				want = (__u32)ret;
		}
	}

	/* Runs: an operation at a known stream position that carries no
	 * message data may be merged with its thread's previous one, unless it
	 * may begin a message (without content capture, or its bytes not
	 * copied: NO_CONTENT): a thread that reads request after request on
	 * one connection while other threads answer them makes one contiguous
	 * stream of receives, and the boundaries between the requests must
	 * stay events (merged, a thread pool's paths were wrong). */
	int mergeable = (flags & VP_F_SEQ) && !want;
	int joins = mergeable && !(place & (VP_F_START | VP_F_UNSURE));
	/* Only this thread opens its run, so an unlocked read of "no run" is
	 * exact: an operation that cannot open one has nothing to do. */
	if (tr && (mergeable || tr->run.count)) {
		struct vp_run_event out;
		int flush = 0;
		__u32 accepts = 0;
		/* Only the accept probes move it, attached only with thread
		 * filters (see vp_state's passive open). */
		if (mergeable && vp_thread_filters()) {
			__u32 *acc = bpf_task_storage_get(&ACCEPTS, task, 0, 0);
			if (acc)
				accepts = *acc;
		}
		bpf_spin_lock(&tr->lock);
		if (joins && tr->run.count && tr->run.e.cookie == cookie && tr->run.e.op == op &&
		    tr->seq_next == seq && tr->accepts == accepts) {
			tr->run.e.ret += ret;
			tr->run.ts_last = ts;
			tr->run.count += 1;
			tr->seq_next = seq + (__u32)ret;
			bpf_spin_unlock(&tr->lock);
			vp_count(VP_CNT_RUN_OPS);
			return 0;
		}
		if (tr->run.count) {
			__builtin_memcpy(&out, &tr->run, sizeof(out));
			tr->run.count = 0;
			flush = 1;
		}
		if (mergeable) {
			vp_fill(&tr->run.e, op, flags, pid_tgid >> 32, (__u32)pid_tgid, ts, cgroup, cookie, ret, seq,
				sysnr, &t);
			vp_addrs_btf(&tr->run.e, sk, t.family);
			tr->run.e.kind = VP_REC_RUN;
			tr->run.ts_last = ts;
			tr->run.first_ret = (__u32)ret;
			tr->run.count = 1;
			tr->seq_next = seq + (__u32)ret;
			tr->accepts = accepts;
		}
		bpf_spin_unlock(&tr->lock);
		/* Counted after the lock (no helper may run under it): user space
		 * skips the task iterator while every opened run was taken. */
		if (flush) {
			vp_count(VP_CNT_RUNS_TAKEN);
			vp_run_send(ring, &out);
		}
		if (mergeable) {
			vp_count(VP_CNT_RUNS_OPENED);
			return 0;
		}
	}

	struct vp_batch *b;
	struct vp_sock_event *e = vp_batch_slot(&b, ring);
	if (e) {
		vp_fill(e, op, flags, pid_tgid >> 32, (__u32)pid_tgid, ts, cgroup, cookie, ret, seq, sysnr, &t);
		vp_addrs_btf(e, sk, t.family);
		__u32 len = sizeof(*e);
		if (want) {
			__u32 got = vp_copy_data((__u8 *)(e + 1), (__u64)want, task, sysnr);
			e->data_len = (__u16)got;
			e->data_off = (__u16)off;
			len += got;
		}
		vp_batch_done(b, ring, len);
		return 0;
	}
	if (want) {
		/* A record with room for the message bytes (its own reserve, so
		 * that the verifier sees the size on the copy's path). */
		vp_count(VP_CNT_SOCK_EMITTED);
		e = ring ? bpf_ringbuf_reserve(ring, sizeof(*e) + data_cap + VP_SEG0_MAX, 0) : NULL;
		if (!e) {
			vp_count(VP_CNT_SOCK_DROPPED);
			return 0;
		}
		vp_fill(e, op, flags, pid_tgid >> 32, (__u32)pid_tgid, ts, cgroup, cookie, ret, seq, sysnr, &t);
		vp_addrs_btf(e, sk, t.family);
		e->data_len = (__u16)vp_copy_data((__u8 *)(e + 1), (__u64)want, task, sysnr);
		e->data_off = (__u16)off;
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
		return 0;
	}
	e = vp_reserve(ring);
	if (!e)
		return 0;
	vp_fill(e, op, flags, pid_tgid >> 32, (__u32)pid_tgid, ts, cgroup, cookie, ret, seq, sysnr, &t);
	vp_addrs_btf(e, sk, t.family);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("tp_btf/sock_send_length")
int vp_send(unsigned long long *ctx)
{
	return vp_data(ctx, VP_OP_SEND);
}

SEC("tp_btf/sock_recv_length")
int vp_recv(unsigned long long *ctx)
{
	return vp_data(ctx, VP_OP_RECV);
}

/* ---- Connect and close: TCP state changes. ------------------------------ */
SEC("tp_btf/inet_sock_set_state")
int vp_state(unsigned long long *ctx)
{
	struct sock *sk = (struct sock *)VP_ARG(ctx, 0);
	int oldstate = (int)VP_ARG(ctx, 1);
	int newstate = (int)VP_ARG(ctx, 2);

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;

	struct vp_tuple t;
	__u64 ts;

	if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		/* Passive open done (in softirq: `current` is unrelated). */
		__u64 cookie = bpf_get_socket_cookie(sk);
		/* With thread filters, the accept probes report the accept by
		 * its thread (and need the cookie fixed now: a classic
		 * tracepoint has no cookie helper). Without, the open is
		 * reported here, unattributed: the accept probes are then not
		 * attached, because any syscall tracepoint puts every syscall
		 * of every process on the tracing slow path (~0.6% of the
		 * machine under Tomcat load, more than the accepts' own
		 * probes). The analyzer needs the open (it marks the
		 * serving end and the stream's start), not its thread. */
		if (vp_thread_filters())
			return 0;
		if (!vp_tuple_btf(sk, &t) || !vp_sock_filter_ok(t.netns, t.lport, t.rport))
			return 0;
		if (discard_events)
			return 0;
		ts = bpf_ktime_get_ns();
		vp_conn_event(sk, &t, vp_ring(), VP_OP_ACCEPT, 0, 0, ts, 0, cookie, 0, VP_SYSNR_UNKNOWN);
		return 0;
	}

	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		/* Active open, by the connecting thread: recorded here, where
		 * the thread is `current`. The local port is usually not chosen
		 * yet (tcp_v4_connect picks it after this state change), so the
		 * record's local port is 0 and the socket's next records, which
		 * carry its cookie, complete the tuple. Waiting for the end of
		 * the handshake (softirq, another `current`) meant a hash map
		 * from cookie to thread, whose insert, lookup and delete cost
		 * ~1.5 us per connect under Tomcat's load. */
		__u64 pid_tgid = bpf_get_current_pid_tgid();
		if (!vp_thread_ok(pid_tgid >> 32))
			return 0;
		if (!vp_tuple_btf(sk, &t) || !vp_sock_filter_ok(t.netns, t.lport, t.rport))
			return 0;
		if (discard_events)
			return 0;
		ts = bpf_ktime_get_ns();
		void *ring = vp_ring();
		vp_comm_once(ring, pid_tgid, ts);
		vp_run_end(ring);
		vp_conn_event(sk, &t, ring, VP_OP_CONNECT, pid_tgid >> 32, (__u32)pid_tgid, ts,
			      bpf_get_current_cgroup_id(), bpf_get_socket_cookie(sk), 0, vp_sysnr());
		return 0;
	}

	if (oldstate == TCP_SYN_SENT && newstate != TCP_CLOSE)
		return 0; /* the handshake succeeded: nothing new to record */

	int by_thread = (oldstate == TCP_ESTABLISHED && newstate == TCP_FIN_WAIT1) ||
			(oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK);
	/* A reset or abortive close, or a failed handshake (refused, timed
	 * out: its connect was recorded at SYN_SENT). */
	int aborted = newstate == TCP_CLOSE &&
		      (oldstate == TCP_ESTABLISHED || oldstate == TCP_CLOSE_WAIT || oldstate == TCP_SYN_SENT);
	if (!by_thread && !aborted)
		return 0;

	__u32 pid = 0, tid = 0;
	__u64 cgroup = 0;
	__s32 sysnr = VP_SYSNR_UNKNOWN;
	__s64 ret = 0;
	if (by_thread) {
		__u64 pid_tgid = bpf_get_current_pid_tgid();
		if (!vp_thread_ok(pid_tgid >> 32))
			return 0;
		pid = pid_tgid >> 32;
		tid = (__u32)pid_tgid;
		cgroup = bpf_get_current_cgroup_id();
		sysnr = vp_sysnr();
	} else {
		/* Reset or abortive close: may run in softirq, so `current` is
		 * not the owner. Reported unattributed; the socket cookie names
		 * the connection. Thread filters cannot apply. */
		if (vp_thread_filters())
			return 0;
		ret = -(__s64)sk->sk_err;
		/* A handshake given up without a socket error (no port left,
		 * closed while connecting) still failed. */
		if (ret == 0 && oldstate == TCP_SYN_SENT)
			ret = -ECONNABORTED;
	}
	if (!vp_tuple_btf(sk, &t) || !vp_sock_filter_ok(t.netns, t.lport, t.rport))
		return 0;
	if (discard_events)
		return 0;
	ts = bpf_ktime_get_ns();
	void *ring = vp_ring();
	if (by_thread) {
		vp_comm_once(ring, ((__u64)pid << 32) | tid, ts);
		vp_run_end(ring);
	}
	vp_conn_event(sk, &t, ring, VP_OP_CLOSE, pid, tid, ts, cgroup, bpf_get_socket_cookie(sk), ret, sysnr);
	return 0;
}

/* ---- Accept: exit of accept/accept4 (classic syscall tracepoints). ------- */
struct vp_sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__s32 _pad;
	__s64 ret;
};

static __always_inline int vp_accept(struct vp_sys_exit_ctx *ctx, __s32 sysnr)
{
	__s64 fd = ctx->ret;
	if (fd < 0)
		return 0;
	__u64 ts = bpf_ktime_get_ns();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!vp_thread_ok(pid_tgid >> 32))
		return 0;

	/* fd -> struct file -> struct socket -> struct sock */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct files_struct *files = NULL;
	struct fdtable *fdt = NULL;
	struct file **fdarr = NULL;
	struct file *file = NULL, *back = NULL;
	struct socket *sock = NULL;
	struct sock *sk = NULL;
	unsigned int max_fds = 0;
	if (VP_READ(files, task->files) || !files || VP_READ(fdt, files->fdt) || !fdt ||
	    VP_READ(max_fds, fdt->max_fds) || (__u64)fd >= max_fds || VP_READ(fdarr, fdt->fd) || !fdarr)
		return 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fdarr[fd]) || !file)
		return 0;
	if (VP_READ(sock, file->private_data) || !sock || VP_READ(back, sock->file) || back != file ||
	    VP_READ(sk, sock->sk) || !sk)
		return 0;

	__u16 proto = 0;
	struct vp_tuple t = {};
	if (VP_READ(proto, sk->sk_protocol) || proto != IPPROTO_TCP)
		return 0;
	if (VP_READ(t.family, sk->__sk_common.skc_family) ||
	    (t.family != VP_AF_INET && t.family != VP_AF_INET6))
		return 0;
	__u16 dport = 0;
	struct net *net = NULL;
	VP_READ(t.lport, sk->__sk_common.skc_num);
	VP_READ(dport, sk->__sk_common.skc_dport);
	t.rport = __builtin_bswap16(dport);
	VP_READ(net, sk->__sk_common.skc_net.net);
	if (net)
		VP_READ(t.netns, net->ns.inum);
	if (!vp_sock_filter_ok(t.netns, t.lport, t.rport))
		return 0;
	__s64 cookie = 0;
	VP_READ(cookie, sk->__sk_common.skc_cookie.counter);
	if (discard_events)
		return 0;

	void *ring = vp_ring();
	vp_comm_once(ring, pid_tgid, ts);
	/* The thread's open run may not take operations after this accept. */
	__u32 *acc = bpf_task_storage_get(&ACCEPTS, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (acc)
		*acc += 1;
	struct vp_sock_event *e = vp_reserve(ring);
	if (!e)
		return 0;
	vp_fill(e, VP_OP_ACCEPT, 0, pid_tgid >> 32, (__u32)pid_tgid, ts, bpf_get_current_cgroup_id(),
		(__u64)cookie, fd, 0, sysnr, &t);
	*(__u64 *)&e->laddr[0] = 0;
	*(__u64 *)&e->laddr[8] = 0;
	*(__u64 *)&e->raddr[0] = 0;
	*(__u64 *)&e->raddr[8] = 0;
	if (t.family == VP_AF_INET) {
		VP_READ(*(__u32 *)&e->laddr[0], sk->__sk_common.skc_rcv_saddr);
		VP_READ(*(__u32 *)&e->raddr[0], sk->__sk_common.skc_daddr);
	} else {
		bpf_probe_read_kernel(e->laddr, 16, __builtin_preserve_access_index(&sk->__sk_common.skc_v6_rcv_saddr));
		bpf_probe_read_kernel(e->raddr, 16, __builtin_preserve_access_index(&sk->__sk_common.skc_v6_daddr));
	}
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int vp_accept4_exit(struct vp_sys_exit_ctx *ctx)
{
	return vp_accept(ctx, VP_NR_ACCEPT4);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int vp_accept_exit(struct vp_sys_exit_ctx *ctx)
{
	return vp_accept(ctx, VP_NR_ACCEPT);
}

/* ---- Runs: user space closes every open run before a checkpoint. -------- */
/* A task iterator: user space reads a fresh iterator at every poll; for
 * each thread with an open run, the run goes out. */
SEC("iter/task")
int vp_flush_iter(struct vp_iter_task *ctx)
{
	struct task_struct *task = ctx->task;
	if (!task)
		return 0;
	struct vp_trun *tr = bpf_task_storage_get(&RUNS, task, 0, 0);
	struct vp_run_event out;
	/* Into the ring of the reader's CPU: it drains every ring after. */
	if (tr && vp_run_take(tr, &out))
		vp_run_send(vp_ring(), &out);
	return 0;
}

/* ---- Batches: user space flushes each CPU's before it drains. ----------- */
/* Run by user space on each CPU (BPF_PROG_TEST_RUN with
 * BPF_F_TEST_RUN_ON_CPU, in an interrupt on that CPU), never attached. */
SEC("raw_tp")
int vp_flush_batch(void *ctx)
{
	struct vp_batch *b = vp_batch();
	if (!b)
		return 0;
	if (b->busy) {
		/* A probe is appending: it flushes when done. */
		b->flush_req = 1;
		return 0;
	}
	vp_batch_flush(b, vp_ring());
	return 0;
}

/* ---- Comm bookkeeping: forget threads whose comm changes or that exit. --- */
static __always_inline void vp_forget(__u32 tid)
{
	bpf_map_delete_elem(&SEEN_TIDS, &tid);
	__sync_fetch_and_add(&comm_gen, 1);
}

SEC("tp_btf/task_rename")
int vp_task_rename(unsigned long long *ctx)
{
	struct task_struct *task = (struct task_struct *)VP_ARG(ctx, 0);
	__u32 tid = (__u32)task->pid;
	/* A thread not seen yet (typically one naming itself at start) is in
	 * no cache: its comm goes out with its first event anyway. */
	if (bpf_map_lookup_elem(&SEEN_TIDS, &tid) && bpf_map_delete_elem(&SEEN_TIDS, &tid) == 0)
		__sync_fetch_and_add(&comm_gen, 1);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int vp_exec(unsigned long long *ctx)
{
	struct task_struct *task = (struct task_struct *)VP_ARG(ctx, 0);
	__u32 old_tid = (__u32)VP_ARG(ctx, 1);
	vp_forget((__u32)task->pid);
	if (old_tid != (__u32)task->pid)
		vp_forget(old_tid);
	return 0;
}

/* A thread moved to another cgroup: its cached cgroup id is stale. */
SEC("tp_btf/cgroup_attach_task")
int vp_cgroup_attach(unsigned long long *ctx)
{
	__sync_fetch_and_add(&comm_gen, 1);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int vp_exit(unsigned long long *ctx)
{
	struct task_struct *task = (struct task_struct *)VP_ARG(ctx, 0);
	__u32 tid = (__u32)task->pid;
	/* The thread's storage goes with it: send its open run first. */
	vp_run_end(vp_ring());
	/* Forget the thread so a reuse of its tid sends its comm. The per-CPU
	 * caches need no invalidation: their key has the start time. */
	if (bpf_map_lookup_elem(&SEEN_TIDS, &tid)) /* lockless for the unseen */
		bpf_map_delete_elem(&SEEN_TIDS, &tid);
	return 0;
}
