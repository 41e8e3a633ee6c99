#!/usr/bin/env bash
# 22-transparency.sh - the preload changes nothing the client can see.
#
# One scripted scenario (queue create/replace/get, post, list, get, claim,
# claim get/patch, delete with and without the claim, stats, pop, queue
# listing, keep-alive requests, error cases, queue delete) is run against
# four zaqards:
#
#   plain     no preload at all (the reference)
#   untraced  under the preload, requests without trace headers
#   traced    under the preload, every request with signed trace headers
#   disabled  under the preload with LDPROF_ENABLED=0, signed headers
#
# and the four transcripts (status, response headers, bodies) must be equal
# after normalisation of what legitimately differs from run to run (see
# normalise below).  Besides: `untraced` and `disabled` leave no dump and
# `disabled` sends not a single datagram to its collector; `traced` gives
# exactly one dump holding one wsgi span per request, in request order.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres
ldprof_need
PY=${LDPROF_PYTHON:-/usr/bin/python3}
KEY="k22-$E2E_ID"
REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
BASE_PROJECT=$PROJECT
: >"$E2E_TMP/empty.ini"

XH=()          # extra request arguments: the trace headers of a run
OUT=""         # this run's transcript directory
NSTEP=0
# rec LABEL: file the last response (req's STATUS/HEADERS/BODY) under LABEL
rec() {
    NSTEP=$((NSTEP + 1))
    local f
    f=$(printf '%s/%03d' "$OUT" "$NSTEP")
    printf '%s' "$1" >"$f.label"
    printf '%s' "$STATUS" >"$f.status"
    printf '%s' "$HEADERS" >"$f.hdr"
    printf '%s' "$BODY" >"$f.body"
}
# r LABEL [REQ ARGS]: one request of the scenario, with this run's headers
r() {
    local label=$1
    shift
    req "${XH[@]}" "$@"
    [ -n "$STATUS" ] && [ "$STATUS" != 000 ] || fail "[$RUN/$label] no HTTP answer"
    rec "$label"
    # the request as zaqard sees it, for the traced run's span check
    local a m="" p=""
    for a in "$@"; do
        case $a in
        GET | PUT | POST | PATCH | DELETE | HEAD) [ -z "$m" ] && m=$a ;;
        /*) [ -n "$m" ] && [ -z "$p" ] && p=$a ;;
        esac
    done
    printf '%s %s\n' "$m" "$p" >>"$OUT.requests"
}

scenario() {
    local q=tq id1 id2 id3 cid
    r home GET /v2
    r queue-create PUT "/v2/queues/$q" '{"purpose": "e2e-22", "n": 1}'
    r queue-replace PUT "/v2/queues/$q" '{"purpose": "e2e-22", "n": 2}'
    r queue-get GET "/v2/queues/$q"
    r post POST "/v2/queues/$q/messages" \
        '{"messages": [{"ttl": 300, "body": {"k": "one"}}, {"body": [2]}, {"ttl": 600, "body": "three"}]}'
    [ "$STATUS" = 201 ] || fail "[$RUN] post: expected 201"
    read -r id1 id2 id3 < <(jq -r '[.resources[] | split("/") | last] | join(" ")' <<<"$BODY")
    r list GET "/v2/queues/$q/messages?echo=true&limit=2"
    r list-next GET "/v2/queues/$q/messages?echo=true&limit=2&marker=$(jq -r '.links[0].href | capture("marker=(?<m>[^&]*)").m' <<<"$BODY")"
    r list-not-echo GET "/v2/queues/$q/messages"
    r get-one GET "/v2/queues/$q/messages/$id1"
    r claim POST "/v2/queues/$q/claims?limit=2" '{"ttl": 120, "grace": 60}'
    [ "$STATUS" = 201 ] || fail "[$RUN] claim: expected 201"
    cid=$(header_value Location)
    cid=${cid##*/}
    r claim-get GET "/v2/queues/$q/claims/$cid"
    r claim-patch PATCH "/v2/queues/$q/claims/$cid" '{"ttl": 300}'
    r claim-get-2 GET "/v2/queues/$q/claims/$cid"
    r delete-claimed-no-claim DELETE "/v2/queues/$q/messages/$id1"
    r delete-claimed-with-claim DELETE "/v2/queues/$q/messages/$id1?claim_id=$cid"
    r get-deleted GET "/v2/queues/$q/messages/$id1"
    r stats GET "/v2/queues/$q/stats"
    r claim-release DELETE "/v2/queues/$q/claims/$cid"
    r claim-get-released GET "/v2/queues/$q/claims/$cid"
    r claim-again POST "/v2/queues/$q/claims?limit=20" '{}'
    r claim-release-2 DELETE "/v2/queues/$q/claims/$(header_value Location | sed 's|.*/||')"
    # keep-alive: three requests on one connection
    local urls=("$URL/v2/queues/$q" "$URL/v2/queues/$q/stats" "$URL/v2/queues/$q/messages/$id3")
    curl -sS --max-time 20 "${XH[@]}" -H "Client-ID: $CLIENT_ID" -H "X-Project-ID: $PROJECT" \
        -w '\n<%{http_code} connects=%{num_connects}>\n' "${urls[@]}" >"$E2E_TMP/ka.out" 2>&1
    STATUS="keep-alive" HEADERS="" BODY=$(cat "$E2E_TMP/ka.out")
    rec keep-alive
    printf 'GET %s\n' "/v2/queues/$q" "/v2/queues/$q/stats" "/v2/queues/$q/messages/$id3" >>"$OUT.requests"
    r delete-ids DELETE "/v2/queues/$q/messages?ids=$id2"
    r pop DELETE "/v2/queues/$q/messages?pop=1"
    r stats-empty GET "/v2/queues/$q/stats"
    r claim-none-free POST "/v2/queues/$q/claims" '{"ttl": 60}'
    r queue-list GET "/v2/queues?detailed=true"
    r health GET /v2/health
    r health-head HEAD /v2/health
    r ping GET /v2/ping
    # errors
    r err-bad-name PUT /v2/queues/bad.name
    r err-no-queue GET /v2/queues/nosuch
    r err-no-queue-stats GET /v2/queues/nosuch/stats
    r err-method POST "/v2/queues/$q"
    r err-json POST "/v2/queues/$q/messages" '{"messages": ['
    r err-no-client --client "" GET "/v2/queues/$q/messages"
    r err-limit GET "/v2/queues/$q/messages?limit=21"
    r err-route GET /v2/nope
    r err-big-ttl POST "/v2/queues/$q/messages" '{"messages": [{"ttl": 1209601, "body": 1}]}'
    r queue-delete DELETE "/v2/queues/$q"
    r queue-gone GET "/v2/queues/$q"
    r queue-list-empty GET /v2/queues
}

