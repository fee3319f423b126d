-- GET one of `paths` (defined by $BENCH_DATA), chosen at random, per request: search,
-- product detail, the constant component.
dofile(os.getenv("BENCH_LIB") or "bench/wrk/common.lua")

request = function()
  return wrk.format("GET", pick(paths))
end
