#!/usr/bin/env python3
"""Adds request content to vpath's JSONL paths from a loopback packet capture, independently of vpath's own payload
capture: `protocol`, `name` and `attrs` (http.target, url.query, db.query.text, vpath.memcached.key) on every server
span of the stack's four ports, from the bytes tcpdump saw on that span's connection.

    tcpdump -i lo -s 0 -B 32768 -w /tmp/mw.pcap 'tcp port 8080 or tcp port 9000 or tcp port 3306 or tcp port 11211' &
    vpath record -o /tmp/mw.vpl -- stacks/mediawiki/stack.sh load 400 4
    vpath analyze /tmp/mw.vpl --format jsonl -o /tmp/mw.jsonl
    stacks/mediawiki/pcap-attrs.py /tmp/mw.pcap /tmp/mw.jsonl > /tmp/mw-attrs.jsonl

Spans are matched by stream position, never by time: the server spans of one connection (same 4-tuple), in the
order the server read them, take the client's bytes in turn, each as many as its `bytes_in`. A span whose bytes are
not all in the capture (or whose socket the recorder saw without its port) stays unlabelled. Spans that already
carry `attrs` are left alone. Standard library only.
"""
import argparse
import json
import struct
import sys

PORTS = {8080: "http", 9000: "fastcgi", 3306: "mysql", 11211: "memcached"}


