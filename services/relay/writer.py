"""Writing captions and the relay's cursor in one atomic step (docs/design.md section 4, "Output").

Exactly-once captions across reconnects and takeovers rest on two things done by one Lua script,
on keys that all share the event's hash tag (so it also runs on a Redis Cluster):

- a fencing epoch: each claim of a session increments ``epoch`` in ``keys.relay_state(E)``; a
  write carrying an older epoch is refused, so a replica that lost its claim (and does not know
  yet) can never add a caption after the new owner started;
- what was emitted is persisted with the captions: the XADDs and the ``relay_state`` fields (per
  task: the last audio entry whose results it got, and its caption builder's state) change
  together or not at all.

- a commit number: each commit of a claim carries ``<epoch>:<n>`` (n counts up), stored as
  ``keys.RELAY_COMMIT``; a commit whose number is already stored was applied (its reply was lost:
  a frozen Redis runs it on thaw) and is not applied again, so a commit can be retried after any
  Redis error (issue 18: captions computed during an outage are committed when Redis is back);
- the number it follows: each commit also names the commit it was computed after (the previous
  one of the claim, or 0 for the state the claim started from). If that is not what is stored, the
  state is behind what the relay holds in memory: a Redis failover lost commits the old master
  acknowledged but had not replicated (asynchronous replication). The script then refuses
  (``CommitGap``) and the session restarts from the persisted cursor, which the lost commits never
  moved (captions, cursor and task positions change together), so their captions are computed
  again from the audio (the lost commits' audio trims never happened either) and nothing is
  written twice (per-task positions).

The script also skips the XADD for a task cancelled in the registry (``cancelled`` = 1), so a
task revoked mid-event stops getting captions at once, and, when the caller asks (every few
seconds of media, ``connection.TRIM_EVERY_SECONDS``), trims the audio stream behind the
transcribed cursor (``XTRIM MINID``: entries before it are never read again).

Cost (issue 22: Redis counts a script's calls as commands): one HMGET and one HSET of the state,
one HGET of ``cancelled`` per task (not per entry), an XADD per entry; the captions stream's
EXPIREAT only when its expiry differs from what this writer last set on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared import keys

_COMMIT = """
local st = redis.call('HMGET', KEYS[1], 'EPOCH_FIELD', 'COMMIT_FIELD')
if st[1] ~= ARGV[1] then return {0} end
local e, c = nil, nil
if st[2] then e, c = string.match(st[2], '^(%d+):(%d+)$') end
if e == ARGV[1] then
  if tonumber(c) >= tonumber(ARGV[5]) then return {2} end
  if tonumber(c) ~= tonumber(ARGV[6]) then return {3} end
elseif ARGV[6] ~= '0' then
  return {3}
