-- wrk script for bench/webhook.py: each wrk thread posts its own list of signed WeChat messages
-- (written by webhook.py as reqs_<n>.lua in the folder given after "--"), each once, and at the
-- end prints one JSON line with the counts and latency percentiles (microseconds).
local threads = {}
local n = 0

function setup(thread)
  thread:set("id", n)
  n = n + 1
  table.insert(threads, thread)
end

function init(args)
  reqs = dofile(args[1] .. "/reqs_" .. id .. ".lua")
  count = #reqs
  i = 0
  sent = 0
  failed = 0
end

function request()
  i = i + 1
  if i > #reqs then
    i = 1  -- ran out: webhook.py sizes the lists so that this does not happen
  end
  sent = sent + 1
  local r = reqs[i]
  return wrk.format("POST", r[1], {["Content-Type"] = "text/xml"}, r[2])
end

function response(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local over, bad = 0, 0
  for _, t in ipairs(threads) do
    local s, count = t:get("sent"), t:get("count")
    bad = bad + t:get("failed")
    if s > count then over = over + (s - count) end
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non200": %d, "socket_errors": %d, ' ..
    '"reused": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, bad, e.connect + e.read + e.write + e.timeout,
    over, latency:percentile(50), latency:percentile(99), latency.max))
end
