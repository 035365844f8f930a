/**
 * The Lua scripts of the Redis store, one per atomic operation. They move opaque strings (ids, JSON payloads,
 * options, progress, results, error texts) and never parse one: cjson refused what JavaScript writes (lone
 * surrogates, nesting over 1000) and, as Redis does not roll a script back, a job it choked on took its whole
 * popped batch with it.
 *
 * Keys of one queue (`<prefix>{<escaped name>}:<suffix>`, see `keysOf`; one hash tag, so one Cluster slot):
 * - waiting: list of ready ids of priority 0, in order (RPUSH, LPOP: O(1), as before #11 and as BullMQ's wait
 *   list). Most jobs have no priority; a sorted set for all cost Redis 2.3x the CPU per offer (4.9 -> 11.1 us,
 *   20,000 pipelined offers on an idle Redis).
 * - prioritized: sorted set of ready jobs of priority ≠ 0. Score = -priority (an integer, exact in a double),
 *   member = a sequence number as 16 hex digits followed by the id: Redis orders equal scores by member bytes, so
 *   ties go in offer order. A score `priority × 2^32 + seq` would run out of sequence numbers after 2^32 offers
 *   (5 days at 10,000/s); the member has all 53 bits. A lease takes priorities > 0, then waiting, then < 0.
 * - seq: the counter of those sequence numbers (and of dead letters' order).
 * - members: hash id → its prioritized member, made at offer and kept while the job lives, so a prioritized job
 *   put back keeps its place, and cancel finds it by id.
 * - delayed: sorted set id → ready time (ms, Redis's clock); moved to waiting by the lease script once due.
 * - leased: sorted set id → lease deadline (ms); owners: hash id → token of the store holding its lease.
 * - payloads, attempts, errors, priorities (only ≠ 0), options, progress: hashes id → text.
 * - results: hash id → result; expiry: sorted set id → when its done or cancelled record goes (ms), dropped by
 *   settlements and cancels.
 * - cancelling: set of leased ids whose cancellation was asked; cancelled: set of cancelled ids (until their record
 *   expires, as a done one's).
 * - dead: sorted set id → sequence number at its death (oldest first).
 * - ids: set of custom ids ever offered (so one is queued once); paused: "1" while paused.
 * - since: hash id → when the job entered its state (ms): written at offer, when queued again or delayed, at death
 *   and at cancellation (not at lease nor acknowledgement: a write per job more on the hot path), for the ages of
 *   `jobs` and `counts`; dropped with the done record (`forget`) or the dead letter (`purge`).
 * - wake: a pub/sub channel, not a key (named here so scripts get it like one, passed as a trailing ARGV; same hash
 *   tag): one message per script call that queued a job, ready now or delayed (offer, release, retry, requeue,
 *   resume), heard by idle takers of every process (redisWake.ts). A delayed job becoming due publishes nothing: idle takers read its due
 *   time (`nextDue`, the lowest score of delayed) after each empty lease and lease again then.
 * A done job keeps its attempts, progress, last error and result (if any) until the queue's resultTimeToLive
 * passes, then only its custom id stays (in `ids`): Redis holds everything in memory, so done records of
 * generated ids must not pile up forever (the SQL stores keep their rows). A cancelled job's record lives as long
 * (cancelled records written before that have no end in `expiry` and are kept).
 *
 * Layout change of issue #11 (pre-1.0): dead was a list (status needs "is it dead?" in O(1)); a queue with dead
 * letters written by an older version fails with WRONGTYPE on them instead of losing them silently: requeue or
 * purge them with the older version first, or delete that key. Everything else an older version wrote is read as
 * it was (waiting, payloads, attempts, errors, owners, leased, ids).
 *
 * Times come from `TIME`, so runners on several machines agree on leases, delays and time to live.
 */

/** Every key suffix of a queue; a script names the ones it uses, and gets Lua locals of those names. */
export const keyNames = [
  "waiting",
  "prioritized",
  "seq",
  "members",
  "delayed",
  "leased",
  "owners",
  "payloads",
  "attempts",
  "errors",
  "priorities",
  "options",
  "progress",
  "results",
  "expiry",
  "cancelling",
  "cancelled",
  "dead",
  "ids",
  "paused",
  "wake",
  "since",
  "events"
] as const

export type KeyName = typeof keyNames[number]

/** The names of `keyNames` that are pub/sub channels, not keys. */
export type ChannelName = "wake" | "events"

const isChannel = (name: KeyName): name is ChannelName => name === "wake" || name === "events"

