-- wrk script for benches/oauth: POST a client_credentials token request with HTTP Basic
-- client authentication, and count the answers that are tokens.
--
--   OAUTHBENCH_AUTH='Basic <base64(id:secret)>' OAUTHBENCH_BODY='grant_type=client_credentials' \
--     wrk -t1 -c16 -d10s -s token.lua http://127.0.0.1:PORT/oauth2/token
--
-- A response counts as a token ("ok") when its status is 200 and its body contains
-- "access_token"; anything else is "bad" (the first one is kept for the error message).
-- done() prints, on stdout:
--   OAUTHBENCH ok=<n> bad=<n> requests=<n> duration_us=<n> connect=<n> read=<n> write=<n> status=<n> timeout=<n>
--   OAUTHBENCH_FIRST_BAD <status> <first 200 bytes of the body, newlines removed>   (only if bad > 0)
-- bench.py fails the measurement when bad > 0 or any socket error occurred.

wrk.method = "POST"
wrk.body = os.getenv("OAUTHBENCH_BODY") or "grant_type=client_credentials"
wrk.headers["Authorization"] = os.getenv("OAUTHBENCH_AUTH")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   ok = 0
   bad = 0
   first_bad = ""
end

function response(status, headers, body)
   if status == 200 and body and string.find(body, "\"access_token\"", 1, true) then
      ok = ok + 1
   else
      bad = bad + 1
      if first_bad == "" then
         first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 200)
      end
   end
end

function done(summary, latency, requests)
   local o, b, fb = 0, 0, ""
   for _, t in ipairs(threads) do
      o = o + (t:get("ok") or 0)
      b = b + (t:get("bad") or 0)
      local f = t:get("first_bad") or ""
      if fb == "" and f ~= "" then fb = f end
   end
   local e = summary.errors
   io.write(string.format(
      "OAUTHBENCH ok=%d bad=%d requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
      o, b, summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
   if fb ~= "" then
      io.write("OAUTHBENCH_FIRST_BAD " .. string.gsub(fb, "[\r\n]", " ") .. "\n")
   end
end
