#!/usr/bin/env python3
"""Add the seeds from the real captures in fixtures/captures/ to fuzz/corpus/<target>/.

Each capture is parsed as tests/it/codec.rs does: a `[time C]` marker starts a
client write, its `C: ` lines joined with CRLF are the exact bytes. Seeds use the
layout of fuzz_targets/common.rs: a 0x00 head byte (default limits, pushed at
once) followed by the bytes.

  dlist_frame_decode  one seed per distinct client command
  session             one seed per connection: the client's writes after
                      AUTHENTICATE (the target authenticates first)
  driver              the same connections without COMPRESS, three times: plain
                      (head 0x00), deflated (0x40: the target sends COMPRESS
                      DEFLATE first) and deflated left open (0x60: the idle
                      timeout ends it)

The corpus dirs are the fuzzing lineage (see fuzz/README.md): seeds are added,
nothing grown there is removed.

Usage: fuzz/seed-corpus.py   (from anywhere)
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


def write(target, seeds, heads=(b"\x00",)):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    added = 0
    for s in sorted(seeds):
        for head in heads:
            data = head + s
            if len(data) > SEED_MAX:
                continue
            f = d / hashlib.sha1(data).hexdigest()
            if not f.exists():
                f.write_bytes(data)
                added += 1
    print(f"{target}: {added} seeds added, {len(list(d.iterdir()))} inputs")


def main():
    commands, streams, plain_streams = set(), set(), set()
    files = sorted(p for p in CAPTURES.glob("*.txt") if p.name != "probe-backupd-replies.txt")
    for path in files:
        for conn in connections(path):
            commands.update(conn)
            rest = [c for c in conn if not c.startswith(b"AUTHENTICATE ")]
            if rest:
                streams.add(b"".join(rest))
            plain = [c for c in rest if not c.startswith(b"COMPRESS ")]
            if plain:
                plain_streams.add(b"".join(plain))
    write("dlist_frame_decode", commands)
    write("session", streams)
    write("driver", plain_streams, heads=(b"\x00", b"\x40", b"\x60"))


if __name__ == "__main__":
    main()
