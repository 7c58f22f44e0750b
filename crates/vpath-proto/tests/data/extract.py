#!/usr/bin/env python3
"""Cuts a client's `strace -f -yy -xx -s 65536 -e trace=%network,read,write,readv,writev` log into messages.

Usage: extract.py LOG PORT OUTDIR PREFIX [MAX_BYTES]

For every TCP connection of the traced client to 127.0.0.1:PORT, the bytes written are
requests and the bytes read are responses; consecutive operations in the same direction are one
message (as vpath cuts messages: at each change of direction). Each message is written to
OUTDIR/PREFIX-cC-mM-req.bin or ...-resp.bin, cut at MAX_BYTES (default 4096).
"""
import re
import sys

OPS_OUT = {"write", "sendto", "sendmsg", "writev", "send", "pwritev"}
OPS_IN = {"read", "recvfrom", "recvmsg", "readv", "recv"}

line_re = re.compile(r"^(\d+)\s+(.*)$")
call_re = re.compile(r"^(\w+)\((\d+)<TCP:\[([0-9.]+):(\d+)->([0-9.]+):(\d+)\]>,(.*)\)\s+=\s+(-?\d+)")
str_re = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


def unhex(s):
    return bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", s))


def main():
    log, port, outdir, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    cap = int(sys.argv[5]) if len(sys.argv) > 5 else 4096
    pending = {}
    calls = []
    for raw in open(log, encoding="latin-1"):
        m = line_re.match(raw.rstrip("\n"))
        if not m:
            continue
        pid, rest = m.group(1), m.group(2)
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        r = re.match(r"^<\.\.\. \w+ resumed>\s?(.*)$", rest)
        if r:
            rest = pending.pop(pid, "") + r.group(1)
        c = call_re.match(rest)
        if not c:
            continue
        op, fd, lip, lport, rip, rport, args, ret = c.groups()
        if int(rport) != port or int(ret) <= 0 or "MSG_PEEK" in args:
            continue  # a peek consumes nothing: the next read returns the same bytes
        if op in OPS_OUT:
            d = "req"
        elif op in OPS_IN:
            d = "resp"
        else:
            continue
        if op in ("writev", "readv", "sendmsg", "recvmsg", "pwritev"):
            data = b"".join(unhex(s) for s in re.findall(r'iov_base="((?:\\x[0-9a-f]{2})*)"', args))
        else:
            s = str_re.search(args)
            data = unhex(s.group(1)) if s else b""
        data = data[: int(ret)]
        calls.append(((pid, fd, lport), d, data))
    conns = {}
    for key, d, data in calls:
        msgs = conns.setdefault(key, [])
        if msgs and msgs[-1][0] == d:
            msgs[-1][1].extend(data)
        else:
            msgs.append((d, bytearray(data)))
    n = 0
    for ci, (key, msgs) in enumerate(conns.items()):
        for mi, (d, data) in enumerate(msgs):
            name = f"{outdir}/{prefix}-c{ci}-m{mi:02d}-{d}.bin"
            with open(name, "wb") as f:
                f.write(bytes(data[:cap]))
            n += 1
            print(f"{name} {len(data)} bytes{' (cut)' if len(data) > cap else ''}")
    if n == 0:
        sys.exit("no message found")


main()
