#!lua name=sheaf_limit_v1
-- sheaf::limit::redis: the GCRA of sheaf::limit::RateLimiter, kept in Redis.
--
-- FCALL sheaf_gcra_v1 1 <key> <increment_ns> <capacity_ns> [<now_ns>]
--   increment_ns = n * T, capacity_ns = burst * T (decimal integers; the
--   client has checked increment <= capacity).
--   now_ns: TEST ONLY. An explicit time replaces the server's TIME so that
--   the shared vectors replay exactly; such a key gets no expiry, because
--   that time line is not the server's. Production calls never pass it.
-- Reply: a decimal string, "0" when the cells were taken, else the retry
-- delay in ns (> 0): the same request passes that much later.
-- Key: a string, the theoretical arrival time (TAT) in ns since the Unix
-- epoch (server clock), expiring (PXAT) at the first millisecond at or after
-- the TAT: an expired key and a stored one are then indistinguishable.
--
-- Lua numbers are doubles (exact to 2^53), and ns since the epoch are about
-- 2^61, so every time is kept as a pair (seconds, nanoseconds in [0, 1e9)):
-- both halves stay far below 2^53 and every operation below is exact.

local E9 = 1000000000

local function parse(s)
  local len = #s
  if len <= 9 then
    return 0, tonumber(s)
  end
  return tonumber(string.sub(s, 1, len - 9)), tonumber(string.sub(s, len - 8))
end

local function format(s, n)
  if s == 0 then
    return string.format('%d', n)
  end
  return string.format('%d%09d', s, n)
end

local function add(as, an, bs, bn)
  local s, n = as + bs, an + bn
  if n >= E9 then
    return s + 1, n - E9
  end
  return s, n
end

-- a - b, for a >= b
local function sub(as, an, bs, bn)
  local s, n = as - bs, an - bn
  if n < 0 then
    return s - 1, n + E9
  end
  return s, n
end

local function less(as, an, bs, bn)
  return as < bs or (as == bs and an < bn)
end

local function gcra(keys, args)
  local incs, incn = parse(args[1])
  local caps, capn = parse(args[2])
  local nows, nown
  local test_time = args[3] ~= nil
  if test_time then
    nows, nown = parse(args[3])
  else
    local t = redis.call('TIME')
    nows, nown = tonumber(t[1]), tonumber(t[2]) * 1000
  end
  -- base = max(TAT, now); an absent key is a full limiter (TAT <= now).
  local bs, bn = nows, nown
  local stored = redis.call('GET', keys[1])
  if stored then
    local ts, tn = parse(stored)
    if less(nows, nown, ts, tn) then
      bs, bn = ts, tn
    end
  end
  -- new = base + n*T; allowed iff new - now <= burst*T, i.e. new <= now + capacity.
  local news, newn = add(bs, bn, incs, incn)
  local lims, limn = add(nows, nown, caps, capn)
  if less(lims, limn, news, newn) then
    -- retry after new - capacity - now
    return format(sub(news, newn, lims, limn))
  end
  if incs == 0 and incn == 0 then
    return '0'
  end
  if test_time then
    redis.call('SET', keys[1], format(news, newn))
  else
    -- Expire at ceil(new / 1 ms): never before the TAT has passed.
    local ms = news * 1000 + math.ceil(newn / 1000000)
    redis.call('SET', keys[1], format(news, newn), 'PXAT', string.format('%d', ms))
  end
  return '0'
end

redis.register_function('sheaf_gcra_v1', gcra)
