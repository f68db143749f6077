#!/usr/bin/env python3
"""A CPU flame graph (SVG) and the top functions (text) from `perf script` output.

Usage: perf script -i perf.data | loadtest/flamegraph.py OUT_PREFIX "title"
Writes OUT_PREFIX.svg (the flame graph: width = share of samples, root at the bottom) and
OUT_PREFIX.txt (self and total share of the 40 heaviest functions). Debian's perf is built
without libbfd and often leaves Rust frames `[unknown]`; their addresses are resolved here
against the binary's symbol table (`nm -C`), which is all a profile of a release build with
symbols needs. Inlined functions show as their caller.
"""

import bisect
import collections
import html
import re
import subprocess
import sys

FRAME = re.compile(r"^\s*([0-9a-f]+) (.+?) \((.+)\)$")


class Symbols:
    """Address → function of each binary, from `nm -n -C`."""

    def __init__(self):
        self.tables = {}
        self.segments = {}

    def vaddr(self, dso, offset):
        """perf prints a PIE's addresses as file offsets; symbols are at virtual addresses."""
        if dso not in self.segments:
            loads = []
            try:
                out = subprocess.run(
                    ["readelf", "-lW", dso], capture_output=True, text=True, check=False
                ).stdout
            except OSError:
                out = ""
            for line in out.splitlines():
                parts = line.split()
                if parts[:1] == ["LOAD"]:
                    loads.append((int(parts[1], 16), int(parts[2], 16), int(parts[4], 16)))
            self.segments[dso] = loads
        for file_offset, vaddr, size in self.segments[dso]:
            if file_offset <= offset < file_offset + size:
                return offset - file_offset + vaddr
        return offset

    def name(self, dso, address):
        if dso not in self.tables:
            starts, names = [], []
            try:
                out = subprocess.run(
                    ["nm", "-n", "-C", "--defined-only", dso],
                    capture_output=True, text=True, check=False,
                ).stdout
            except OSError:
                out = ""
            for line in out.splitlines():
                parts = line.split(" ", 2)
                if len(parts) == 3 and parts[1] in "tTwW":
                    starts.append(int(parts[0], 16))
                    names.append(parts[2])
            self.tables[dso] = (starts, names)
        starts, names = self.tables[dso]
        address = self.vaddr(dso, address)
        i = bisect.bisect_right(starts, address) - 1
        return names[i] if i >= 0 else f"{dso.rsplit('/', 1)[-1]}+{address:x}"


def short(name):
    """A readable frame: no hash suffix, no argument lists, generics kept brief."""
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    name = re.sub(r"\+0x[0-9a-f]+$", "", name)
    if len(name) > 160:
        name = name[:157] + "..."
    return name


def stacks(lines, symbols):
    stack = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if stack:
                yield list(reversed(stack))
            stack = []
            continue
        m = FRAME.match(line)
        if not m:
            continue
        address, sym, dso = m.groups()
        if sym.startswith("[unknown]") and not dso.startswith("["):
            sym = symbols.name(dso, int(address, 16))
        stack.append(short(sym))
    if stack:
        yield list(reversed(stack))


def svg(folded, total, title):
    width, row = 1200, 16
    tree = {}
    for frames, count in folded.items():
        node = tree
        for frame in frames:
            node = node.setdefault(frame, [0, {}])
            node[0] += count
            node = node[1]
    depth = max((len(f) for f in folded), default=1)
    height = (depth + 3) * row
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<text x="4" y="14">{html.escape(title)} — {total} samples</text>',
    ]

    def draw(node, x, level):
        for name, (count, children) in sorted(node.items()):
            w = count / total * (width - 8)
            if w >= 0.5:
                y = height - (level + 1) * row
                hue = 20 + (hash(name) % 40)
                label = html.escape(name)
                pct = 100.0 * count / total
                out.append(
                    f'<g><title>{label} ({count} samples, {pct:.1f}%)</title>'
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
                    f'fill="hsl({hue},90%,60%)"/>'
                )
                chars = int(w / 7)
                if chars > 3:
                    text = label if len(name) <= chars else html.escape(name[: chars - 2]) + ".."
                    out.append(f'<text x="{x + 2:.1f}" y="{y + row - 4}">{text}</text>')
                out.append("</g>")
                draw(children, x, level + 1)
            x += w

    draw(tree, 4.0, 0)
    out.append("</svg>")
    return "\n".join(out)


def main():
    prefix, title = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "CPU profile"
    symbols = Symbols()
    folded = collections.Counter()
    for frames in stacks(sys.stdin, symbols):
        folded[tuple(frames)] += 1
    total = sum(folded.values()) or 1
    self_time, total_time = collections.Counter(), collections.Counter()
    for frames, count in folded.items():
        self_time[frames[-1]] += count
        for frame in set(frames):
            total_time[frame] += count
    with open(prefix + ".svg", "w") as f:
        f.write(svg(folded, total, title))
    with open(prefix + ".txt", "w") as f:
        f.write(f"{title}: {total} samples\n\nself %   function\n")
        for name, count in self_time.most_common(40):
            f.write(f"{100.0 * count / total:6.2f}   {name}\n")
        f.write("\ntotal %  function (inclusive)\n")
        for name, count in total_time.most_common(60):
            f.write(f"{100.0 * count / total:6.2f}   {name}\n")


if __name__ == "__main__":
    main()
