"""Lua scripts: each queue transition is one atomic step in Redis, so a crash between two
commands can never leave a job half-submitted or a result written without its event. Field
names are written ``$job_status``, ``$entry_owner`` ... and substituted from
``service.queue.fields``, which the Python side reads them by.

Redis may lose its script cache at any moment (a restart, a failover, SCRIPT FLUSH): a call
that finds its script gone has done nothing, so it is loaded again and repeated, as often as
that keeps happening (``PersistentScript``, ``NOSCRIPT_RETRIES``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from string import Template
from typing import Any

from redis.commands.core import AsyncScript, Script
from redis.exceptions import NoScriptError

from service.queue.fields import LUA_NAMES

NOSCRIPT_RETRIES = 50
"""Times a call is repeated when Redis lost its scripts meanwhile; each try costs a round trip,
and only a flush between the load and the call can make one fail again."""


class PersistentScript(Script):
    """A script whose calls survive Redis losing its scripts at any rate (redis-py's own
    reloads once, then raises)."""

    def __call__(self, keys: Sequence[Any] | None = None, args: Iterable[Any] | None = None,
                 client: Any = None) -> Any:
        for _ in range(NOSCRIPT_RETRIES):
            try:
                return super().__call__(keys, args, client)
            except NoScriptError:
                continue  # flushed again between redis-py's load and its call
        return super().__call__(keys, args, client)


class PersistentAsyncScript(AsyncScript):
    """``PersistentScript`` for the asyncio client."""

    async def __call__(self, keys: Sequence[Any] | None = None, args: Iterable[Any] | None = None,
                       client: Any = None) -> Any:
        for _ in range(NOSCRIPT_RETRIES):
            try:
                return await super().__call__(keys, args, client)
            except NoScriptError:
                continue
        return await super().__call__(keys, args, client)


def _lua(source: str) -> str:
    """A script with the queue's field names substituted in (a name it lacks raises here)."""
    return Template(source).substitute(LUA_NAMES)


EMIT = """
-- A job's event: appended to its stream (the record, read back by id) and published on the
-- channel of the same name (how the API's event hub hears of it without a command per
-- follower): "<entry id>\\n<event>\\n<data>" (``parse_event_message``). Every event but
-- "queued" (ENQUEUE).
local function emit(stream, event, data)
  local id = redis.call('XADD', stream, '*', '$event_event', event, '$event_data', data)
  redis.call('PUBLISH', stream, id .. '\\n' .. event .. '\\n' .. data)
  return id
end
"""
"""A Lua function the other scripts include: append an event to a job's stream and publish it."""

ENQUEUE = _lua("""
-- KEYS: open, inflight, job, images, events, jobs
-- ARGV: job_id, now_ms, max_depth, max_inflight, ttl_s, spec, owner, queued_data,
--       stale_before_ms, n_images, deadline_ms, carry ('1' or '0'), image bytes...
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[9])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[9])
local depth = redis.call('ZCARD', KEYS[1])
if depth >= tonumber(ARGV[3]) then return {'queue_full', depth} end
local inflight = redis.call('ZCARD', KEYS[2])
if inflight >= tonumber(ARGV[4]) then return {'too_many_inflight', inflight} end
redis.call('HSET', KEYS[3], '$job_spec', ARGV[6], '$job_owner', ARGV[7], '$job_status', 'queued',
           '$job_attempts', 0, '$job_created_ms', ARGV[2], '$job_n_images', ARGV[10],
           '$job_deadline_ms', ARGV[11])
redis.call('EXPIRE', KEYS[3], ARGV[5])
for i = 13, #ARGV do redis.call('HSET', KEYS[4], tostring(i - 13), ARGV[i]) end
redis.call('EXPIRE', KEYS[4], ARGV[5])
-- Appended, not published: nobody follows a job before it is queued but its own waiting
-- classify, which has the event's id from this reply.
local event_id = redis.call('XADD', KEYS[5], '*', '$event_event', 'queued', '$event_data', ARGV[8])
redis.call('EXPIRE', KEYS[5], ARGV[5])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[5])
-- The owner travels with the entry: the worker starts the job without reading it first. A
-- small job travels whole: a worker woken by it runs it while its START is on the way.
local entry = {'$entry_job_id', ARGV[1], '$entry_owner', ARGV[7]}
if ARGV[12] == '1' then
  table.insert(entry, '$entry_spec'); table.insert(entry, ARGV[6])
  table.insert(entry, '$entry_created_ms'); table.insert(entry, ARGV[2])
  for i = 13, #ARGV do
    table.insert(entry, '$entry_image_prefix' .. (i - 13)); table.insert(entry, ARGV[i])
  end
end
redis.call('XADD', KEYS[6], '*', unpack(entry))
return {'ok', event_id}
""")
"""Submit a job: check the queue depth and the key's unfinished jobs, then write the job
hash, its images, its ``queued`` event, its place in the open and in-flight sets and its
stream entry (a small job's entry carries the job). Caller: API (``Producer.enqueue``)."""