export interface Script {
  readonly keys: ReadonlyArray<Exclude<KeyName, ChannelName>>
  /** Channel names the caller appends to ARGV, in this order, after the script's own arguments. */
  readonly channels: ReadonlyArray<ChannelName>
  readonly lua: string
}

/**
 * Binds KEYS[1..n] to locals named after the keys, and the channels (wake, events) to locals popped off the end of
 * ARGV, then the body. Channels go as ARGV, not KEYS: ioredis adds the client's `keyPrefix` to KEYS but not to
 * SUBSCRIBE or PUBLISH channels, so with a prefix the scripts published wake-ups on, and counted the subscribers of,
 * channels nobody listened to (0 of 5 "Offered" events delivered). Popped (`table.remove`, O(1) from the end) so
 * the body's ARGV, `#ARGV` included, is its own arguments only.
 */
const script = (names: ReadonlyArray<KeyName>, ...body: ReadonlyArray<string>): Script => {
  const keys = names.filter((name): name is Exclude<KeyName, ChannelName> => !isChannel(name))
  const channels = names.filter(isChannel)
  return {
    keys,
    channels,
    lua: [
      `local ${keys.join(", ")} = ${keys.map((_, i) => `KEYS[${i + 1}]`).join(", ")}`,
      ...[...channels].reverse().map((channel) => `local ${channel} = table.remove(ARGV)`),
      ...body
    ].join("\n")
  }
}

const clock = `local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end`

/**
 * Puts `id` (offered before) back in waiting or prioritized (delay 0), or in delayed; true when it is ready now (the
 * caller then publishes on wake). Needs waiting, prioritized, members, delayed, priorities, since. `0 - priority`, not
 * `-priority`: Lua's -0 would be written "-0".
 */
const enqueue = `local function priorityOf(id)
  return tonumber(redis.call('HGET', priorities, id) or '0')
end
local function enqueue(id, delay, now)
  redis.call('HSET', since, id, now)
  if delay > 0 then
    redis.call('ZADD', delayed, now + delay, id)
    return false
  end
  local priority = priorityOf(id)
  if priority == 0 then
    redis.call('RPUSH', waiting, id)
  else
    redis.call('ZADD', prioritized, 0 - priority, redis.call('HGET', members, id))
  end
  return true
end`

/**
 * Variadic commands over a whole batch (issue #16): one HMGET, HSET, ZADD... per batch instead of one command per
 * job cut the commands Redis runs per job processed from ~16 to ~1.5 (bench/_redis-commands.ts). A list goes
 * in chunks of 4,000 items: Lua's `unpack` holds ~8,000 values; 4,000 is even, so no (score, member) or (field,
 * value) pair is split. `bulk` runs `cmd key [pre] items...` (nothing for no items); `gather` concatenates the replies
 * of `cmd key items...` (HMGET, SMISMEMBER: one entry per item).
 */
const bulk = `local CHUNK = 4000
local function bulk(cmd, key, list, pre)
  for i = 1, #list, CHUNK do
    local j = math.min(i + CHUNK - 1, #list)
    if pre then redis.call(cmd, key, pre, unpack(list, i, j)) else redis.call(cmd, key, unpack(list, i, j)) end
  end
end
local function gather(cmd, key, list)
  if #list == 0 then return {} end
  if #list <= CHUNK then return redis.call(cmd, key, unpack(list)) end
  local out = {}
  for i = 1, #list, CHUNK do
    local part = redis.call(cmd, key, unpack(list, i, math.min(i + CHUNK - 1, #list)))
    for k = 1, #part do out[#out + 1] = part[k] end
  end
  return out
end`

/**
 * Records that end: `forget` drops what a done or cancelled record kept (result, attempts, progress, error, the
 * cancelled mark) for a list of ids; `sweep` forgets up to 1,000 records whose time passed (no sweeper: each
 * settlement batch or cancel adds at most 256, so they cannot pile up while jobs are settled). Needs bulk, expiry,
 * results, attempts, progress, errors, cancelled, since.
 */
const expire = `local function forget(list)
  bulk('HDEL', results, list)
  bulk('HDEL', attempts, list)
  bulk('HDEL', progress, list)
  bulk('HDEL', errors, list)
  bulk('SREM', cancelled, list)
  bulk('HDEL', since, list)
end
local function sweep(now)
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 1000)
  if #gone > 0 then
    redis.call('ZREM', expiry, unpack(gone))
    forget(gone)
  end
end`

/**
 * A job becomes a cancelled record: attempts, error and progress kept for `status` for `ttl` ms (the queue's
 * resultTimeToLive, as a done record; 0: not at all), the rest dropped. Before, cancelled records were kept forever
 * (Redis holds them in memory). Needs expire's keys and members, payloads, priorities, options.
 */
