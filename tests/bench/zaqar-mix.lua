-- zaqar-mix.lua - wrk script for tests/bench/server.sh: a mixed Zaqar v2
-- message workload against tests/zaqard whose queues stay bounded.
--
-- Each wrk thread has a queue of its own (project $BENCH_PROJECT, queue
-- "q<thread>") and cycles through eight requests:
--
--   1 POST   /messages          two messages (about 100 bytes each)
--   2 GET    /messages?echo=true&include_claimed=true&limit=5
--   3 POST   /claims?limit=2    {"ttl": 60, "grace": 60}
--   4 GET    /messages/ID       a message this thread claimed (else a list)
--   5 DELETE /messages/ID?claim_id=C  a claimed message whose read
--                               (step 4) was answered (else DELETE ?pop=1)
--   6 GET    /messages/ID       as 4
--   7 DELETE /messages/ID?claim_id=C  as 5
--   8 GET    /stats
--
-- Two messages are posted per cycle and up to two removed (deleted under
-- their claim, or popped), so a queue holds a handful of messages however
-- long the run: runs are repeatable.  A message is read and deleted only
-- by the thread that claimed it, so no request races another one: every
-- answer has a known status (201/204 for a claim), and any other status is
-- counted as an error and printed by done() ("errors N"); server.sh fails
-- a run with errors.  The state between the steps (claimed, then read ids)
-- is kept per thread and advanced by the answers (a message becomes
-- "claimed" when the claim is answered, "read" when its GET is), since
-- with several connections per thread the steps of one cycle go out on
-- different connections and may be answered in another order.
--
-- Traced runs: BENCH_HEADERS names a file of "X-Trace-Info X-Trace-HMAC"
-- lines (each pair a trace of its own); every request takes the next pair,
-- each thread starting at a different offset, wrapping around at the end.
-- Unset or empty: no trace headers.
--
-- Environment: BENCH_PROJECT (X-Project-ID), BENCH_CLIENT (Client-ID,
-- a UUID), BENCH_HEADERS (optional).

local project = os.getenv("BENCH_PROJECT") or "bench"
local client = os.getenv("BENCH_CLIENT") or "3b0b7a4e-1d5c-4e8a-9f27-6c1e2a9d0b11"
local threads = {}
local counter = 0

function setup(thread)
    thread:set("tid", counter)
    counter = counter + 1
    table.insert(threads, thread)
end

local base, hdr, pairs_, npairs, pi
local op = 0
local claimed, claimed_h, claimed_t = {}, 1, 0 -- FIFO of {id, cid}: claimed, not yet read
local reading = {}                             -- id -> cid: being read
local read_, read_h, read_t = {}, 1, 0         -- FIFO of {id, cid}: read, not yet deleted
local FIFO_MAX = 256
local body_post, body_claim
-- results, read by done() through thread:get
nerr, nreq, nfallback, lasterr = 0, 0, 0, ""

function init(args)
    base = "/v2/queues/q" .. tostring(tid)
    hdr = {["X-Project-ID"] = project, ["Client-ID"] = client,
           ["Content-Type"] = "application/json"}
    local hf = os.getenv("BENCH_HEADERS")
    if hf and hf ~= "" then
        pairs_ = {}
        for line in io.lines(hf) do
            local info, mac = line:match("^(%S+) (%S+)$")
            if info then pairs_[#pairs_ + 1] = {info, mac} end
        end
        npairs = #pairs_
        if npairs == 0 then error("no header pairs in " .. hf) end
        pi = (tid * 7919) % npairs
    end
    local m = '{"body": {"event": "order.created", "order": 1234567, "items": ["a", "b", "c"], "note": "bench message body"}, "ttl": 300}'
    body_post = '{"messages": [' .. m .. ', ' .. m .. ']}'
    body_claim = '{"ttl": 60, "grace": 60}'
end

local function fifo_push(q, t, h, v)
    t = t + 1
    q[t] = v
    if t - h + 1 > FIFO_MAX then
        q[h] = nil
        h = h + 1
    end
    return t, h
end

local function req(method, path, body)
    if npairs then
        local p = pairs_[pi + 1]
        pi = (pi + 1) % npairs
        hdr["X-Trace-Info"] = p[1]
        hdr["X-Trace-HMAC"] = p[2]
    end
    return wrk.format(method, path, hdr, body)
end

local function build()
    op = op % 8 + 1
    if op == 1 then
        return req("POST", base .. "/messages", body_post)
    elseif op == 2 then
        return req("GET", base .. "/messages?echo=true&include_claimed=true&limit=5", nil)
    elseif op == 3 then
        return req("POST", base .. "/claims?limit=2", body_claim)
    elseif op == 4 or op == 6 then
        if claimed_h <= claimed_t then
            local v = claimed[claimed_h]
            claimed[claimed_h] = nil
            claimed_h = claimed_h + 1
            reading[v[1]] = v[2]
            return req("GET", base .. "/messages/" .. v[1], nil)
        end
        nfallback = nfallback + 1
        return req("GET", base .. "/messages?echo=true&limit=5", nil)
    elseif op == 5 or op == 7 then
        if read_h <= read_t then
            local v = read_[read_h]
            read_[read_h] = nil
            read_h = read_h + 1
            return req("DELETE", base .. "/messages/" .. v[1] .. "?claim_id=" .. v[2], nil)
        end
        nfallback = nfallback + 1
        return req("DELETE", base .. "/messages?pop=1", nil)
    else
        return req("GET", base .. "/stats", nil)
    end
end

-- Answers of different connections may come back in another order than
-- the requests went out, so a response is checked by its status alone:
-- 200, 201 and 204 are the only ones this workload can get.
function request()
    nreq = nreq + 1
    return build()
end

function response(status, headers, body)
    if status == 201 then
        local loc = headers["Location"] or headers["location"]
        if loc then
            local cid = loc:match("/claims/([%w_-]+)$")
            if cid then
                for id in body:gmatch("/messages/([%w_-]+)\"") do
                    claimed_t, claimed_h = fifo_push(claimed, claimed_t, claimed_h, {id, cid})
                end
            end
        end
    elseif status == 200 then
        -- a message read (not a list): now it may be deleted
        local id = body:match('^{"id": ?"([%w_-]+)"')
        local cid = id and reading[id]
        if cid then
            reading[id] = nil
            read_t, read_h = fifo_push(read_, read_t, read_h, {id, cid})
        end
    elseif status ~= 204 then
        nerr = nerr + 1
        if lasterr == "" then
            lasterr = tostring(status) .. " " .. body:sub(1, 200)
        end
    end
end

function done(summary, latency, requests)
    local e, n, f, le = 0, 0, 0, ""
    for _, t in ipairs(threads) do
        e = e + t:get("nerr")
        n = n + t:get("nreq")
        f = f + t:get("nfallback")
        local l = t:get("lasterr")
        if le == "" and l and l ~= "" then le = l end
    end
    -- one machine-readable line for server.sh (latencies in microseconds)
    io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d non2xx=%d sockerr=%d fallbacks=%d generated=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        f, n))
    if le ~= "" then
        io.write("BENCH first_error=" .. le:gsub("\n", " ") .. "\n")
    end
end
