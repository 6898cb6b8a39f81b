#!/usr/bin/env python3
"""Rebuild fuzz/corpus/<target>/ from the real captures in fixtures/captures/.

Each capture is parsed as tests/it/codec.rs does: a `[time C]` marker starts a
client write, its `C: ` lines joined with CRLF are the exact bytes. Seeds use the
layout of fuzz_targets/common.rs: a 0x00 head byte (default limits, pushed at
once) followed by the bytes.

  dlist_frame_decode  one seed per distinct client command
  session             one seed per connection: the client's writes after
                      AUTHENTICATE (the target authenticates first)

Usage: fuzz/seed-corpus.py   (from anywhere; rewrites the two corpus dirs)
"""
import hashlib
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "fixtures" / "captures"
CORPUS = ROOT / "fuzz" / "corpus"
# Keep the committed corpus small: skip any single seed above this.
SEED_MAX = 16 << 10


def connections(path):
    conns = []
    for line in path.read_text().splitlines():
        if line.startswith("# relay conn"):
            conns.append([])
        elif line.startswith("["):
            conns[-1].append([line.split()[2].startswith("C"), b""])
        elif line.startswith("C: ") or line.startswith("S: "):
            conns[-1][-1][1] += line[3:].encode() + b"\r\n"
    return [[data for from_client, data in c if from_client] for c in conns]


def write(target, seeds):
    d = CORPUS / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    total = 0
    for s in sorted(seeds):
        data = b"\x00" + s
        if len(data) > SEED_MAX:
            continue
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
        total += len(data)
    print(f"{target}: {len(list(d.iterdir()))} seeds, {total} bytes")


def main():
    commands, streams = set(), set()
    files = sorted(p for p in CAPTURES.glob("*.txt") if p.name != "probe-backupd-replies.txt")
    for path in files:
        for conn in connections(path):
            commands.update(conn)
            rest = [c for c in conn if not c.startswith(b"AUTHENTICATE ")]
            if rest:
                streams.add(b"".join(rest))
    write("dlist_frame_decode", commands)
    write("session", streams)


if __name__ == "__main__":
    main()