const cancelRecord = `local function cancelRecord(id, now, ttl)
  redis.call('HSET', since, id, now)
  redis.call('HDEL', members, id)
  redis.call('HDEL', payloads, id)
  redis.call('HDEL', priorities, id)
  redis.call('HDEL', options, id)
  if ttl > 0 then
    redis.call('SADD', cancelled, id)
    redis.call('ZADD', expiry, now + ttl, id)
  else
    forget({ id })
  end
end`

/**
 * ARGV: (id, payload, spec) triples. `spec` is "" for the common job (generated id, ready now, priority 0, no
 * options), else "<custom 1/0> <delay ms> <priority> <options or nothing>" (this store's own framing, never user
 * JSON: options is the rest, taken whole): three arguments a job instead of six cost a pipelined offer ~10%
 * (bench 20,000 offers). Known ids are skipped: a custom one by `ids` (forever), a generated one by its payload;
 * an id repeated in the batch is kept once, its first offer. The batch's payloads, custom ids and ready ids of
 * priority 0 are written by one command each (HMGET, SMISMEMBER, HSET, SADD, RPUSH), not two commands a job.
 * Publishes one wake-up when it queued a job, ready now or delayed (idle takers then read when it is due).
 * Returns how many connections subscribe to the queue's events channel (`events`, a pub/sub channel, not a key):
 * read atomically with the write, so a subscription Redis took before this call hears the batch's "Offered",
 * and with none the client publishes none (they were ~15 % of `offerAll`'s CPU per job, issue #16).
 */
export const offer = script(
  [
    "waiting",
    "prioritized",
    "seq",
    "members",
    "delayed",
    "payloads",
    "priorities",
    "options",
    "ids",
    "wake",
    "since",
    "events"
  ],
  clock,
  bulk,
  `local now
local queued, delayedAny = false, false
local seen, at, list, customs = {}, {}, {}, {}
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  if not seen[id] then
    seen[id] = true
    at[#at + 1] = i
    list[#list + 1] = id
    if string.sub(ARGV[i + 2], 1, 1) == '1' then customs[#customs + 1] = id end
  end
end
local known = gather('HMGET', payloads, list)
local taken = {}
if #customs > 0 then
  local flags = gather('SMISMEMBER', ids, customs)
  for k = 1, #customs do if flags[k] == 1 then taken[customs[k]] = true end end
end
local kept, fresh, ready, entered = {}, {}, {}, {}
for k = 1, #at do
  local i, id, spec = at[k], list[k], ARGV[at[k] + 2]
  if not known[k] and not taken[id] then
    kept[#kept + 1] = id
    kept[#kept + 1] = ARGV[i + 1]
    now = now or clock()
    entered[#entered + 1] = id
    entered[#entered + 1] = now
    if spec == '' then
      ready[#ready + 1] = id
    else
      local custom, delay, priority, extra = string.match(spec, '^([01]) (%d+) (%-?%d+) (.*)$')
      delay, priority = tonumber(delay), tonumber(priority)
      if custom == '1' then fresh[#fresh + 1] = id end
      local member
      if priority ~= 0 then
        member = string.format('%016x', redis.call('INCR', seq)) .. id
        redis.call('HSET', priorities, id, priority)
        redis.call('HSET', members, id, member)
      end
      if extra ~= '' then redis.call('HSET', options, id, extra) end
      if delay > 0 then
        redis.call('ZADD', delayed, now + delay, id)
        delayedAny = true
      elseif member then
        redis.call('ZADD', prioritized, 0 - priority, member)
        queued = true
      else
        ready[#ready + 1] = id
      end
    end
  end
end
bulk('HSET', payloads, kept)
bulk('SADD', ids, fresh)
bulk('RPUSH', waiting, ready)
bulk('HSET', since, entered)
-- A delayed job wakes them too: they read its due time and wake then, not at their next poll.
if queued or #ready > 0 or delayedAny then redis.call('PUBLISH', wake, '1') end
return redis.call('PUBSUB', 'NUMSUB', events)[2]`
)

/**
 * ARGV: token, lease (ms), most jobs, cancelled records' time to live (ms). First, up to 1,000 jobs whose lease ran
 * out (their runner died) are queued again, or settled cancelled when their cancellation was asked; up to 1,000
 * delayed jobs now due are moved to waiting (ready-time order; a backlog larger than that moves over the next
 * calls, each bounded to ~1 ms). Then, unless paused, leases up to `most`, counting an attempt on each: the batch's
 * payloads and attempts are read by one HMGET each and its attempts, deadlines and owners written by one HSET, ZADD,
 * HSET (not 4 commands a job); an id found twice in waiting is leased once. Returns (id, payload, attempts, options
 * or nil) quadruples.
 */