START = _lua(EMIT + """
-- KEYS: job, events, dead, open, inflight, results, images
-- ARGV: job_id, worker, now_ms, max_attempts, dead_error, expired_error
-- A job that runs gets its "started" event here, and the reply carries what running it needs:
-- the attempt, the images an earlier attempt finished, the spec, when it was created and the
-- bytes of its unfinished images. One round trip instead of four on every job's path.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing', 0} end
local status = redis.call('HGET', KEYS[1], '$job_status')
if status == 'done' or status == 'failed' or status == 'dead' then return {'finished', 0} end
local attempts = redis.call('HINCRBY', KEYS[1], '$job_attempts', 1)
local outcome = nil
if attempts > tonumber(ARGV[4]) then
  outcome = 'dead'
  redis.call('HSET', KEYS[1], '$job_status', 'dead', '$job_error', ARGV[5], '$job_finished_ms', ARGV[3])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'job_id', ARGV[1],
             'attempts', attempts - 1, 'ms', ARGV[3])
  emit(KEYS[2], 'error', ARGV[5])
elseif attempts == 1 and tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[1], '$job_deadline_ms')) then
  -- the deadline bounds the wait before a job first starts; a job resumed after its worker
  -- died or Redis restarted is bounded by max attempts instead (its finished images stand)
  outcome = 'expired'
  redis.call('HSET', KEYS[1], '$job_status', 'failed', '$job_error', ARGV[6], '$job_finished_ms', ARGV[3])
  emit(KEYS[2], 'error', ARGV[6])
end
if outcome then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
  return {outcome, attempts}
end
local created = tonumber(redis.call('HGET', KEYS[1], '$job_created_ms'))
redis.call('HSET', KEYS[1], '$job_status', 'running', '$job_worker', ARGV[2], '$job_started_ms', ARGV[3])
emit(KEYS[2], 'started', cjson.encode(
  {job_id = ARGV[1], worker = ARGV[2], attempt = attempts, queue_ms = tonumber(ARGV[3]) - created}))
local done = redis.call('HKEYS', KEYS[6])
local finished = {}
for _, index in ipairs(done) do finished[index] = true end
local images = {}
for i = 0, tonumber(redis.call('HGET', KEYS[1], '$job_n_images')) - 1 do
  local data = not finished[tostring(i)] and redis.call('HGET', KEYS[7], tostring(i))
  if data then table.insert(images, tostring(i)); table.insert(images, data) end
end
return {'run', attempts, done, redis.call('HGET', KEYS[1], '$job_spec'), created, images}
""")
"""Start a job: count the attempt; dead-letter it past the attempts, fail it past its deadline,
else mark it running, emit ``started`` and reply with its spec and unfinished images.
Caller: worker (``Consumer.start``)."""

