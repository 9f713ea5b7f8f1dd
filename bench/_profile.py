"""py-spy profiles for the benches: record a running process, summarise the samples as the top
functions by share of samples (``make bench`` skips modules whose name starts with ``_``).

py-spy is a development tool, not a dependency: ``.venv/bin/python -m pip install py-spy``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# A frame in py-spy's raw (collapsed-stack) output: "function (path/to/file.py:line)".
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH (None: not installed)."""
    local = Path(sys.executable).with_name("py-spy")
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 250) -> subprocess.Popen:
    """Start sampling ``pid`` for ``seconds`` into ``out`` (raw collapsed stacks). Non-blocking
    sampling: the process is not stopped per sample, so its CPU figures stay close to unprofiled."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (.venv/bin/pip install -e '.[bench]')")
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate)]
    cmd += ["--format", "raw", "--nonblocking", "--function", "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    # "services/ingest/server.py" → "ingest/server.py"; site-packages paths keep their package.
    parts = path.replace("\\", "/").split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{m.group('func')} ({short})"


# Innermost frames that are the event loop waiting: py-spy counts a thread as busy when a sample
# lands while it is runnable, and a loop woken from epoll_wait is runnable for a moment in it (a
# few % of the idle samples). The process's user and system CPU time say these are waits.
IDLE_FRAMES = ("EpollSelector.select (selectors.py)",)


def summarise(raw: Path, top: int = 15) -> str:
    """The functions with the most samples: self (the sample's innermost frame) and total (the
    function anywhere on the stack), as shares of all samples (the loop's waits left out)."""
    self_count: Counter[str] = Counter()
    total_count: Counter[str] = Counter()
    samples = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_name(f) for f in stack.split(";")[1:]]  # the first is the process/thread
        if not frames:
            continue
        if frames[-1] in IDLE_FRAMES:
            idle += n
            continue
        samples += n
        self_count[frames[-1]] += n
        for name in set(frames):
            total_count[name] += n
    if not samples:
        return "  (no samples)"
    lines = [
        f"  {samples} samples ({idle} more in the loop's epoll wait, left out); "
        "self = innermost frame, total = anywhere on the stack"
    ]
    lines.append("  self:")
    lines += [f"    {n / samples * 100:5.1f}%  {name}" for name, n in self_count.most_common(top)]
    # "total" leaves out the frames every loop sample has (runpy, the runner, the loop itself).
    every = total_count.get("BaseEventLoop._run_once (asyncio/base_events.py)", samples + 1)
    inner = Counter({name: n for name, n in total_count.items() if n < every})
    lines.append("  total (below the event loop's own frames):")
    lines += [f"    {n / samples * 100:5.1f}%  {name}" for name, n in inner.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 15))