export const lease = script(
  [
    "waiting",
    "prioritized",
    "members",
    "delayed",
    "leased",
    "owners",
    "payloads",
    "attempts",
    "priorities",
    "options",
    "cancelling",
    "cancelled",
    "paused",
    "expiry",
    "results",
    "progress",
    "errors",
    "since"
  ],
  clock,
  enqueue,
  bulk,
  expire,
  cancelRecord,
  `local now = clock()
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leased, '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', leased, id)
  redis.call('HDEL', owners, id)
  if redis.call('SREM', cancelling, id) == 1 then cancelRecord(id, now, tonumber(ARGV[4])) else enqueue(id, 0, now) end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', delayed, id)
  enqueue(id, 0, now)
end
if redis.call('EXISTS', paused) == 1 then return {} end
local most = tonumber(ARGV[3])
local ids = {}
-- Priorities above 0 (scores below 0), then the list of priority 0, then priorities below 0.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', prioritized, '-inf', '(0', 'LIMIT', 0, most)) do
  redis.call('ZREM', prioritized, member)
  ids[#ids + 1] = string.sub(member, 17)
end
if #ids < most then
  -- The common case, no priorities: LPOP's reply is the list itself (no copy, no length per id).
  local popped = redis.call('LPOP', waiting, most - #ids) or {}
  if #ids == 0 then
    ids = popped
  else
    for _, id in ipairs(popped) do ids[#ids + 1] = id end
  end
end
if #ids < most then
  local low = redis.call('ZPOPMIN', prioritized, most - #ids)
  for i = 1, #low, 2 do ids[#ids + 1] = string.sub(low[i], 17) end
end
local found = gather('HMGET', payloads, ids)
local live, bodies, seen = {}, {}, {}
local kept = 0
for i = 1, #ids do
  local id = ids[i]
  if found[i] and not seen[id] then
    seen[id] = true
    kept = kept + 1
    live[kept], bodies[kept] = id, found[i]
  end
end
if kept == 0 then return {} end
-- Numbers as text made once, not per job: Redis writes each number argument of a command with a printf.
local deadline = string.format('%d', now + tonumber(ARGV[2]))
local counted = gather('HMGET', attempts, live)
-- Read once per call, not per job: most queues have no per-job options (no command for them at all).
local extras = redis.call('HLEN', options) > 0 and gather('HMGET', options, live) or {}
local bumped, deadlines, held, out = {}, {}, {}, {}
local texts = {}
local b, o = 0, 0
for i = 1, kept do
  local id = live[i]
  local n = (counted[i] and tonumber(counted[i]) or 0) + 1
  local text = texts[n]
  if not text then
    text = string.format('%d', n)
    texts[n] = text
  end
  bumped[b + 1], bumped[b + 2] = id, text
  deadlines[b + 1], deadlines[b + 2] = deadline, id
  held[b + 1], held[b + 2] = id, ARGV[1]
  b = b + 2
  out[o + 1], out[o + 2], out[o + 3], out[o + 4] = id, bodies[i], n, extras[i] or false
  o = o + 4
end
bulk('HSET', attempts, bumped)
bulk('ZADD', leased, deadlines)
bulk('HSET', owners, held)
return out`
)

/**
 * ARGV: token, lease (ms), ids. Extends the leases this token holds (one HMGET of the owners, one ZADD of the
 * deadlines); returns those of them asked to cancel.
 */
export const refresh = script(
  ["leased", "owners", "cancelling"],
  clock,
  bulk,
  `local deadline = clock() + tonumber(ARGV[2])
local list = {}
for i = 3, #ARGV do list[#list + 1] = ARGV[i] end
local holders = gather('HMGET', owners, list)
local held, deadlines = {}, {}
for i = 1, #list do
  if holders[i] == ARGV[1] then
    held[#held + 1] = list[i]
    deadlines[#deadlines + 1] = deadline
    deadlines[#deadlines + 1] = list[i]
  end
end
bulk('ZADD', leased, deadlines, 'XX')
local asked = {}
if #held > 0 and redis.call('SCARD', cancelling) > 0 then
  local flags = gather('SMISMEMBER', cancelling, held)
  for i = 1, #held do if flags[i] == 1 then asked[#asked + 1] = held[i] end end
end
return asked`
)

