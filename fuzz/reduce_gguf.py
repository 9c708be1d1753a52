#!/usr/bin/env python3
"""Shrinks a GGUF (v2/v3) that crashes a fuzz target a record at a time, before `cargo fuzz tmin`.

libFuzzer's minimizer only deletes bytes, which breaks a GGUF's length-prefixed records, so it
stalls at kilobytes. This drops whole metadata pairs, tensor records and the data section while
the target's output still contains SIGNATURE (say `gguf.rs:322`).

usage: reduce_gguf.py TARGET_BINARY CRASH_INPUT OUTPUT SIGNATURE
"""
import struct
import subprocess
import sys

binary, src, dst, signature = sys.argv[1:5]
b = open(src, 'rb').read()
assert b[:4] == b'GGUF' and struct.unpack_from('<I', b, 4)[0] >= 2, 'not a GGUF v2/v3 file'
pos = 24
SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def skip_string():
    global pos
    n, = struct.unpack_from('<Q', b, pos)
    pos += 8 + n


def skip_value(ty):
    global pos
    if ty in SIZES:
        pos += SIZES[ty]
    elif ty == 8:
        skip_string()
    elif ty == 9:
        item, n = struct.unpack_from('<IQ', b, pos)
        pos += 12
        for _ in range(n):
            skip_value(item)
    else:
        raise ValueError(f'value type {ty}')


n_tensors, n_kv = struct.unpack_from('<QQ', b, 8)
kvs, tensors = [], []
for _ in range(n_kv):
    start = pos
    skip_string()
    ty, = struct.unpack_from('<I', b, pos)
    pos += 4
    skip_value(ty)
    kvs.append(b[start:pos])
for _ in range(n_tensors):
    start = pos
    skip_string()
    dims, = struct.unpack_from('<I', b, pos)
    pos += 4 + 8 * dims + 12
    tensors.append(b[start:pos])
tail = b[pos:]


def build(kvs, tensors, tail):
    counts = struct.pack('<QQ', len(tensors), len(kvs))
    return b[:8] + counts + b''.join(kvs) + b''.join(tensors) + tail


def crashes(data):
    open(dst + '.try', 'wb').write(data)
    run = subprocess.run([binary, dst + '.try'], capture_output=True, text=True, errors='replace')
    return signature in run.stdout + run.stderr


assert crashes(build(kvs, tensors, tail)), 'the input does not show the signature'
for cut in (0, 32):
    if cut < len(tail) and crashes(build(kvs, tensors, tail[:cut])):
        tail = tail[:cut]
        break
for items in (kvs, tensors):
    i = 0
    while i < len(items):
        trial = items[:i] + items[i + 1:]
        kept = (trial, tensors) if items is kvs else (kvs, trial)
        if crashes(build(*kept, tail)):
            items[:] = trial
        else:
            i += 1
out = build(kvs, tensors, tail)
open(dst, 'wb').write(out)
print(f'{len(b)} -> {len(out)} bytes: {len(kvs)} metadata pairs, {len(tensors)} tensors')
