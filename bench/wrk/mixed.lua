-- Every write scenario and the mixed "browsing day", chosen by $BENCH_MIX:
--   order     POST /api/orders as a random buyer, new Idempotency-Key each time
--   event     POST /api/deliveries/{id}/events (an `in_transit` hub scan) as a carrier
--   login     POST /api/auth/login as a random seeded buyer
--   day       weighted: search, detail, orders, a stream of delivery events, a few logins
-- Data ($BENCH_DATA): search_paths, detail_paths, buyer_tokens, carrier_tokens,
-- order_products, shipments, login_emails, password, address_json.
dofile(os.getenv("BENCH_LIB") or "bench/wrk/common.lua")
local mix = os.getenv("BENCH_MIX") or "day"

local function order()
  local items = {}
  local n = math.random(1, 2)
  local seen = {}
  for _ = 1, n do
    local p = pick(order_products)
    if not seen[p] then
      seen[p] = true
      table.insert(items, string.format('{"product_id":"%s","quantity":%d}', p, math.random(1, 2)))
    end
  end
  local body = '{"items":[' .. table.concat(items, ",") .. '],"shipping_address":' .. address_json .. '}'
  return wrk.format("POST", "/api/orders", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. pick(buyer_tokens),
    ["Idempotency-Key"] = unique("bench"),
  }, body)
end

local function event()
  local body = string.format('{"event_id":"%s","status":"in_transit","location":"Hub %d"}',
    unique("ev"), math.random(1, 40))
  return wrk.format("POST", "/api/deliveries/" .. pick(shipments) .. "/events", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. pick(carrier_tokens),
  }, body)
end

local function login()
  local body = string.format('{"email":"%s","password":"%s"}', pick(login_emails), password)
  return wrk.format("POST", "/api/auth/login", { ["Content-Type"] = "application/json" }, body)
end

local function day()
  local r = math.random() * 100
  if r < 55 then return wrk.format("GET", pick(search_paths)) end
  if r < 90 then return wrk.format("GET", pick(detail_paths)) end
  if r < 95 then return order() end
  if r < 99.5 then
    -- Without shipments (none could be created: BENCHMARKS.md) event appends become detail reads.
    if shipments and #shipments > 0 then return event() end
    return wrk.format("GET", pick(detail_paths))
  end
  return login()
end

local chosen = ({ order = order, event = event, login = login, day = day })[mix]
request = function() return chosen() end
