"""Writing captions and the relay's cursor in one atomic step (DESIGN section 4, "Output").

Exactly-once captions across reconnects and takeovers rest on two things done by one Lua script,
on keys that all share the event's hash tag (so it also runs on a Redis Cluster):

- a fencing epoch: each claim of a session increments ``epoch`` in ``keys.relay_state(E)``; a
  write carrying an older epoch is refused, so a replica that lost its claim (and does not know
  yet) can never add a caption after the new owner started;
- what was emitted is persisted with the captions: the XADDs and the ``relay_state`` fields (per
  task: the last audio entry whose results it got, and its caption builder's state) change
  together or not at all.

The script also skips the XADD for a task cancelled in the registry (``cancelled`` = 1), so a
task revoked mid-event stops getting captions at once, and trims the audio stream behind the
transcribed cursor (``XTRIM MINID``: entries before it are never read again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared import keys

_COMMIT = """
if redis.call('HGET', KEYS[1], 'EPOCH_FIELD') ~= ARGV[1] then return 0 end
local i = 6
local n = tonumber(ARGV[5])
if n > 0 then
  local args = {}
  for j = 1, 2 * n do args[j] = ARGV[i + j - 1] end
  redis.call('HSET', KEYS[1], unpack(args))
  i = i + 2 * n
end
while i <= #ARGV do
  local t = tonumber(ARGV[i])
  local nf = tonumber(ARGV[i + 1])
  i = i + 2
  local ckey = KEYS[2 + 2 * t]
  if redis.call('HGET', KEYS[1 + 2 * t], 'cancelled') ~= '1' then
    local args = {ckey, 'MAXLEN', '~', ARGV[2], '*'}
    for j = 0, 2 * nf - 1 do args[#args + 1] = ARGV[i + j] end
    redis.call('XADD', unpack(args))
    if ARGV[3] ~= '0' then redis.call('EXPIREAT', ckey, ARGV[3]) end
  end
  i = i + 2 * nf
end
if ARGV[4] ~= '' then redis.call('XTRIM', KEYS[2], 'MINID', '~', ARGV[4]) end
return 1
""".replace("EPOCH_FIELD", keys.RELAY_EPOCH)

# Entries a task's captions stream gets per second of audio, at most: one transcript response
# per KWIKmotion chunk (>= 2 s) plus a few caption lines. Generous, since MAXLEN ~ only trims.
ENTRIES_PER_SECOND = 4.0


def caption_maxlen(event_start: float, event_end: float) -> int:
    """``MAXLEN ~`` covering the whole event plus ``CAPTIONS_RETENTION_AFTER_END_SECONDS``."""
    span = max(0.0, event_end - event_start) + keys.CAPTIONS_RETENTION_AFTER_END_SECONDS
    return max(10_000, int(span * ENTRIES_PER_SECOND))


class Fenced(Exception):
    """Another relay claimed the session since we did: stop at once, write nothing more."""


@dataclass(slots=True)
class Pending:
    """One caption entry due for a task (index into the writer's task list)."""

    task_index: int
    fields: dict[str, str]


class CaptionWriter:
    """Commits captions + state for one event, fenced by the claim's epoch."""

    def __init__(
        self, client: aioredis.Redis, event_id: str, task_ids: list[str], epoch: int, maxlen: int, expire_at: int
    ) -> None:
        self.client = client
        self.event_id = event_id
        self.task_ids = list(task_ids)
        self.epoch = str(epoch)
        self.maxlen = maxlen
        self.expire_at = expire_at
        self._script = client.register_script(_COMMIT)
        self._keys = [keys.relay_state(event_id), keys.audio(event_id)]
        for t in self.task_ids:
            self._keys += [keys.task(event_id, t), keys.captions(event_id, t)]

    async def commit(self, entries: list[Pending], state: dict[str, str], trim_minid: str = "") -> None:
        """XADD ``entries`` and HSET ``state`` atomically; raise ``Fenced`` if we lost the session."""
        args: list[str | int] = [self.epoch, self.maxlen, self.expire_at, trim_minid, len(state)]
        for k, v in state.items():
            args += [k, v]
        for e in entries:
            args += [e.task_index + 1, len(e.fields)]
            for k, v in e.fields.items():
                args += [k, v]
        ok = await self._script(keys=self._keys, args=args)
        if int(ok) != 1:
            raise Fenced(self.event_id)


async def claim_epoch(client: aioredis.Redis, event_id: str) -> int:
    """Take the fencing epoch of an event's session (every earlier owner's writes now fail)."""
    return int(await client.hincrby(keys.relay_state(event_id), keys.RELAY_EPOCH, 1))


def now_epoch() -> float:
    return time.time()