/**
 * ARGV: token, how long a cancelled record is kept (ms), then per job: id, spec "<kind> <attempts> <number>", and a
 * text when the kind has one; or, for a run of plain acknowledgements, their ids joined by NUL and the spec
 * "s 0 <ms>" (as "a" for each). Kinds: "a" ack and "A" ack with the result in text (number: how long its done record
 * is kept, ms; 0: not at all), "b" back (release), "r" retry (text: error; number: delay ms), "d" dead (text:
 * error), "c" cancelled. Only jobs this token holds are touched, so a late settlement (the lease lapsed, another
 * runner has the job) or a repeated one changes nothing; an id twice in the batch is settled once, by its first
 * settlement. A job asked to cancel is not queued again whatever its settlement says. The batch's owners are read
 * by one HMGET and its leases, owners, payloads and done records written by one command each (an acknowledgement
 * was 5 commands, and its record's expiry 5 more). Then drops up to 1,000 records whose time passed (`sweep`).
 */
export const settle = script(
  [
    "waiting",
    "prioritized",
    "seq",
    "members",
    "delayed",
    "leased",
    "owners",
    "payloads",
    "attempts",
    "errors",
    "priorities",
    "options",
    "progress",
    "results",
    "expiry",
    "cancelling",
    "cancelled",
    "dead",
    "wake",
    "since"
  ],
  clock,
  enqueue,
  bulk,
  expire,
  cancelRecord,
  `local now = clock()
local ready = false
local list, kinds, counts, numbers, texts, seen = {}, {}, {}, {}, {}, {}
local cancelTtl = tonumber(ARGV[2])
-- Counts kept in locals, not \`#list\`: Lua 5.1's length of a table is a binary search when its array part has room.
local noted = 0
local function note(id, kind, count, number, text)
  if not seen[id] then
    seen[id] = true
    noted = noted + 1
    list[noted], kinds[noted], counts[noted], numbers[noted], texts[noted] = id, kind, count, number, text
  end
end
local i = 3
while i <= #ARGV do
  local kind, count, number = string.match(ARGV[i + 1] or '', '^(%a) (%d+) (%d+)$')
  if kind == 's' then
    local ids, from = ARGV[i], 1
    number = tonumber(number)
    while from <= #ids do
      local stop = string.find(ids, '\\0', from, true) or (#ids + 1)
      note(string.sub(ids, from, stop - 1), 'a', count, number, '')
      from = stop + 1
    end
    i = i + 2
  elseif kind == 'A' or kind == 'r' or kind == 'd' then
    note(ARGV[i], kind, count, tonumber(number), ARGV[i + 2])
    i = i + 3
  else
    if kind then note(ARGV[i], kind, count, tonumber(number), '') end
    i = i + 2
  end
end
local holders = gather('HMGET', owners, list)
local held, at = {}, {}
local h = 0
for k = 1, noted do
  if holders[k] == ARGV[1] then
    h = h + 1
    held[h], at[h] = list[k], k
  end
end
if #held > 0 then
  bulk('ZREM', leased, held)
  bulk('HDEL', owners, held)
  -- Read once per call, not per job: in the common case (nothing asked to cancel, no priorities, no per-job
  -- options) a batch of acknowledgements is 6 commands whatever its size. Nothing here adds to these keys.
  local asked = {}
  if redis.call('SCARD', cancelling) > 0 then
    asked = gather('SMISMEMBER', cancelling, held)
    bulk('SREM', cancelling, held)
  end
  local acked, expiring, results_, dropped = {}, {}, {}, {}
  -- A done record's end as text, made once per time to live (usually one a batch), not a printf per job in ZADD.
  local ends = {}
  local a, e = 0, 0
  for h = 1, #held do
    local id, k = held[h], at[h]
    local kind = kinds[k]
    if asked[h] == 1 and (kind == 'b' or kind == 'r') then kind = 'c' end
    if kind == 'a' or kind == 'A' then
      a = a + 1
      acked[a] = id
      if numbers[k] > 0 then
        local ttl = numbers[k]
        local score = ends[ttl]
        if not score then
          score = string.format('%d', now + ttl)
          ends[ttl] = score
        end
        expiring[e + 1], expiring[e + 2] = score, id
        e = e + 2
        if kind == 'A' then
          results_[#results_ + 1] = id
          results_[#results_ + 1] = texts[k]
        end
      else
        dropped[#dropped + 1] = id
      end
    else
      redis.call('HSET', attempts, id, counts[k])
      if kind == 'c' then
        cancelRecord(id, now, cancelTtl)
      else
        if kind ~= 'b' then redis.call('HSET', errors, id, texts[k]) end
        if kind == 'd' then
          redis.call('ZADD', dead, redis.call('INCR', seq), id)
          redis.call('HSET', since, id, now)
        else
          enqueue(id, kind == 'r' and numbers[k] or 0, now)
          ready = true
        end
      end
    end
  end
  bulk('HDEL', payloads, acked)
  if #acked > 0 and redis.call('HLEN', priorities) > 0 then
    bulk('HDEL', priorities, acked)
    bulk('HDEL', members, acked)
  end
  if #acked > 0 and redis.call('HLEN', options) > 0 then bulk('HDEL', options, acked) end
  bulk('ZADD', expiry, expiring)
  bulk('HSET', results, results_)
  forget(dropped)
end
sweep(now)
-- A job released or retried wakes idle takers of every process (one retried with a delay: they read when it is due).
if ready then redis.call('PUBLISH', wake, '1') end
return 1`
)