def packets(path):
    with open(path, "rb") as f:
        head = f.read(24)
        magic = struct.unpack("<I", head[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
        else:
            endian = ">"
            magic = struct.unpack(">I", head[:4])[0]
        nano = magic == 0xA1B23C4D
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, frac, incl, _orig = struct.unpack(endian + "IIII", h)
            data = f.read(incl)
            ts = sec * 1_000_000_000 + (frac if nano else frac * 1000)
            if linktype == 1:  # Ethernet (lo)
                if len(data) < 14 or data[12:14] != b"\x08\x00":
                    continue
                ip = data[14:]
            elif linktype == 113:  # Linux cooked
                ip = data[16:]
            elif linktype in (0, 12, 101):  # raw IP / null
                ip = data[4:] if linktype == 0 else data
            else:
                continue
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            ihl = (ip[0] & 15) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            src = "%d.%d.%d.%d" % tuple(ip[12:16])
            dst = "%d.%d.%d.%d" % tuple(ip[16:20])
            tcp = ip[ihl:total]
            if len(tcp) < 20:
                continue
            sport, dport, seq = struct.unpack(">HHI", tcp[:8])
            off = (tcp[12] >> 4) * 4
            yield ts, "%s:%d" % (src, sport), "%s:%d" % (dst, dport), seq, tcp[off:]


def messages(pcap):
    """(client, server) -> [(time of first byte, request bytes)], request = client->server bytes until the server
    sends data back."""
    conns = {}
    for ts, src, dst, seq, payload in packets(pcap):
        sport, dport = int(src.rsplit(":", 1)[1]), int(dst.rsplit(":", 1)[1])
        if dport in PORTS:
            key, toward_server = (src, dst), True
        elif sport in PORTS:
            key, toward_server = (dst, src), False
        else:
            continue
        if not payload:
            continue
        c = conns.setdefault(key, {"msgs": [], "open": None, "next": None})
        if toward_server:
            if c["next"] is not None and (seq - c["next"]) % (1 << 32) >= (1 << 31):
                continue  # retransmission
            c["next"] = (seq + len(payload)) % (1 << 32)
            if c["open"] is None:
                c["open"] = [ts, bytearray()]
                c["msgs"].append(c["open"])
            c["open"][1] += payload
        else:
            c["open"] = None
    return {k: [(t, bytes(b)) for t, b in v["msgs"]] for k, v in conns.items()}


def fcgi_params(b):
    params, i = {}, 0
    while i + 8 <= len(b):
        _ver, typ, _rid, clen, plen = struct.unpack(">BBHHB", b[i:i + 7])
        body = b[i + 8:i + 8 + clen]
        i += 8 + clen + plen
        if typ != 4:
            continue
        j = 0
        while j < len(body):
            lens = []
            for _ in range(2):
                if j >= len(body):
                    break
                if body[j] >> 7:
                    lens.append(struct.unpack(">I", body[j:j + 4])[0] & 0x7FFFFFFF)
                    j += 4
                else:
                    lens.append(body[j])
                    j += 1
            if len(lens) < 2:
                break
            name = body[j:j + lens[0]].decode("latin-1")
            value = body[j + lens[0]:j + lens[0] + lens[1]].decode("latin-1")
            j += lens[0] + lens[1]
            params[name] = value
    return params


def label(proto, b):
    attrs, name = {}, None
    if proto == "http":
        line = b.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) >= 2:
            name = "%s %s" % (parts[0], parts[1].split("?", 1)[0])
            attrs["http.request.method"] = parts[0]
            attrs["http.target"] = parts[1]
            if "?" in parts[1]:
                attrs["url.query"] = parts[1].split("?", 1)[1]
    elif proto == "fastcgi":
        p = fcgi_params(b)
        if "REQUEST_URI" in p:
            attrs["http.target"] = p["REQUEST_URI"]
        if "QUERY_STRING" in p:
            attrs["url.query"] = p["QUERY_STRING"]
        if "REQUEST_METHOD" in p:
            name = "%s %s" % (p["REQUEST_METHOD"], p.get("SCRIPT_NAME", ""))
    elif proto == "mysql":
        attrs["db.system.name"] = "mysql"
        if len(b) >= 5:
            cmd = b[4]
            if cmd == 3:
                n = struct.unpack("<I", b[:3] + b"\0")[0]
                text = b[5:4 + n].decode("utf-8", "replace")
                attrs["db.query.text"] = text
                name = text.split(None, 1)[0].upper() if text.strip() else "COM_QUERY"
            else:
                name = {1: "COM_QUIT", 14: "COM_PING", 2: "COM_INIT_DB"}.get(cmd, "mysql 0x%02x" % cmd)
    elif proto == "memcached":
        line = b.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if parts:
            name = parts[0]
            keys = parts[1:] if parts[0] in ("get", "gets", "gat", "gats") else parts[1:2]
            if parts[0] in ("gat", "gats"):
                keys = parts[2:]
            attrs["vpath.memcached.key"] = " ".join(keys)
    return name, attrs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pcap")
    ap.add_argument("jsonl")
    a = ap.parse_args()
    streams = {k: b"".join(m for _, m in v) for k, v in messages(a.pcap).items()}
    stats = {"spans": 0, "labelled": 0, "unmatched": 0}
    paths = [json.loads(line) for line in open(a.jsonl) if line.strip()]

    # every server span on the stack's ports, per connection, in the order the server read them
    by_conn = {}

    def collect(s):
        for c in s.get("children", []):
            collect(c)
        if s.get("kind") != "server" or s.get("attrs"):
            return
        proto = PORTS.get(int(s["local"].rsplit(":", 1)[1]))
        if proto:
            stats["spans"] += 1
            by_conn.setdefault((s["remote"], s["local"]), []).append((s["start_ns"], proto, s))

    for p in paths:
        collect(p["root"])
    # span k of a connection received the next bytes_in bytes of the client's stream
    for key, spans in by_conn.items():
        stream = streams.get(key)
        pos = 0
        for _, proto, s in sorted(spans, key=lambda x: x[0]):
            n = s.get("bytes_in", 0)
            if stream is None or pos + n > len(stream) or n == 0:
                stats["unmatched"] += 1
                continue
            name, attrs = label(proto, stream[pos:pos + n])
            pos += n
            s["protocol"] = proto
            if name:
                s["name"] = name
            if attrs:
                s["attrs"] = attrs
            stats["labelled"] += 1

    for p in paths:
        # an origin span is the client's view of its child's request
        stack = [p["root"]]
        while stack:
            s = stack.pop()
            stack.extend(s.get("children", []))
            if s.get("kind") == "origin" and s.get("children") and s["children"][0].get("protocol"):
                s["protocol"] = s["children"][0]["protocol"]
                if "attrs" in s["children"][0]:
                    s["attrs"] = dict(s["children"][0]["attrs"])
        sys.stdout.write(json.dumps(p) + "\n")
    print("pcap-attrs: %(spans)d server spans on the stack's ports, %(labelled)d labelled, %(unmatched)d unmatched"
          % stats, file=sys.stderr)


if __name__ == "__main__":
    main()
