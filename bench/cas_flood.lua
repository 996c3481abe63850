-- wrk script: anonymous writes a flooder can send CAS without any identity.
-- Alternates a nonce request for a config id that names nothing and a client registration
-- (the same CSR, env CSR_JSON). Counts answers by status.
local csr = os.getenv("CSR_JSON")
local hdrs = {["Content-Type"] = "application/json"}
local threads = {}
function setup(thread) table.insert(threads, thread) end

n = 0
limited = 0
other = 0

request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("POST", "/v1/clients", hdrs, csr)
  end
  local body = string.format('{"config_id":"flood/nosuch%d/app"}', n)
  return wrk.format("POST", "/v1/attestation/nonce", hdrs, body)
end

response = function(status, headers, body)
  if status == 429 then limited = limited + 1 else other = other + 1 end
end

done = function(summary, latency, requests)
  local tl, to = 0, 0
  for _, t in ipairs(threads) do
    tl = tl + t:get("limited")
    to = to + t:get("other")
  end
  io.write(string.format('RESULT {"limited":%d,"other":%d,"requests":%d,"duration_us":%d}\n',
    tl, to, summary.requests, summary.duration))
end