/**
 * ARGV: id, cancelled records' time to live (ms). waiting or delayed: a cancelled record now ("cancelled");
 * leased: cancellation asked, reported by `refresh` and applied by `settle` or, once its runner died, by `lease`
 * ("asked"); otherwise "none".
 */
export const cancel = script(
  [
    "waiting",
    "prioritized",
    "members",
    "delayed",
    "leased",
    "payloads",
    "priorities",
    "options",
    "cancelling",
    "cancelled",
    "dead",
    "expiry",
    "results",
    "attempts",
    "progress",
    "errors",
    "since"
  ],
  clock,
  bulk,
  expire,
  cancelRecord,
  `local id = ARGV[1]
if redis.call('ZSCORE', leased, id) then
  redis.call('SADD', cancelling, id)
  return 'asked'
end
local member = redis.call('HGET', members, id)
-- LREM scans the list (O(n), as BullMQ's remove): reached only for a job that is neither leased nor delayed nor
-- prioritized, and skipped for one that is gone (done, cancelled: no payload) or dead.
if redis.call('ZREM', delayed, id) == 1
  or (member and redis.call('ZREM', prioritized, member) == 1)
  or (not member and redis.call('HEXISTS', payloads, id) == 1 and not redis.call('ZSCORE', dead, id)
    and redis.call('LREM', waiting, 1, id) == 1) then
  local now = clock()
  cancelRecord(id, now, tonumber(ARGV[2]))
  -- Cancelled records expire too: a queue that only cancels must not keep the expired ones.
  sweep(now)
  return 'cancelled'
end
return 'none'`
)

/** ARGV: token, id, progress. Stored only while this token holds the job. */
export const progress = script(
  ["owners", "progress"],
  `if redis.call('HGET', owners, ARGV[2]) == ARGV[1] then redis.call('HSET', progress, ARGV[2], ARGV[3]) end
return 1`
)

/**
 * ARGV: id. Returns (state, attempts, progress, error, result), nil entries for none, or nil when nothing is known.
 * A delayed job past its time is "waiting" (the next lease moves it); a done or cancelled record past its time is
 * unknown.
 */
export const status = script(
  ["delayed", "leased", "payloads", "attempts", "errors", "progress", "results", "expiry", "cancelled", "dead"],
  clock,
  `local id = ARGV[1]
local at = redis.call('ZSCORE', delayed, id)
local state
if redis.call('ZSCORE', leased, id) then
  state = 'running'
elseif at then
  state = tonumber(at) > clock() and 'delayed' or 'waiting'
elseif redis.call('ZSCORE', dead, id) then
  state = 'dead'
elseif redis.call('SISMEMBER', cancelled, id) == 1 then
  -- A cancelled record lives as long as a done one (records of an older version have no end: kept).
  local ends = redis.call('ZSCORE', expiry, id)
  if ends and tonumber(ends) <= clock() then return false end
  state = 'cancelled'
elseif redis.call('HEXISTS', payloads, id) == 1 then
  -- Kept, and neither leased, delayed, dead nor cancelled: in waiting or prioritized (a list cannot say in O(1)).
  state = 'waiting'
else
  local ends = redis.call('ZSCORE', expiry, id)
  if not ends or tonumber(ends) <= clock() then return false end
  state = 'done'
end
return {
  state,
  redis.call('HGET', attempts, id) or '0',
  redis.call('HGET', progress, id),
  redis.call('HGET', errors, id),
  state == 'done' and redis.call('HGET', results, id)
}`
)

/**
 * Returns waiting (delayed jobs past their time included), delayed, running, dead, paused (1/0), done records kept,
 * and the oldest waiting job's age (ms; -1 when none waits) among the next of each kind: the head of waiting, the
 * highest and lowest priority, the first delayed job due (a few commands, whatever the queue's size).
 */
