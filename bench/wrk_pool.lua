-- wrk script for bench/intake.py: replays a pool of pre-signed webhook requests.
--
--   wrk ... -s bench/wrk_pool.lua <url> -- <pool file prefix> <path>
--
-- Thread n reads "<prefix>.<n>": one request a line, "webhook-id TAB webhook-timestamp
-- TAB webhook-signature TAB body". Requests are formatted once, in init(), so request()
-- is a table lookup. A thread that runs past its pool starts it again; `reused` in the
-- summary counts those repeats (a repeat is a duplicate for the receiver: 200, not 202).

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local prefix, path = args[1], args[2]
  pool = {}
  for line in io.lines(prefix .. "." .. tid) do
    local id, ts, sig, body = line:match("^(%S+)\t(%S+)\t(%S+)\t(.*)$")
    pool[#pool + 1] = wrk.format("POST", path, {
      ["Content-Type"] = "application/json",
      ["webhook-id"] = id,
      ["webhook-timestamp"] = ts,
      ["webhook-signature"] = sig,
    }, body)
  end
  size = #pool
  calls = 0
end

function request()
  calls = calls + 1
  return pool[(calls - 1) % size + 1]
end

function done(summary, latency, requests)
  local calls_total, size_total, reused = 0, 0, 0
  for _, thread in ipairs(threads) do
    local c, s = thread:get("calls"), thread:get("size")
    calls_total = calls_total + c
    size_total = size_total + s
    if c > s then reused = reused + c - s end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "status_errors": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"pool": %d, "reused": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.status, e.connect, e.read,
    e.write, e.timeout, size_total, reused))
end
