-- wrk script: GET $LIST_PATH (default /) with a USER-TOKEN header taken in turn from a token
-- file (one per line, or a CSV whose first line names a `token` column), each thread starting
-- at a different place in it, so the load is spread over every token in the file.
--
--   TOKENS=FILE LIST_PATH=/ wrk -t2 -c64 -d20s -s bench/wrk/tokens.lua http://127.0.0.1:5001
--
-- done() prints one machine-readable line in bench-load's format (milliseconds; errors are
-- connection errors, timeouts and answers other than 2xx/3xx):
--   LOAD name=item_list_wrk requests=.. errors=.. rps=.. p50=.. p95=.. p99=.. max=.. secs=..

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local tokens = {}
local i = 1
local path = os.getenv("LIST_PATH") or "/"

function init(args)
  local file = os.getenv("TOKENS")
  if not file then error("TOKENS (a token file) is not set") end
  local col = 1
  local first = true
  for line in io.lines(file) do
    if line ~= "" then
      local cols = {}
      for c in string.gmatch(line, "([^,]+)") do table.insert(cols, c) end
      if first then
        first = false
        for k, c in ipairs(cols) do if c == "token" then col = k end end
        if cols[col] ~= "token" then table.insert(tokens, cols[col]) end
      else
        table.insert(tokens, cols[col])
      end
    end
  end
  if #tokens == 0 then error(file .. " has no tokens") end
  -- threads start evenly spread over the file
  i = math.floor(#tokens * id / counter_hint()) + 1
end

-- the number of threads is only known in the main state; 2 unless WRK_THREADS says otherwise
function counter_hint()
  return tonumber(os.getenv("WRK_THREADS") or "2")
end

function request()
  local t = tokens[i]
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format("GET", path, { ["USER-TOKEN"] = t })
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    "LOAD name=item_list_wrk requests=%d errors=%d rps=%.1f p50=%.3f p95=%.3f p99=%.3f max=%.3f secs=%.2f\n",
    summary.requests, errors, summary.requests / secs, latency:percentile(50) / 1e3,
    latency:percentile(95) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3, secs))
end
