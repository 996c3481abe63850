-- wrk script: attestation round trips against CAS (or the bare baseline).
-- Each connection sends a nonce request when its thread holds no unused nonce, otherwise a
-- provision request with one; a nonce is good on any connection, never twice.
-- Env: CID (config id), MEAS (64 hex measurement), CLOSE=1 for a new TLS connection per request.
local cid = os.getenv("CID")
local meas = os.getenv("MEAS")
local hdrs = {["Content-Type"] = "application/json"}
if os.getenv("CLOSE") == "1" then hdrs["Connection"] = "close" end

local threads = {}
function setup(thread) table.insert(threads, thread) end

queue = {}
ok = 0
refused = 0
nonces = 0

local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = chars:sub(c1 + 1, c1 + 1) .. chars:sub(c2 + 1, c2 + 1)
      .. (b and chars:sub(c3 + 1, c3 + 1) or "=") .. (c and chars:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

request = function()
  local n = table.remove(queue)
  if n then
    local report = b64('{"measurement":"' .. meas .. '","nonce":"' .. n .. '"}')
    local body = '{"config_id":"' .. cid .. '","measurement":"' .. meas .. '","nonce":"' .. n
      .. '","platform":"simulation","report":"' .. report .. '"}'
    return wrk.format("POST", "/v1/attestation/provision", hdrs, body)
  end
  return wrk.format("POST", "/v1/attestation/nonce", hdrs, '{"config_id":"' .. cid .. '"}')
end

response = function(status, headers, body)
  if status == 200 and body:find('"env"', 1, true) then
    ok = ok + 1
  else
    local n = status == 200 and body:match('"nonce":"([^"]+)"')
    if n then
      nonces = nonces + 1
      table.insert(queue, n)
    else
      refused = refused + 1
    end
  end
end

done = function(summary, latency, requests)
  local tok, tref, tnon = 0, 0, 0
  for _, t in ipairs(threads) do
    tok = tok + t:get("ok")
    tref = tref + t:get("refused")
    tnon = tnon + t:get("nonces")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"ok":%d,"refused":%d,"nonces":%d,"requests":%d,"duration_us":%d,'
      .. '"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    tok, tref, tnon, summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
