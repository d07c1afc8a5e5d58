"""e2e_counter.py OUT N PAUSE_AT: the Python twin of e2e_counter.c (same protocol)."""

import hashlib
import os
import sys

out_path, n, pause_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
table = bytearray(hashlib.sha256(str(i).encode()).digest()[0] for i in range(1 << 16))
state = {"x": 1}
with open(out_path, "w") as out:
    for i in range(1, n + 1):
        for _ in range(16):
            x = state["x"]
            x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            table[x % len(table)] ^= x & 0xFF
            state["x"] = x + table[(x >> 20) % len(table)]
        out.write(f"{i} {state['x']}\n")
        if i == pause_at:
            out.flush()
            print("paused", flush=True)
            if os.read(0, 1) != b"x":
                sys.exit(4)
print("done", flush=True)
sys.exit(3)