FINISH_IMAGE = _lua(EMIT + """
-- KEYS: job, results, events, open, inflight, log, drift reference, drift window, drift index
-- ARGV: job_id, index, result, event_data, final_event_data, now_ms, ttl_s, log_entry, log_maxlen,
--       log_ttl_s, drift observation, drift scope, reference size, window size, max scopes,
--       drift ttl_s [, event before, its data]
-- The optional log entry (the MLLM's decision) is appended only by the writer that wins, and
-- before the result event, so a client that sees the result also finds it in the log; so is the
-- optional drift observation (a redelivered image is observed once). The optional event before
-- the result (a zero-shot batch's "zeroshot" event) is emitted as PUBLISH would: for any job not
-- finished, whether or not this result wins.
local status = redis.call('HGET', KEYS[1], '$job_status')
if not status or status == 'failed' or status == 'dead' then return {0, 0} end
if ARGV[17] and status ~= 'done' then emit(KEYS[3], ARGV[17], ARGV[18]) end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return {0, 0} end
redis.call('EXPIRE', KEYS[2], ARGV[7])
if ARGV[8] ~= '' then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[9], '*', 'entry', ARGV[8])
  redis.call('EXPIRE', KEYS[6], ARGV[10])
end
if ARGV[11] ~= '' and (redis.call('SISMEMBER', KEYS[9], ARGV[12]) == 1
                       or redis.call('SCARD', KEYS[9]) < tonumber(ARGV[15])) then
  redis.call('SADD', KEYS[9], ARGV[12])
  if redis.call('LLEN', KEYS[7]) < tonumber(ARGV[13]) then redis.call('RPUSH', KEYS[7], ARGV[11]) end
  redis.call('LPUSH', KEYS[8], ARGV[11])
  redis.call('LTRIM', KEYS[8], 0, tonumber(ARGV[14]) - 1)
  for i = 7, 9 do redis.call('EXPIRE', KEYS[i], ARGV[16]) end
end
local final = redis.call('HLEN', KEYS[2]) >= tonumber(redis.call('HGET', KEYS[1], '$job_n_images'))
if final then
  emit(KEYS[3], 'result', ARGV[5])
  redis.call('HSET', KEYS[1], '$job_status', 'done', '$job_finished_ms', ARGV[6])
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('ZREM', KEYS[5], ARGV[1])
  return {1, 1}
end
emit(KEYS[3], 'result', ARGV[4])
return {1, 0}
""")
"""Write one image's result (first writer wins) with its ``result`` event, its rectification
log entry, its drift observation (``service.queue.drift``; a key's scopes beyond its quota are
not observed), and on the last image the job's end. Caller: worker (``Consumer.finish_image``)."""

FAIL = _lua(EMIT + """
-- KEYS: job, events, open, inflight
-- ARGV: job_id, now_ms, error
local status = redis.call('HGET', KEYS[1], '$job_status')
if not status or status == 'done' or status == 'failed' or status == 'dead' then return 0 end
redis.call('HSET', KEYS[1], '$job_status', 'failed', '$job_error', ARGV[3], '$job_finished_ms', ARGV[2])
emit(KEYS[2], 'error', ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
""")
"""End an unfinished job with an ``error`` event. Caller: worker (``Consumer.fail``)."""

PUBLISH = _lua(EMIT + """
-- KEYS: job, events.  ARGV: event, data
-- Progress of a job that another worker already finished is dropped, not appended.
local status = redis.call('HGET', KEYS[1], '$job_status')
if not status or status == 'done' or status == 'failed' or status == 'dead' then return false end
return emit(KEYS[2], ARGV[1], ARGV[2])
""")
"""Emit a ``zeroshot`` or ``progress`` event of an unfinished job. Caller: worker
(``Consumer.publish``, through the ``EventSender`` thread)."""