end
local hset = {KEYS[1], 'COMMIT_FIELD', ARGV[1] .. ':' .. ARGV[5]}
local i = 8
local n = tonumber(ARGV[7])
for j = 1, 2 * n do hset[#hset + 1] = ARGV[i + j - 1] end
i = i + 2 * n
redis.call('HSET', unpack(hset))
local cancelled, expired, skipped = {}, {}, {1}
while i <= #ARGV do
  local t = tonumber(ARGV[i])
  local nf = tonumber(ARGV[i + 1])
  local ex = ARGV[i + 2]
  i = i + 3
  if cancelled[t] == nil then
    cancelled[t] = redis.call('HGET', KEYS[1 + 2 * t], 'cancelled') == '1'
    if cancelled[t] and ex == '1' then skipped[#skipped + 1] = t end
  end
  if not cancelled[t] then
    local ckey = KEYS[2 + 2 * t]
    local args = {ckey, 'MAXLEN', '~', ARGV[2], '*'}
    for j = 0, 2 * nf - 1 do args[#args + 1] = ARGV[i + j] end
    redis.call('XADD', unpack(args))
    if ex == '1' and not expired[t] then
      expired[t] = true
      redis.call('EXPIREAT', ckey, ARGV[3])
    end
  end
  i = i + 2 * nf
end
if ARGV[4] ~= '' then redis.call('XTRIM', KEYS[2], 'MINID', '~', ARGV[4]) end
return skipped
""".replace("EPOCH_FIELD", keys.RELAY_EPOCH).replace("COMMIT_FIELD", keys.RELAY_COMMIT)

# Entries a task's captions stream gets per second of audio, at most: one transcript response
# per KWIKmotion chunk (>= 2 s) plus a few caption lines. Generous, since MAXLEN ~ only trims.
ENTRIES_PER_SECOND = 4.0
# Media written after the window's end: the ingest's window margin and a relay catching up after
# an outage. Only written entries count against MAXLEN, so the retention period after the event
# (REACHLIVE_RETENTION_DAYS, no writes) adds nothing to it.
LATE_MEDIA_SECONDS = 3600


def caption_maxlen(event_start: float, event_end: float) -> int:
    """``MAXLEN ~`` covering the whole event (window, pre-start and post-end included) plus
    ``LATE_MEDIA_SECONDS``: a stream is never trimmed by length while kept."""
    span = max(0.0, event_end - event_start) + LATE_MEDIA_SECONDS
    return max(10_000, int(span * ENTRIES_PER_SECOND))


class Fenced(Exception):
    """Another relay claimed the session since we did: stop at once, write nothing more."""


class CommitGap(Exception):
    """The stored state is behind the commit (a failover lost earlier commits): restart the
    session from the persisted cursor."""

    def __init__(self, event_id: str, after: int) -> None:
        super().__init__(event_id, after)
        self.event_id = event_id
        self.after = after


class CommitNumbers:
    """A claim's commit numbers, shared by its writers (one per KWIKmotion connection).

    ``seq`` only counts up over the claim (a commit retried, or landing late, is never confused
    with a later one); ``last`` is the number the next commit follows, in the order commits are
    prepared (and applied: a connection commits in order, holding later ones behind a held one).
    """

    def __init__(self) -> None:
        self.seq = 0
        self.last = 0

    def next(self) -> tuple[int, int]:
        """(number, the number it follows) of the next commit."""
        self.seq += 1
        after, self.last = self.last, self.seq
        return self.seq, after

    def resync(self, stored: str | None, epoch: int) -> None:
        """A new connection starts from the persisted state: its first commit follows what is
        stored (``keys.RELAY_COMMIT``), or the claim's start (0) if nothing of this epoch is."""
        self.last = 0
        if stored:
            e, _, n = stored.partition(":")
            if e == str(epoch) and n.isdigit():
                self.last = int(n)
        self.seq = max(self.seq, self.last)


@dataclass(frozen=True, slots=True)
class Commit:
    """One prepared commit (numbered once: retrying it applies it at most once)."""

    seq: int
    after: int  # the commit it follows (0: the state the claim started from)
    args: list[str | int]
    expire: frozenset[int] = frozenset()  # task indexes whose captions stream gets EXPIREAT ...
    expire_at: int = 0  # ... at this time


@dataclass(slots=True)
class Pending:
    """One caption entry due for a task (index into the writer's task list)."""

    task_index: int
    fields: dict[str, str]


class CaptionWriter:
    """Commits captions + state for one event, fenced by the claim's epoch."""

    def __init__(
        self,
        client: aioredis.Redis,
        event_id: str,
        task_ids: list[str],
        epoch: int,
        maxlen: int,
        expire_at: int,
        numbers: CommitNumbers | None = None,
    ) -> None:
        """``numbers``: the claim's commit numbers, shared by its writers (one per KWIKmotion
        connection)."""
        self.client = client
        self.numbers = numbers if numbers is not None else CommitNumbers()
        self.event_id = event_id
        self.task_ids = list(task_ids)
        self.epoch = str(epoch)
        self.maxlen = maxlen
        # The captions streams' expiry (epoch s, 0: none). It may change (the event's window
        # moved): a stream gets the new value with its next caption.
        self.expire_at = expire_at
        # Per task index: the expiry this writer last set on its captions stream. EXPIREAT is sent
        # only when it differs (a command per caption entry before, issue 22). Only this writer's
        # own: a new writer (a reconnect, a takeover) sets it once again, whatever is stored.
        self._expired: dict[int, int] = {}
        self._script = client.register_script(_COMMIT)
        self._keys = [keys.relay_state(event_id), keys.audio(event_id)]
        for t in self.task_ids:
            self._keys += [keys.task(event_id, t), keys.captions(event_id, t)]

    def prepare(self, entries: list[Pending], state: dict[str, str], trim_minid: str = "") -> Commit:
        """Number a commit (XADD ``entries``, HSET ``state``, trim the audio up to ``trim_minid``
        if given)."""
        seq, after = self.numbers.next()
        expire_at = self.expire_at
        expire = frozenset(e.task_index for e in entries if expire_at and self._expired.get(e.task_index) != expire_at)
        args: list[str | int] = [self.epoch, self.maxlen, expire_at, trim_minid, seq, after, len(state)]
        for k, v in state.items():
            args += [k, v]
        for e in entries:
            args += [e.task_index + 1, len(e.fields), 1 if e.task_index in expire else 0]
            for k, v in e.fields.items():
                args += [k, v]
        return Commit(seq, after, args, expire, expire_at)

    async def apply(self, commit: Commit) -> bool:
        """Apply a prepared commit atomically (True), or find it applied already (False); raise
        ``Fenced`` if we lost the session, ``CommitGap`` if the state is behind it (commits lost
        by a failover). Safe to retry after any error."""
        reply = await self._script(keys=self._keys, args=commit.args)
        ok = int(reply[0])
        if ok == 0:
            raise Fenced(self.event_id)
        if ok == 3:
            raise CommitGap(self.event_id, commit.after)
        if ok == 1:
            # Set now, except on the streams of cancelled tasks (no XADD, no EXPIREAT: listed in
            # the reply). Not after ``2`` (applied by an earlier try whose reply was lost): not
            # knowing which were set, the next commit sets them again.
            skipped = {int(t) - 1 for t in reply[1:]}
            for t in commit.expire - skipped:
                self._expired[t] = commit.expire_at
        return ok == 1

    async def commit(self, entries: list[Pending], state: dict[str, str], trim_minid: str = "") -> None:
        """XADD ``entries`` and HSET ``state`` atomically; raise ``Fenced`` if we lost the session,
        ``CommitGap`` if the state is behind."""
        await self.apply(self.prepare(entries, state, trim_minid))


async def claim_epoch(client: aioredis.Redis, event_id: str, consumer: str = "") -> int:
    """Take the fencing epoch of an event's session (every earlier owner's writes now fail); with
    it, when and by which relay (``consumer``) the session was claimed, for the console."""
    key = keys.relay_state(event_id)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(key, keys.RELAY_EPOCH, 1)
        pipe.hset(key, mapping={keys.RELAY_CLAIMED_AT: repr(time.time()), keys.RELAY_CLAIMED_BY: consumer})
        epoch, _ = await pipe.execute()
    return int(epoch)