export const counts = script(
  ["waiting", "prioritized", "delayed", "leased", "dead", "paused", "expiry", "since", "cancelled"],
  clock,
  `local now = clock()
local due = redis.call('ZCOUNT', delayed, '-inf', now)
local oldest = nil
local function older(at)
  if at and (not oldest or tonumber(at) < oldest) then oldest = tonumber(at) end
end
local head = redis.call('LINDEX', waiting, 0)
if head then older(redis.call('HGET', since, head)) end
for _, member in ipairs(redis.call('ZRANGE', prioritized, 0, 0)) do older(redis.call('HGET', since, string.sub(member, 17))) end
for _, member in ipairs(redis.call('ZRANGE', prioritized, -1, -1)) do older(redis.call('HGET', since, string.sub(member, 17))) end
local first = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
if first[2] then older(first[2]) end
return {
  redis.call('LLEN', waiting) + redis.call('ZCARD', prioritized) + due,
  redis.call('ZCARD', delayed) - due,
  redis.call('ZCARD', leased),
  redis.call('ZCARD', dead),
  redis.call('EXISTS', paused),
  -- expiry holds cancelled records too (they live as long as done ones): their count is taken off (approximate
  -- while cancelled records past their time wait for a sweep, or were written before they had an end).
  math.max(0, redis.call('ZCOUNT', expiry, '(' .. now, '+inf') - redis.call('SCARD', cancelled)),
  oldest and math.max(0, now - oldest) or -1
}`
)

/**
 * ARGV: state, limit, offset. Returns (id, payload, attempts, progress, error, age ms) sextuples, false for none,
 * of up to `limit` jobs in `state` after `offset` (see `Store.jobs` for the orders): each a range of one key by
 * rank or score (ZCOUNT, LLEN place the offset among waiting's parts), so a call walks at most offset + limit
 * entries. Cancelled is a set: SSCAN from the start, in hash order.
 */
export const jobs = script(
  [
    "waiting",
    "prioritized",
    "delayed",
    "leased",
    "payloads",
    "attempts",
    "errors",
    "progress",
    "expiry",
    "cancelled",
    "dead",
    "since"
  ],
  clock,
  `local state, limit, skip = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = clock()
local ids, ages = {}, {}
local function add(id, age)
  ids[#ids + 1] = id
  ages[#ids] = age
end
-- The part of one ordered key from the current offset: skips what the part holds, else takes what is left.
local function part(n, read)
  if #ids >= limit then return end
  if skip >= n then
    skip = skip - n
    return
  end
  read(skip, limit - #ids)
  skip = 0
end
local function members(list)
  for _, member in ipairs(list) do add(string.sub(member, 17), nil) end
end
if state == 'waiting' then
  part(redis.call('ZCOUNT', prioritized, '-inf', '(0'), function(from, n)
    members(redis.call('ZRANGEBYSCORE', prioritized, '-inf', '(0', 'LIMIT', from, n))
  end)
  part(redis.call('LLEN', waiting), function(from, n)
    for _, id in ipairs(redis.call('LRANGE', waiting, from, from + n - 1)) do add(id, nil) end
  end)
  part(redis.call('ZCOUNT', prioritized, '(0', '+inf'), function(from, n)
    members(redis.call('ZRANGEBYSCORE', prioritized, '(0', '+inf', 'LIMIT', from, n))
  end)
  part(redis.call('ZCOUNT', delayed, '-inf', now), function(from, n)
    local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'WITHSCORES', 'LIMIT', from, n)
    for i = 1, #due, 2 do add(due[i], now - tonumber(due[i + 1])) end
  end)
elseif state == 'delayed' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '(' .. now, '+inf', 'LIMIT', skip, limit)) do add(id, nil) end
elseif state == 'running' then
  for _, id in ipairs(redis.call('ZRANGE', leased, skip, skip + limit - 1)) do add(id, false) end
elseif state == 'done' then
  -- expiry also holds cancelled records (they live as long): pages are read until \`limit\` done ones are found.
  local from, seen = 0, 0
  repeat
    local page = redis.call('ZREVRANGEBYSCORE', expiry, '+inf', '(' .. now, 'LIMIT', from, limit + skip)
    from = from + #page
    for _, id in ipairs(page) do
      if redis.call('SISMEMBER', cancelled, id) == 0 then
        seen = seen + 1
        if seen > skip and #ids < limit then add(id, false) end
      end
    end
  until #page == 0 or #ids >= limit
elseif state == 'dead' then
  for _, id in ipairs(redis.call('ZREVRANGE', dead, skip, skip + limit - 1)) do add(id, nil) end
elseif state == 'cancelled' then
  local cursor, seen = '0', 0
  repeat
    local reply = redis.call('SSCAN', cancelled, cursor, 'COUNT', limit + skip)
    cursor = reply[1]
    for _, id in ipairs(reply[2]) do
      seen = seen + 1
      if seen > skip and #ids < limit then add(id, nil) end
    end
  until cursor == '0' or #ids >= limit
end
local out = {}
for i, id in ipairs(ids) do
  local age = ages[i]
  if age == nil then
    local at = redis.call('HGET', since, id)
    age = at and math.max(0, now - tonumber(at)) or false
  end
  out[#out + 1] = id
  out[#out + 1] = state ~= 'done' and state ~= 'cancelled' and redis.call('HGET', payloads, id)
  out[#out + 1] = redis.call('HGET', attempts, id) or '0'
  out[#out + 1] = redis.call('HGET', progress, id)
  out[#out + 1] = redis.call('HGET', errors, id)
  out[#out + 1] = age
end
return out`
)