# run_scenario RUN: the scenario against $URL, transcript in $E2E_TMP/RUN
run_scenario() {
    RUN=$1
    OUT="$E2E_TMP/$RUN"
    NSTEP=0
    mkdir -p "$OUT"
    : >"$OUT.requests"
    PROJECT="$BASE_PROJECT-$RUN"
    CLIENT_ID=$(new_uuid)
    scenario
    check
    echo "$RUN: $NSTEP steps, $(wc -l <"$OUT.requests") requests"
}

# normalise RUN: print the transcript with what legitimately differs from
# run to run replaced:
#  - message and claim ids (32 hex digits, random): by ID1, ID2, ... in the
#    order of first appearance in the run, so an id that must recur (a
#    message's href, the claim's Location, the claim's messages) still has
#    to recur at the same places;
#  - "age" (whole seconds since creation: 0 or 1 depending on timing) and
#    "created" (a time stamp): by their type and shape only;
#  - a message "ttl" other than the ones posted (300, 600, 3600) when it is
#    360..480: the claim PATCH (ttl 300, grace 60) stretches a claimed
#    message's ttl to 360 + its age at that moment, which is timing;
#  - the keep-alive step's three answers are split and compared like the
#    others (plus their status and curl's connection count: 1, 0, 0);
#  - response headers: Date (wall clock) dropped; Content-Length checked
#    against the body here (it follows the body, whose normalised form is
#    compared) and then dropped, since ages of 9 vs 10 s would change it.
# Everything else must be equal byte for byte: status, header names and
# order, Content-Type, Allow, Location (normalised ids), bodies, key order.
normalise() {
    "$PY" - "$E2E_TMP/$1" <<'PY'
import glob, json, os, re, sys
d = sys.argv[1]
ids = {}
def idmap(m):
    return ids.setdefault(m.group(0), "ID%d" % (len(ids) + 1))
HEX = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
POSTED_TTLS = (300, 600, 3600)  # what the scenario posts (3600: the default)
def norm(v, key=None):
    if isinstance(v, dict):
        return {k: norm(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if key == "age":
        return "<age: int >= 0>" if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 120 else v
    if key == "ttl" and v not in POSTED_TTLS and isinstance(v, int) and 360 <= v <= 360 + 120:
        # a claimed message's ttl stretched to outlive its claim: the claim's
        # ttl 300 + grace 60 from the PATCH on, so 360 + its age then
        return "<ttl stretched by the claim: 360 + age>"
    if key == "created" and isinstance(v, str) and TS.match(v):
        return "<created: timestamp>"
    if isinstance(v, str):
        return HEX.sub(idmap, v)
    return v
for f in sorted(glob.glob(os.path.join(d, "*.label"))):
    n = f[:-6]
    label = open(f).read()
    status = open(n + ".status").read()
    body = open(n + ".body", encoding="utf-8", errors="replace").read()
    hdrs = []
    for line in open(n + ".hdr").read().split("\n"):
        if not line or line.startswith("HTTP/"):
            if line.startswith("HTTP/"):
                hdrs.append(["status-line", line])
            continue
        name, _, value = line.partition(":")
        name, value = name.lower(), value.strip()
        if name == "date":
            continue
        if name == "content-length":
            if label != "health-head" and int(value) != len(body.encode("utf-8")):
                value = "MISMATCH: %s for a body of %d bytes" % (value, len(body.encode("utf-8")))
            else:
                continue
        hdrs.append([name, HEX.sub(idmap, value)])
    def parse(text):
        try:
            return norm(json.loads(text)) if text else ""
        except ValueError:
            return "(not JSON) " + HEX.sub(idmap, text)
    if label == "keep-alive":  # BODY1\n<CODE connects=N>\nBODY2\n<...>\n...
        parts = re.split(r"\n<(\d+) connects=(\d+)>\n?", body)
        b = [{"body": parse(parts[i]), "status": parts[i + 1], "connects": parts[i + 2]}
             for i in range(0, len(parts) - 1, 3)] + ([parse(parts[-1])] if parts[-1] else [])
    else:
        b = parse(body)
    print(json.dumps({"step": label, "status": status, "headers": hdrs, "body": b}, ensure_ascii=False))
PY
}

# ------------------------------------------------------------------ plain
step "plain: no preload"
ZAQARD_WRAPPER="" zaqard_start plain --pool "r1=$REDIS_BASE/8" --threads 4
run_scenario plain
zaqard_stop plain
normalise plain >"$E2E_TMP/plain.norm" || fail "normalising the transcript failed"
# the reference itself must look like the API: a sanity check of the scenario
REQ="(plain transcript)" STATUS="" BODY=""
[ "$(jq -r 'select(.step == "post") | .status' "$E2E_TMP/plain.norm")" = 201 ] || fail "reference run: post did not give 201"
[ "$(jq -r 'select(.step == "delete-claimed-no-claim") | .status' "$E2E_TMP/plain.norm")" = 403 ] || fail "reference run: deleting a claimed message gave no 403"
[ "$(jq -c 'select(.step == "stats") | .body.messages | {free, claimed, total}' "$E2E_TMP/plain.norm")" = '{"free":1,"claimed":1,"total":2}' ] ||
    fail "reference run: unexpected stats"
[ "$(cat "$E2E_TMP/plain/"*.body | grep -c 'connects=1>')" = 1 ] && [ "$(cat "$E2E_TMP/plain/"*.body | grep -c 'connects=0>')" = 2 ] ||
    fail "reference run: curl did not reuse its connection for the keep-alive step"

compare() { # compare RUN: its normalised transcript equals the plain one
    normalise "$1" >"$E2E_TMP/$1.norm" || fail "normalising the $1 transcript failed"
    if ! diff -u "$E2E_TMP/plain.norm" "$E2E_TMP/$1.norm" >"$E2E_TMP/$1.diff"; then
        REQ="(transcripts: plain vs $1)" STATUS="" BODY=$(head -c 3000 "$E2E_TMP/$1.diff")
        fail "$1: the client sees something else than without the preload"
    fi
    echo "$1: identical to plain ($(wc -l <"$E2E_TMP/$1.norm") steps)"
}
no_ldprof_lines() { # the preload says nothing on a healthy run
    if grep -n 'ldprof' "${ZQ_LOG[$1]}" >"$E2E_TMP/$1.ldprof-lines"; then
        REQ="(zaqard $1 stderr)" STATUS="" BODY=$(head -c 1000 "$E2E_TMP/$1.ldprof-lines")
        fail "$1: the preload wrote to zaqard's stderr"
    fi
}

# ------------------------------------------------------------------ untraced
step "untraced: under the preload, no trace headers"
collector_start untraced
preload_wrapper "$E2E_TMP/wrap-u.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" LDPROF_CONFIG="$E2E_TMP/empty.ini"
ZAQARD_WRAPPER="$E2E_TMP/wrap-u.sh" zaqard_start untraced --pool "r1=$REDIS_BASE/8" --threads 4
XH=()
run_scenario untraced
zaqard_stop untraced
compare untraced
no_ldprof_lines untraced
collector_stop untraced
REQ="(collector of the untraced run)" STATUS="" BODY=""
[ -z "$(dumps)" ] || fail "untraced run left dumps: $(dumps | tr '\n' ' ')"
jq_expect "$COLL_STATS" '{running, spans, pending: .traces.pending, written: .traces.written}' \
    '{"running": false, "spans": 0, "pending": 0, "written": 0}' "untraced run: collector saw no span"
echo "untraced: no dump, $(jq .datagrams.received "$COLL_STATS") datagrams"

# ------------------------------------------------------------------ traced
step "traced: under the preload, every request signed (one base_id)"
collector_start traced
BASE=$(new_uuid) PARENT=$(new_uuid)
preload_wrapper "$E2E_TMP/wrap-t.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" LDPROF_CONFIG="$E2E_TMP/empty.ini"
ZAQARD_WRAPPER="$E2E_TMP/wrap-t.sh" zaqard_start traced --pool "r1=$REDIS_BASE/8" --threads 4
trace_headers "$KEY" "$BASE" "$PARENT"
XH=("${TH[@]}")
run_scenario traced
XH=()
NREQ=$(wc -l <"$E2E_TMP/traced.requests")
wait_dump "$BASE" "$NREQ" 20
sleep 0.5
zaqard_stop traced
compare traced
no_ldprof_lines traced
collector_stop traced
DUMP="$COLL_DIR/$BASE.json"
[ "$(dumps)" = "$DUMP" ] || { REQ="(collector of the traced run)" STATUS="" BODY=""; fail "expected only $DUMP, got: $(dumps | tr '\n' ' ')"; }
# one wsgi span per request, all children of the header's parent_id, in
# request order (start times), each with the request's method and path
# (driver spans of zaqard's own work may hang below the wsgi spans)
jq_expect "$DUMP" "$JQ_SPANS [core_spans | {name, parent_id, depth, ncore}] | unique" \
    "[{\"name\": \"wsgi\", \"parent_id\": \"$PARENT\", \"depth\": 1, \"ncore\": 0}]" "traced run: only top-level wsgi spans"
dump_sane "$DUMP" "$BASE"
jq_expect "$DUMP" "$JQ_SPANS [core_spans] | length" "$NREQ" "traced run: one wsgi span per request"
jq_expect "$DUMP" "$JQ_SPANS [spans | .trace_id] | (unique | length) == length" true "traced run: distinct span ids"
NSP=$(jq "$JQ_SPANS [spans] | length" "$DUMP")
jq -r "$JQ_SPANS [core_spans] | sort_by(.start.timestamp) | .[] | .start.info.request | \"\(.method) \(.path)\(if .query == \"\" then \"\" else \"?\" + .query end)\"" \
    "$DUMP" >"$E2E_TMP/traced.spans"
if ! diff -u "$E2E_TMP/traced.requests" "$E2E_TMP/traced.spans" >"$E2E_TMP/traced.spans.diff"; then
    REQ="(requests vs wsgi spans)" STATUS="" BODY=$(head -c 3000 "$E2E_TMP/traced.spans.diff")
    fail "traced run: the wsgi spans are not the requests sent"
fi
jq_expect "$COLL_STATS" '{spans, rejected: .datagrams.rejected, dropped}' "{\"spans\": $NSP, \"rejected\": 0, \"dropped\": 0}" "traced run: collector stats"
echo "traced: one dump with $NREQ wsgi spans"

# ------------------------------------------------------------------ disabled
step "disabled: LDPROF_ENABLED=0, signed headers"
collector_start disabled
preload_wrapper "$E2E_TMP/wrap-d.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" LDPROF_ENABLED=0 \
    LDPROF_CONFIG="$E2E_TMP/empty.ini"
ZAQARD_WRAPPER="$E2E_TMP/wrap-d.sh" zaqard_start disabled --pool "r1=$REDIS_BASE/8" --threads 4
DPID=${ZQ_PID[disabled]}
# the preload really is loaded into that process
grep -q "$LDPROF_LIB" "/proc/$DPID/maps" 2>/dev/null || { REQ="(/proc/$DPID/maps)" STATUS="" BODY=""; fail "libldprof.so is not mapped in the disabled zaqard"; }
trace_headers "$KEY" "$(new_uuid)"
XH=("${TH[@]}")
run_scenario disabled
XH=()
sleep 0.5 # more than a flush interval: anything sent would have arrived
zaqard_stop disabled
compare disabled
no_ldprof_lines disabled
collector_stop disabled
REQ="(collector of the disabled run)" STATUS="" BODY=""
[ -z "$(dumps)" ] || fail "disabled run left dumps: $(dumps | tr '\n' ' ')"
# not one datagram from anyone (the zaqard was the only possible sender)
jq_expect "$COLL_STATS" "{running, received: .datagrams.received, spans, from_zaqard: [.senders[] | select(.pid == $DPID)]}" \
    '{"running": false, "received": 0, "spans": 0, "from_zaqard": []}' "disabled run: collector traffic"
echo "disabled: no dump, no datagram"
echo "all four runs gave the same $(wc -l <"$E2E_TMP/plain.norm") answers"
