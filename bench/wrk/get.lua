-- GET one of `paths` (defined by $BENCH_DATA) per request: search, detail, constant, warm-up.
-- With BENCH_SEQUENTIAL=1 every path is requested once, split over the threads, then stops.
dofile(os.getenv("BENCH_LIB") or "bench/wrk/common.lua")
local sequential = os.getenv("BENCH_SEQUENTIAL") == "1"
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local i = 0

request = function()
  if sequential then
    local idx = tid + i * nthreads
    i = i + 1
    if idx > #paths then
      wrk.thread:stop()
      idx = #paths
    end
    return wrk.format("GET", paths[idx])
  end
  return wrk.format("GET", pick(paths))
end