RENEW_LEASES = """
-- KEYS: jobs.  ARGV: group, consumer, entry ids...
-- Resets the idle time of entries this consumer still owns, so XAUTOCLAIM leaves them alone.
-- Returns the entries it does not own (reclaimed by another worker, or lost with Redis's data,
-- group included): their leases are never renewed, so a worker cannot hold a job it lost.
local lost = {}
for i = 3, #ARGV do
  local pending = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if type(pending) == 'table' and pending.err == nil and #pending == 1 and pending[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""
"""Renew the leases of the entries a worker still owns and name those it lost.
Caller: worker (``Consumer.renew``, from its lease thread)."""

TAKE = _lua("""
-- KEYS: streams, in the order to try them.  ARGV: group, consumer, count[, mates, batch flags]
-- Up to ``count`` new entries, from the first streams that have some, in one round trip, as a
-- flat list of (stream, entry id, job id, owner). (A plain XREADGROUP over several streams returns
-- up to COUNT entries per stream: a worker would hoard jobs.) With ``mates`` and a flag per
-- stream ('1': its jobs share a batch): when the first entry came from a flagged stream, up to
-- ``mates`` more from the flagged streams, its batch-mates, in the same trip.
local taken = {}
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
local function take(i, wanted)
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', wanted,
                           'STREAMS', KEYS[i], '>')
  local n = 0
  if reply and reply[1] then
    for _, entry in ipairs(reply[1][2]) do
      table.insert(taken, KEYS[i]); table.insert(taken, entry[1])
      table.insert(taken, field(entry[2], '$entry_job_id'))
      table.insert(taken, field(entry[2], '$entry_owner') or '')  -- '' in an entry from before owners
      n = n + 1
    end
  end
  return n
end
local wanted, first = tonumber(ARGV[3]), nil
for i = 1, #KEYS do
  local n = take(i, wanted)
  if n > 0 and not first then first = i end
  wanted = wanted - n
  if wanted <= 0 then break end
end
if #taken == 0 then return false end
local mates, flags = tonumber(ARGV[4] or '0'), ARGV[5] or ''
if mates > 0 and string.sub(flags, first, first) == '1' then
  for i = 1, #KEYS do
    if mates <= 0 then break end
    if string.sub(flags, i, i) == '1' then mates = mates - take(i, mates) end
  end
end
return taken
""")
"""Take up to ``count`` new entries from the routes a worker serves, in order, with the
batch-mates of a batchable first one. Caller: worker (``Consumer.read_new``)."""

RELEASE = _lua("""
-- KEYS: jobs.  ARGV: group, entry id, job_id, owner
-- Hand an unstarted job back to the queue at once (graceful shutdown): re-add, then ack.
redis.call('XADD', KEYS[1], '*', '$entry_job_id', ARGV[3], '$entry_owner', ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
""")
"""Hand an unstarted entry back to its stream (graceful shutdown).
Caller: worker (``Consumer.release``)."""


RETAIN = """
-- KEYS: meta, images, order, bytes.  ARGV: id, meta JSON, image, ts_ms, max_bytes, cutoff_ms
-- Keep one record (first writer wins), then evict the oldest until within both bounds.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  redis.call('INCRBY', KEYS[4], string.len(ARGV[3]))
end
local evicted = 0
while true do
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #oldest == 0 then break end
  local total = tonumber(redis.call('GET', KEYS[4]) or '0')
  if total <= tonumber(ARGV[5]) and tonumber(oldest[2]) >= tonumber(ARGV[6]) then break end
  local size = redis.call('HSTRLEN', KEYS[2], oldest[1])
  redis.call('DECRBY', KEYS[4], size)
  redis.call('HDEL', KEYS[1], oldest[1])
  redis.call('HDEL', KEYS[2], oldest[1])
  redis.call('ZREM', KEYS[3], oldest[1])
  evicted = evicted + 1
end
return evicted
"""
"""Keep one image for fine-tuning, then evict the oldest beyond the label set's retention
bounds. Caller: worker (``TrainingRetention.keep``)."""
