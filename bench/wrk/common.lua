-- Shared by every scenario script: per-thread status counting, and a JSON summary written
-- to $BENCH_OUT when the run ends (wrk's own text report stays on stdout).
--   BENCH_DATA   Lua file that defines the scenario's data (paths, ids, tokens ...)
--   BENCH_OUT    where the JSON summary goes
--   BENCH_DELAY_MS  mean think time per connection (exponential); unset = as fast as possible
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

-- Reads a file of one value per line (the data files name their lists this way).
function lines(path)
  local t = {}
  for l in io.lines(path) do if l ~= "" then t[#t + 1] = l end end
  return t
end

function init(args)
  statuses = {}
  local data = os.getenv("BENCH_DATA")
  if data then dofile(data) end
  math.randomseed(os.time() * 1000 + tid)
  seq = 0
  if scenario_init then scenario_init(args) end
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if delay_ms and delay_ms > 0 then
  function delay()
    return math.floor(-delay_ms * math.log(1 - math.random()))
  end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

-- Unique per request and per thread: idempotency keys, event ids.
function unique(prefix)
  seq = seq + 1
  return string.format("%s-%d-%d-%d-%d", prefix, os.time(), tid, seq, math.random(1, 1e9))
end

function pick(list)
  return list[math.random(1, #list)]
end

function done(summary, latency, requests)
  local codes = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, n in pairs(s) do codes[code] = (codes[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(codes) do table.insert(parts, string.format('"%d": %d', code, n)) end
  local e = summary.errors
  local out = io.open(os.getenv("BENCH_OUT") or "/dev/stdout", "w")
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "stdev": %.1f, ' ..
    '"p50": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9), table.concat(parts, ", ")))
  out:close()
end
