/**
 * The Lua scripts of the Redis store, one per atomic operation. They move opaque strings (ids, JSON payloads, error
 * texts) and never parse a job: cjson refused what JavaScript writes (lone surrogates, nesting over 1000) and, as
 * Redis does not roll a script back, a job it choked on took its whole popped batch with it.
 *
 * Keys of one queue (see `keysOf`): waiting (list of ids, oldest first), payloads (hash id → JSON), attempts (hash
 * id → count), errors (hash id → last error), owners (hash id → token of the store holding its lease), leased
 * (sorted set id → lease deadline in ms, Redis's clock), dead (list of ids, oldest first), ids (set of custom ids
 * ever offered, so one is queued once). Times come from `TIME`, so runners on several machines agree on leases.
 */

const now = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/**
 * KEYS: waiting, payloads, ids, wake (a pub/sub channel). ARGV: (id, payload, custom "1"/"0") triples. Publishes
 * one wake-up when it queued a job.
 */
export const offer = `
local queued = 0
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  if (ARGV[i + 2] ~= '1' or redis.call('SADD', KEYS[3], id) == 1) and redis.call('HSETNX', KEYS[2], id, ARGV[i + 1]) == 1 then
    redis.call('RPUSH', KEYS[1], id)
    queued = 1
  end
end
if queued == 1 then redis.call('PUBLISH', KEYS[4], '1') end
return 1
`

/**
 * KEYS: waiting, leased, owners, attempts, payloads. ARGV: token, lease (ms), most jobs. Puts back (up to 1000)
 * jobs whose lease ran out, then leases up to `most`, counting an attempt on each. Returns (id, payload, attempts)
 * triples.
 */
export const lease = `
${now}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('RPUSH', KEYS[1], id)
end
local ids = redis.call('LPOP', KEYS[1], ARGV[3])
if not ids then return {} end
local deadline = now + tonumber(ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local payload = redis.call('HGET', KEYS[5], id)
  if payload then
    local n = redis.call('HINCRBY', KEYS[4], id, 1)
    redis.call('ZADD', KEYS[2], deadline, id)
    redis.call('HSET', KEYS[3], id, ARGV[1])
    out[#out + 1] = id
    out[#out + 1] = payload
    out[#out + 1] = n
  end
end
return out
`

/** KEYS: leased, owners. ARGV: token, lease (ms), ids. Extends the leases this token holds. */
export const refresh = `
${now}
local deadline = now + tonumber(ARGV[2])
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[i]) end
end
return 1
`

/**
 * KEYS: waiting, leased, owners, attempts, payloads, errors, dead. ARGV: token, then (id, kind, attempts, error)
 * quadruples; kind "a" ack, "b" back (release), "r" retry, "d" dead. Only jobs this token holds are touched, so a
 * late settlement (the lease lapsed, another runner has the job) or a repeated one changes nothing.
 */
export const settle = `
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], id) == ARGV[1] then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    local kind = ARGV[i + 1]
    if kind == 'a' then
      redis.call('HDEL', KEYS[5], id)
      redis.call('HDEL', KEYS[4], id)
      redis.call('HDEL', KEYS[6], id)
    else
      redis.call('HSET', KEYS[4], id, ARGV[i + 2])
      if kind ~= 'b' then redis.call('HSET', KEYS[6], id, ARGV[i + 3]) end
      if kind == 'd' then redis.call('RPUSH', KEYS[7], id) else redis.call('RPUSH', KEYS[1], id) end
    end
  end
end
return 1
`

/** KEYS: dead, payloads, attempts, errors. Returns (id, payload, attempts, error) quadruples, oldest first. */
export const deadLetters = `
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or '0'
  out[#out + 1] = redis.call('HGET', KEYS[4], id) or ''
end
return out
`

/** KEYS: dead, waiting, attempts, errors. ARGV: id. Queues a dead letter again, no attempts counted. */
export const requeue = `
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
`

/** KEYS: dead, payloads, attempts, errors, ids. Deletes every dead letter and forgets its id; returns how many. */
export const purge = `
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('SREM', KEYS[5], id)
end
redis.call('DEL', KEYS[1])
return #ids
`
