#!lua name=sheaf_batch_v2
-- sheaf::batch::redis server side. Every call declares the nine keys of one
-- shard (all under one hash tag): groups, items, due, leases, batches, seq,
-- out, done, dead. Time comes from TIME only (milliseconds).

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt(x) return string.format('%d', x) end

-- Lua interns every string it builds, so each `..` of a record costs an
-- allocation and a hash: records are built with one string.format instead
-- (this halved the cost of an add).

-- The item fields "epoch:1" .. "epoch:n" of a batch, from `from`, at most
-- 1,000 (Lua's unpack limit is far above; a reply stays small).
local function item_fields(e, from, n)
  local fields = {}
  for i = from, math.min(n, from + 999) do fields[#fields + 1] = e .. ':' .. fmt(i) end
  return fields
end

-- Deletes the items of batch `e` (n of them) with one HDEL per 1,000.
local function delete_items(K, e, n)
  for from = 1, n, 1000 do redis.call('HDEL', K[2], unpack(item_fields(e, from, n))) end
end

-- Open group: "epoch:count:first:last:grace:max_delay:max_items" (ms; 0 = unset).
local function get_group(K, g)
  local m = redis.call('HGET', K[1], g)
  if not m then return nil end
  local e, c, f, l, gr, md, mi = string.match(m, '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+)$')
  return {e = tonumber(e), c = tonumber(c), f = tonumber(f), l = tonumber(l),
          gr = tonumber(gr), md = tonumber(md), mi = tonumber(mi)}
end

local function put_group(K, g, m)
  redis.call('HSET', K[1], g,
    string.format('%d:%d:%d:%d:%d:%d:%d', m.e, m.c, m.f, m.l, m.gr, m.md, m.mi))
end

-- The group's deadline and its trigger, or nil (only size or a flush seals it).
local function deadline(m)
  local d, why = nil, nil
  if m.gr > 0 then d, why = m.l + m.gr, 'grace' end
  if m.md > 0 and (d == nil or m.f + m.md <= d) then d, why = m.f + m.md, 'max_delay' end
  return d, why
end

-- Sealed batch: "count:first:due:sealed:reason:attempts:group".
local function get_batch(K, e)
  local b = redis.call('HGET', K[5], e)
  if not b then return nil end
  local c, f, d, s, r, a, g = string.match(b, '^(%d+):(%d+):(%d+):(%d+):([%a_]+):(%d+):(.*)$')
  return {c = tonumber(c), f = tonumber(f), d = tonumber(d), s = tonumber(s), r = r,
          a = tonumber(a), g = g}
end

local function put_batch(K, e, b)
  redis.call('HSET', K[5], e,
    string.format('%d:%d:%d:%d:%s:%d:%s', b.c, b.f, b.d, b.s, b.r, b.a, b.g))
end

-- Closes the group's epoch: its items stay where they are ("epoch:n" in
-- items); the batch record is ready to claim (lease score 0).
local function seal(K, g, m, now, reason, due)
  redis.call('HDEL', K[1], g)
  redis.call('ZREM', K[3], g)
  local e = fmt(m.e)
  put_batch(K, e, {c = m.c, f = m.f, d = due, s = now, r = reason, a = 0, g = g})
  redis.call('ZADD', K[4], 0, e)
end

local function dead_letter(K, e, why)
  redis.call('ZREM', K[4], e)
  redis.call('HSET', K[5], e .. ':error', why)
  redis.call('RPUSH', K[9], e)
end

-- ARGV: (group, grace, max_delay, max_items, n, item x n)... for any number of
-- groups of this shard -> {now, (opened, sealed, due or -1) per group}. One call
-- per shard and round trip: the call's fixed cost (nine keys, TIME) is paid once.
local function add(K, ARGV)
  local now = now_ms()
  local out = {now}
  local i = 1
  while i <= #ARGV do
    local g = ARGV[i]
    local gr, md, mi = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
    local n = tonumber(ARGV[i + 4])
    local m = get_group(K, g)
    local opened, sealed = 0, 0
    for j = i + 5, i + 4 + n do
      if not m then
        m = {e = redis.call('INCR', K[6]), c = 0, f = now, l = now, gr = gr, md = md, mi = mi}
        opened = opened + 1
      end
      m.c = m.c + 1
      m.l = now
      redis.call('HSET', K[2], string.format('%d:%d', m.e, m.c), ARGV[j])
      if m.mi > 0 and m.c >= m.mi then
        seal(K, g, m, now, 'max_items', now)
        sealed = sealed + 1
        m = nil
      end
    end
    local due = -1
    if m then
      put_group(K, g, m)
      local d = deadline(m)
      if d then
        redis.call('ZADD', K[3], d, g)
        due = d
      else
        redis.call('ZADD', K[3], '+inf', g)
      end
    end
    out[#out + 1] = opened
    out[#out + 1] = sealed
    out[#out + 1] = due
    i = i + 5 + n
  end
  return out
end

-- ARGV: limit (0: seal only), lease_ms, max_attempts, seal_limit. Seals the due groups
-- (sealing moves no item, so it takes many more than it claims), claims ready
-- or expired batches. -> {wait_ms or -1, now, sealed, {batch...}, dead}
local function tick(K, ARGV)
  local now = now_ms()
  local limit, lease, max_attempts = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
  local due = redis.call('ZRANGEBYSCORE', K[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
  for _, g in ipairs(due) do
    local m = get_group(K, g)
    if m then
      local d, why = deadline(m)
      seal(K, g, m, now, why, d)
    else
      redis.call('ZREM', K[3], g)
    end
  end
  local out, dead = {}, 0
  local ready = {}
  if limit > 0 then
    ready = redis.call('ZRANGEBYSCORE', K[4], '-inf', now, 'LIMIT', 0, limit)
  end
  for _, e in ipairs(ready) do
    local b = get_batch(K, e)
    if not b then
      redis.call('ZREM', K[4], e)
    elseif b.a >= max_attempts then
      dead_letter(K, e, 'lease expired ' .. fmt(b.a) .. ' times')
      dead = dead + 1
    else
      b.a = b.a + 1
      put_batch(K, e, b)
      redis.call('ZADD', K[4], now + lease, e)
      local entry = {e, b.g, b.c, b.f, b.d, b.s, b.r, b.a}
      for from = 1, b.c, 1000 do
        local items = redis.call('HMGET', K[2], unpack(item_fields(e, from, b.c)))
        for _, item in ipairs(items) do entry[#entry + 1] = item or '' end
      end
      out[#out + 1] = entry
    end
  end
  local wait = -1
  local first = redis.call('ZRANGE', K[3], 0, 0, 'WITHSCORES')
  if first[2] and first[2] ~= 'inf' then wait = tonumber(first[2]) end
  local lease_first = {}
  if limit > 0 then lease_first = redis.call('ZRANGE', K[4], 0, 0, 'WITHSCORES') end
  if lease_first[2] then
    local l = tonumber(lease_first[2])
    if wait < 0 or l < wait then wait = l end
  end
  if wait >= 0 then wait = math.max(0, wait - now) end
  return {wait, now, #due, out, dead}
end

-- ARGV: epoch, shard, mode ('stream' | 'mark'), retention_ms, output.
-- The commit marker (done) is written in the same call as the XADD.
-- -> {1, stream id} | {0, 'duplicate' | 'dead' | 'unknown'}
local function commit(K, ARGV)
  local e = ARGV[1]
  local b = get_batch(K, e)
  if not b then
    if redis.call('ZSCORE', K[8], e) then return {0, 'duplicate'} end
    return {0, 'unknown'}
  end
  if redis.call('HEXISTS', K[5], e .. ':error') == 1 then return {0, 'dead'} end
  local now = now_ms()
  local id = ''
  if ARGV[3] == 'stream' then
    id = redis.call('XADD', K[7], '*', 'batch', ARGV[2] .. '-' .. e, 'group', b.g,
      'items', fmt(b.c), 'reason', b.r, 'opened_ms', fmt(b.f), 'due_ms', fmt(b.d),
      'sealed_ms', fmt(b.s), 'committed_ms', fmt(now), 'attempts', fmt(b.a), 'output', ARGV[5])
  end
  delete_items(K, e, b.c)
  redis.call('HDEL', K[5], e)
  redis.call('ZREM', K[4], e)
  redis.call('ZADD', K[8], now, e)
  redis.call('ZREMRANGEBYSCORE', K[8], '-inf', now - tonumber(ARGV[4]))
  return {1, id}
end

-- ARGV: epoch, error, max_attempts, release (1: not a failure, give the
-- attempt back). -> 1 retry later, 2 dead-lettered, 0 no such batch
local function fail(K, ARGV)
  local e = ARGV[1]
  local b = get_batch(K, e)
  if not b or redis.call('HEXISTS', K[5], e .. ':error') == 1 then return 0 end
  if ARGV[4] == '1' then
    b.a = math.max(0, b.a - 1)
    put_batch(K, e, b)
  elseif b.a >= tonumber(ARGV[3]) then
    dead_letter(K, e, ARGV[2])
    return 2
  end
  redis.call('ZADD', K[4], 0, e)
  return 1
end

-- ARGV: group, or nothing for every open group. -> groups sealed
local function flush(K, ARGV)
  local now = now_ms()
  local groups
  if ARGV[1] then groups = {ARGV[1]} else groups = redis.call('ZRANGE', K[3], 0, -1) end
  local n = 0
  for _, g in ipairs(groups) do
    local m = get_group(K, g)
    if m then
      seal(K, g, m, now, 'manual', now)
      n = n + 1
    end
  end
  return n
end

-- ARGV: epoch -> removes a dead letter and its items; 1 if it was there.
local function purge(K, ARGV)
  local e = ARGV[1]
  local b = get_batch(K, e)
  if not b or redis.call('LREM', K[9], 0, e) == 0 then return 0 end
  delete_items(K, e, b.c)
  redis.call('HDEL', K[5], e, e .. ':error')
  return 1
end

redis.register_function('sheaf_batch_add', add)
redis.register_function('sheaf_batch_tick', tick)
redis.register_function('sheaf_batch_commit', commit)
redis.register_function('sheaf_batch_fail', fail)
redis.register_function('sheaf_batch_flush', flush)
redis.register_function('sheaf_batch_purge', purge)