/** Returns (id, payload, attempts, error) quadruples, oldest first. */
export const deadLetters = script(
  ["dead", "payloads", "attempts", "errors"],
  `local out = {}
for _, id in ipairs(redis.call('ZRANGE', dead, 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', payloads, id) or ''
  out[#out + 1] = redis.call('HGET', attempts, id) or '0'
  out[#out + 1] = redis.call('HGET', errors, id) or ''
end
return out`
)

/** Queues dead letter `id` again in its place, its attempts, error and progress cleared. Needs requeue's keys. */
const revive = `local function revive(id)
  redis.call('ZREM', dead, id)
  redis.call('HDEL', attempts, id)
  redis.call('HDEL', errors, id)
  redis.call('HDEL', progress, id)
  enqueue(id, 0, clock())
end`

const requeueKeys: ReadonlyArray<KeyName> = [
  "waiting",
  "prioritized",
  "members",
  "delayed",
  "dead",
  "attempts",
  "errors",
  "progress",
  "priorities",
  "wake",
  "since"
]

/** ARGV: id. Queues a dead letter again, no attempts counted (waking idle takers); 0 when there is no such dead letter. */
export const requeue = script(
  requeueKeys,
  clock,
  enqueue,
  revive,
  `if not redis.call('ZSCORE', dead, ARGV[1]) then return 0 end
revive(ARGV[1])
redis.call('PUBLISH', wake, '1')
return 1`
)

/**
 * ARGV: bound ("" at first). Queues again up to 1,000 dead letters that died no later than `bound` (at first the
 * newest now), oldest first, so that the store's calls, each blocking Redis ~1 ms, end even while jobs keep dying
 * (a job dying again is not requeued twice). Publishes a wake-up when it queued any. Returns (how many, bound).
 */
export const requeueAll = script(
  requeueKeys,
  clock,
  enqueue,
  revive,
  `local bound = ARGV[1]
if bound == '' then
  local newest = redis.call('ZRANGE', dead, -1, -1, 'WITHSCORES')
  if #newest == 0 then return {0, ''} end
  bound = newest[2]
end
local ids = redis.call('ZRANGEBYSCORE', dead, '-inf', bound, 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do revive(id) end
if #ids > 0 then redis.call('PUBLISH', wake, '1') end
return {#ids, bound}`
)

/** Deletes every dead letter and forgets its id; returns how many. */
export const purge = script(
  ["dead", "members", "payloads", "attempts", "errors", "priorities", "options", "progress", "ids", "since"],
  `local letters = redis.call('ZRANGE', dead, 0, -1)
for _, id in ipairs(letters) do
  redis.call('HDEL', members, id)
  redis.call('HDEL', payloads, id)
  redis.call('HDEL', attempts, id)
  redis.call('HDEL', errors, id)
  redis.call('HDEL', priorities, id)
  redis.call('HDEL', options, id)
  redis.call('HDEL', progress, id)
  redis.call('HDEL', since, id)
  redis.call('SREM', ids, id)
end
redis.call('DEL', dead)
return #letters`
)

/** Waiting, delayed and leased jobs. */
export const size = script(
  ["waiting", "prioritized", "delayed", "leased"],
  `return redis.call('LLEN', waiting) + redis.call('ZCARD', prioritized) + redis.call('ZCARD', delayed) + redis.call('ZCARD', leased)`
)

/**
 * Milliseconds from Redis's clock until the next timed job comes due (the lowest score of delayed, or of leased: a
 * lease that lapses), or nil when there is none: two O(log n) reads.
 */
export const nextDue = script(
  ["delayed", "leased"],
  clock,
  `local at = false
for _, key in ipairs({ delayed, leased }) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 and (not at or tonumber(first[2]) < at) then at = tonumber(first[2]) end
end
if not at then return false end
return at - clock()`
)
