-- One internal call of order placement on its own (bench.py "order, part by part"): POST
-- $BENCH_PATH with the JSON body $BENCH_BODY, every "UNIQ" in it replaced by a new order id
-- (also the reservation id), and the service token $BENCH_TOKEN.
dofile(os.getenv("BENCH_LIB") or "bench/wrk/common.lua")
local path = os.getenv("BENCH_PATH")
local body = os.getenv("BENCH_BODY")
local token = os.getenv("BENCH_TOKEN")

request = function()
  seq = seq + 1
  -- An order id: `o`, virtual shard 00, a UUID v7 in 32 hex (unique per thread and request,
  -- 40 random bits against the other runs)
  local id = string.format("o00%08x%04x7%03xa%03x%08x%04x", tid, seq % 65536,
    math.random(0, 4095), math.random(0, 4095), seq, math.random(0, 65535))
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, (body:gsub("UNIQ", id)))
end
