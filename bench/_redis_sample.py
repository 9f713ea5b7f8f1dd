"""Which service sends Redis which commands: a ``MONITOR`` sample of a running stack (issue 22).

Every reachlive connection names itself (``shared.redis_client.client_name``: ``reachlive:<service>:
<host>:<pid>``), so ``CLIENT LIST`` maps a client address to its service. ``MONITOR`` prints each
command with the address that sent it, and the commands a Lua script makes as ``[db lua]`` right
after the script's own ``EVALSHA`` line (Redis runs one command at a time), so those are charged
to the script's caller: the figures add up to ``total_commands_processed`` as the bench's rate
counts it. ``MONITOR`` is dear: at 200 live events it kept Redis ~55 % of a core busier and put the
pipeline's overhead p50 from ~25 to ~65 ms, with spikes to 1.6 s, while it ran. So the
breakdown by service is asked for (``bench/pipeline.py --by-service``); by default the sample is
``INFO commandstats`` before and after (two commands): the rate and the split by command only.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis

_LINE = re.compile(rb'^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"')
UNNAMED = "unnamed (Celery's kombu, the bench)"


@dataclass
class Sample:
    """Commands seen over ``seconds``, by service and by (service, command)."""

    seconds: float = 0.0
    by_service: Counter[str] = field(default_factory=Counter)
    by_command: Counter[tuple[str, str]] = field(default_factory=Counter)
    processed: int = 0  # total_commands_processed over the same span (MONITOR skips a few)

    def lines(self, events: int, top: int = 12) -> list[str]:
        """The sample as text, in commands per second per event."""
        if not self.seconds or not events:
            return ["no Redis sample"]
        per = self.seconds * events
        if not self.by_service:  # INFO commandstats: by command only (scripts' calls included)
            mine = sorted(((cmd, n) for (_svc, cmd), n in self.by_command.items()), key=lambda item: -item[1])
            return [
                f"Redis while all {events} events were live ({self.seconds:.0f} s, INFO commandstats): "
                f"{self.processed / per:.1f} commands/s per event; by command (a script's own calls "
                "counted under theirs): " + ", ".join(f"{cmd} {n / per:.2f}" for cmd, n in mine[:top])
            ]
        out = [
            f"Redis while all {events} events were live ({self.seconds:.0f} s MONITOR sample): "
            f"{self.processed / per:.1f} commands/s per event; by service: "
            + ", ".join(f"{name} {count / per:.2f}" for name, count in self.by_service.most_common())
        ]
        for name, _ in self.by_service.most_common():
            mine = [(cmd, n) for (svc, cmd), n in self.by_command.items() if svc == name]
            mine.sort(key=lambda item: -item[1])
            out.append(f"  {name}: " + ", ".join(f"{cmd} {n / per:.2f}" for cmd, n in mine[:top]))
        return out


def service_of(name: str) -> str:
    """``reachlive:relay:host:12`` → ``relay``; anything else → UNNAMED."""
    parts = name.split(":")
    return parts[1] if len(parts) == 4 and parts[0] == "reachlive" else UNNAMED


def parse(raw: bytes, names: dict[str, str]) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """MONITOR output → counts; ``names``: client address → service. A script's own commands
    (``lua``) go to the service of the command before them."""
    by_service: Counter[str] = Counter()
    by_command: Counter[tuple[str, str]] = Counter()
    caller = UNNAMED
    for line in raw.split(b"\r\n"):
        match = _LINE.match(line)
        if not match:
            continue
        addr, command = match.group(1).decode(), match.group(2).decode().upper()
        if addr == "lua":
            who, command = caller, f"({command})"  # in a script: shown in brackets
        else:
            who = caller = names.get(addr, UNNAMED)
        by_service[who] += 1
        by_command[(who, command)] += 1
    return by_service, by_command


def client_services(client: redis.Redis) -> dict[str, str]:
    """Client address → service, from CLIENT LIST."""
    return {entry["addr"]: service_of(entry.get("name", "")) for entry in client.client_list()}


def _commandstats(client: redis.Redis) -> Counter[str]:
    # redis-py keys them "cmdstat_xadd" (the INFO section's own field names).
    return Counter(
        {name.removeprefix("cmdstat_").upper(): int(v["calls"]) for name, v in client.info("commandstats").items()}
    )


def counted(url: str, seconds: float) -> Sample:
    """The commands Redis processed over ``seconds``, by command (INFO commandstats, cheap)."""
    client = redis.Redis.from_url(url)
    try:
        before, started = _commandstats(client), time.monotonic()
        time.sleep(seconds)
        after, elapsed = _commandstats(client), time.monotonic() - started
    finally:
        client.close()
    diff = after - before
    diff["INFO"] -= 1  # our own second INFO
    by_command: Counter[tuple[str, str]] = Counter({("", cmd): n for cmd, n in diff.items() if n > 0})
    return Sample(elapsed, Counter(), by_command, sum(by_command.values()))


def sample(url: str, seconds: float, stop: threading.Event | None = None) -> Sample:
    """MONITOR ``url`` for ``seconds`` (or until ``stop``) and count what each service sent."""
    parts = urlsplit(url)
    client = redis.Redis.from_url(url)
    try:
        before = int(client.info("stats")["total_commands_processed"])
        names = client_services(client)
        chunks: list[bytes] = []
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=1.0) as sock:
            if parts.password:
                sock.sendall(f"AUTH {parts.password}\r\n".encode())
            sock.sendall(b"MONITOR\r\n")
            started = time.monotonic()
            while time.monotonic() - started < seconds and not (stop and stop.is_set()):
                try:
                    chunks.append(sock.recv(1 << 20))
                except TimeoutError:
                    continue
            elapsed = time.monotonic() - started
        after = int(client.info("stats")["total_commands_processed"])
        names |= client_services(client)  # connections opened during the sample
    finally:
        client.close()
    by_service, by_command = parse(b"".join(chunks), names)
    return Sample(elapsed, by_service, by_command, after - before)
