#!/usr/bin/env python3
"""The DFT-labelled Li set (tests/data/li_dft) as one pool in exploration order, for
`aceuq al-bench`: conditions in the order the generator ran them (cold BCC, 300 K, 600 K,
vacancy, compressed, slab, liquids), within a condition the main run before the independent one,
each in time order. al-bench reads the pool as one exploration in time order, so `time_ps` becomes
the time along that exploration (the runs back to back: each run's times shifted to start where
the previous run ended); the frame's own time stays in `time_ps_run`. Everything else, labels
included, is copied byte for byte.

    python3 scripts/li_dft_pool.py [--out runs/data/li_dft_pool.xyz]
"""
import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "li_dft"


def frames(path):
    lines = path.read_text().splitlines(keepends=True)
    k = 0
    while k < len(lines):
        n = int(lines[k])
        yield "".join(lines[k : k + n + 2]), lines[k + 1]
        k += n + 2


def key(comment, order):
    get = lambda name: re.search(rf"\b{name}=(\S+)", comment).group(1).strip('"')
    ct = get("config_type")
    return (order.setdefault(ct, len(order)), get("run") != "main", float(get("time_ps")))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(ROOT / "runs" / "data" / "li_dft_pool.xyz"))
    a = p.parse_args()
    order = {}
    pool = []
    for name in ("train.xyz", "valid.xyz", "test.xyz"):
        for text, comment in frames(DATA / name):
            pool.append((key(comment, order), text))
    pool.sort(key=lambda x: x[0])
    texts, offset, last_run, end = [], 0.0, None, 0.0
    for (cond, independent, t), text in pool:
        if (cond, independent) != last_run:
            offset, last_run = end, (cond, independent)
        end = offset + t
        head, comment, rest = text.split("\n", 2)
        comment = re.sub(r"\btime_ps=(\S+)", f"time_ps={end:g} time_ps_run=\\1", comment)
        texts.append(f"{head}\n{comment}\n{rest}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(texts))
    print(f"wrote {out}: {len(pool)} frames, conditions in order: {', '.join(order)}")


if __name__ == "__main__":
    main()
