-- wrk script for bench/run.sh. WRK_MODE picks the request:
--   rest    GET /users/{id}
--   cjson   POST /users.v1.UserService/GetUser, Connect JSON
--   cget    GET /users.v1.UserService/GetUser?encoding=json&message=...
--   create  POST /users with a unique email
--   path    GET WRK_PATH (a fixed request, e.g. a ListUsers page)
-- ids come from WRK_IDS (one a line), picked at random per request.
-- WRK_HEADER ("Name: value", e.g. "Authorization: Bearer ...") is sent with
-- every request when set. (wrk's -H would not do: wrk.format uses wrk.headers
-- only when a request passes no headers of its own.)
-- done() prints one machine-readable WRK_RESULT line.
local mode = os.getenv("WRK_MODE") or "rest"
local ids = {}
local fixed = os.getenv("WRK_PATH") or "/"
local nonce = os.getenv("WRK_NONCE") or tostring(os.time())
local counter = 0
local threads = {}
local next_tid = 0

if mode ~= "create" and mode ~= "path" then
  for line in io.lines(os.getenv("WRK_IDS")) do
    if #line > 0 then ids[#ids + 1] = line end
  end
end

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end

-- Two header tables, built once and reused (wrk.format sets Host and
-- Content-Length in the table it is given, as it does in wrk.headers).
local plain_headers = {}
local json_headers = { ["Content-Type"] = "application/json" }
do
  local h = os.getenv("WRK_HEADER") or ""
  if h ~= "" then
    local name, value = h:match("^%s*([^:]-)%s*:%s*(.-)%s*$")
    if name == nil or name == "" then
      error("WRK_HEADER must be \"Name: value\", got " .. h)
    end
    plain_headers[name] = value
    json_headers[name] = value
  end
end

function request()
  if mode == "rest" then
    return wrk.format("GET", "/users/" .. ids[math.random(#ids)], plain_headers)
  elseif mode == "cjson" then
    return wrk.format("POST", "/users.v1.UserService/GetUser", json_headers,
      '{"id":"' .. ids[math.random(#ids)] .. '"}')
  elseif mode == "cget" then
    return wrk.format("GET", "/users.v1.UserService/GetUser?encoding=json&message=%7B%22id%22%3A%22"
      .. ids[math.random(#ids)] .. "%22%7D", plain_headers)
  elseif mode == "create" then
    counter = counter + 1
    return wrk.format("POST", "/users", json_headers,
      '{"email":"w' .. nonce .. '-' .. tostring(tid) .. '-' .. counter .. '@example.com","full_name":"Bench User"}')
  else
    return wrk.format("GET", fixed, plain_headers)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT requests=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
