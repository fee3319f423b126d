-- The storefront's pages (home, search results, product page) as a returning browser loads
-- them: GET one of `paths` at random, with the session cookie of this thread (one of
-- `cookies`, obtained by bench.py from a product page; none if the list is empty).
dofile(os.getenv("BENCH_LIB") or "bench/wrk/common.lua")

local headers = nil

function scenario_init(args)
  if cookies and #cookies > 0 then
    headers = { Cookie = cookies[(tid - 1) % #cookies + 1] }
  end
end

request = function()
  return wrk.format("GET", pick(paths), headers)
end
