#!/usr/bin/env bash
# 41-html-chromium.sh - `ldprof trace show --html` in a real browser:
#
#   (a) a trace zaqard produced under the preload, rendered with --html and
#       loaded in Debian's headless Chromium: the DOM after the page's
#       scripts ran has one script-created row (data-span-id) for every span
#       id of `ldprof trace show --json`, the stats table has the dump's
#       categories with the same counts and ms, #span=<id> opens that
#       span's details; the page asks for nothing on the network (CSP, no
#       URL in src/href); a screenshot is taken and kept as an artifact in
#       $LDPROF_BUILD/artifacts/41-html-chromium/;
#   (b) a synthetic trace of 10000 spans (8-ary tree, error spans, span
#       names that are HTML/script injections) written into Redis in
#       OSProfiler's layout and rendered from there (--redis --html): every
#       row is there, error rows are marked, no injected element exists.
#
# Skips (77) only when chromium is not installed.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres
ldprof_need
CHROMIUM=$(command -v chromium || true)
[ -n "$CHROMIUM" ] || { echo "SKIP: chromium is not installed (apt-get install chromium)"; exit 77; }
/usr/bin/python3 -c 'import redis' 2>/dev/null || { REQ="(python3-redis)" STATUS="" BODY=""; fail "python3-redis is not installed"; }

ART="$LDPROF_BUILD/artifacts/41-html-chromium"
mkdir -p "$ART" || fail "cannot create $ART"
KEY="k41-$E2E_ID"
SVC="zq-api-41"
REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}
RURI="$REDIS_BASE/11"

# chrome ARGS... URL: headless Chromium with a private profile, bounded.
chrome() {
    timeout --kill-after=10 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu \
        --disable-background-networking --no-first-run --user-data-dir="$E2E_TMP/chrome-profile" "$@"
}

# the span ids of a DOM dump's rows, sorted
dom_ids() { grep -o 'data-span-id="[^"]*"' "$1" | sed 's/^data-span-id="//; s/"$//' | sort; }

# ------------------------------------------------------------------ (a)
step "(a) a traced request to zaqard under the preload"
collector_start main
preload_wrapper "$E2E_TMP/wrap.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_HMAC_KEYS="$KEY" \
    LDPROF_SERVICE="$SVC" LDPROF_PROJECT="proj-$E2E_ID"
ZAQARD_WRAPPER="$E2E_TMP/wrap.sh" zaqard_start zq --pool "r1=$REDIS_BASE/8" --threads 2
trace_headers "$KEY"
BASE=$TH_BASE
Q="q41-$E2E_ID"
PATH_="/v2/queues/$Q/messages"
req "${TH[@]}" POST "$PATH_" '{"messages": [{"ttl": 300, "body": {"event": "e2e-41"}}]}'
expect_status 201
wait_dump "$BASE" 1 15
sleep 0.6
collector_stop main
zaqard_stop zq

step "(a) ldprof trace show --html"
"$LDPROF_CLI" trace show "$BASE" --dir "$COLL_DIR" --html >"$E2E_TMP/trace.html" 2>"$E2E_TMP/html.err" ||
    { REQ="ldprof trace show $BASE --html" STATUS="" BODY=$(cat "$E2E_TMP/html.err"); fail "trace show --html failed"; }
"$LDPROF_CLI" trace show "$BASE" --dir "$COLL_DIR" --json >"$E2E_TMP/trace.json" ||
    fail "trace show --json failed"
jq -r '.. | objects | select(has("trace_id") and has("children")) | .trace_id' "$E2E_TMP/trace.json" | sort >"$E2E_TMP/want.ids"
NSP=$(wc -l <"$E2E_TMP/want.ids")
echo "trace $BASE: $NSP spans, page $(wc -c <"$E2E_TMP/trace.html") bytes"
REQ="(the page $E2E_TMP/trace.html)" STATUS="" BODY=$(head -c 600 "$E2E_TMP/trace.html")
[ "$NSP" -ge 2 ] || fail "expected the wsgi span and driver spans, got $NSP spans"
grep -q "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'\">" "$E2E_TMP/trace.html" ||
    fail "no Content-Security-Policy meta tag with default-src 'none'"
grep -Eiq '(src|href)[[:space:]]*=|url\(|@import' "$E2E_TMP/trace.html" &&
    fail "the page has a src/href attribute, url() or @import: $(grep -Eio '.{0,40}((src|href)[[:space:]]*=|url\(|@import).{0,60}' "$E2E_TMP/trace.html" | head -3)"
# rows exist only once the script has run
grep -q 'data-span-id=' "$E2E_TMP/trace.html" && fail "the page's HTML already has rows: they must be created by its script"
cp "$E2E_TMP/trace.html" "$ART/trace.html"

step "(a) headless Chromium: the DOM after the scripts ran has a row per span"
chrome --dump-dom "file://$E2E_TMP/trace.html" >"$E2E_TMP/dom.html" 2>"$E2E_TMP/chrome.err" ||
    { REQ="chromium --dump-dom" STATUS="" BODY=$(tail -5 "$E2E_TMP/chrome.err"); fail "chromium --dump-dom failed"; }
REQ="chromium --dump-dom file://$E2E_TMP/trace.html" STATUS="" BODY=$(head -c 1500 "$E2E_TMP/dom.html")
grep -q "data-rendered=\"$NSP\"" "$E2E_TMP/dom.html" || fail "the page's script did not finish (no data-rendered=\"$NSP\")"
dom_ids "$E2E_TMP/dom.html" >"$E2E_TMP/dom.ids"
diff "$E2E_TMP/want.ids" "$E2E_TMP/dom.ids" >"$E2E_TMP/ids.diff" ||
    { BODY=$(head -20 "$E2E_TMP/ids.diff"); fail "the rows' data-span-id differ from the trace's span ids (< trace, > DOM)"; }
echo "$NSP rows, one per span id"
grep -q '<title>ldprof trace '"$BASE"'</title>' "$E2E_TMP/dom.html" || fail "no title with the trace id"
# the wsgi row shows the request
grep -Eq "<span class=\"sn\">wsgi</span><span class=\"where\"> \[$SVC@[^]]*\]</span><span class=\"det\">POST $PATH_</span>" "$E2E_TMP/dom.html" ||
    fail "no wsgi row with its service and 'POST $PATH_'"

step "(a) the stats table: the dump's categories, counts and total ms"
jq -r '.stats | to_entries[] | "\(.key) \(.value.count) \(.value.duration)"' "$E2E_TMP/trace.json" >"$E2E_TMP/stats.want"
[ -s "$E2E_TMP/stats.want" ] || fail "the dump has no stats"
while read -r cat count ms; do
    grep -q "<tr data-category=\"$cat\"><td class=\"cat\">$cat</td><td class=\"count\">$count</td><td class=\"ms\">$ms</td></tr>" "$E2E_TMP/dom.html" ||
        fail "stats row '$cat: $count, $ms ms' not in the DOM"
done <"$E2E_TMP/stats.want"
[ "$(grep -o '<tr data-category=' "$E2E_TMP/dom.html" | wc -l)" = "$(wc -l <"$E2E_TMP/stats.want")" ] ||
    fail "the DOM has another number of stats rows than the dump's $(wc -l <"$E2E_TMP/stats.want") categories"
sed 's/^/  /' "$E2E_TMP/stats.want"

step "(a) #span=<wsgi id> opens that span's details (every info field)"
WSGI=$(jq -r '[.. | objects | select(.info.name? == "wsgi")][0].trace_id' "$E2E_TMP/trace.json")
chrome --dump-dom "file://$E2E_TMP/trace.html#span=$WSGI" >"$E2E_TMP/dom-d.html" 2>>"$E2E_TMP/chrome.err" ||
    fail "chromium --dump-dom (#span=) failed"
REQ="chromium --dump-dom file://$E2E_TMP/trace.html#span=$WSGI" BODY=""
grep -q "data-details-for=\"$WSGI\"" "$E2E_TMP/dom-d.html" || fail "no details element for $WSGI"
details=$(grep -o "data-details-for=\"$WSGI\".*" "$E2E_TMP/dom-d.html" | head -c 20000)
for kv in "request.path</td><td class=\"v\">$PATH_<" "request.method</td><td class=\"v\">POST<" \
    "trace_id</td><td class=\"v\">$WSGI<" "service</td><td class=\"v\">$SVC<"; do
    grep -qF "$kv" <<<"$details" || { BODY=$(head -c 1500 <<<"$details"); fail "details lack '$kv'"; }
done

step "(a) the controls work: collapse/expand a subtree, details on click, collapse/expand all"
# The page plus a script of this test that clicks as a user would and
# writes what is visible into body[data-test].
{
    sed '/^<\/body>$/,$d' "$E2E_TMP/trace.html"
    cat <<'EOF'
<script>
(function () {
  var r = [], rows = document.querySelectorAll(".row");
  function vis() {
    return Array.prototype.filter.call(rows, function (e) { return !e.hidden; }).length;
  }
  function det() { return document.querySelectorAll(".details:not([hidden])").length; }
  r.push("rows=" + rows.length, "visible=" + vis());
  rows[0].querySelector(".tog").click();
  r.push("collapsed=" + vis());
  rows[0].querySelector(".tog").click();
  r.push("expanded=" + vis());
  rows[1].querySelector(".name").click();
  r.push("details=" + det());
  document.getElementById("collapse").click();
  r.push("collapse_all=" + vis() + "/" + det());
  document.getElementById("expand").click();
  r.push("expand_all=" + vis() + "/" + det());
  document.body.setAttribute("data-test", r.join(" "));
})();
</script>
</body>
</html>
EOF
} >"$E2E_TMP/clicks.html"
S0=$(jq '[.children[0] | .. | objects | select(has("trace_id") and has("children"))] | length' "$E2E_TMP/trace.json")
TOP=$(jq '.children | length' "$E2E_TMP/trace.json")
want="rows=$NSP visible=$NSP collapsed=$((NSP - S0 + 1)) expanded=$NSP details=1 collapse_all=$TOP/0 expand_all=$NSP/1"
chrome --dump-dom "file://$E2E_TMP/clicks.html" >"$E2E_TMP/dom-c.html" 2>>"$E2E_TMP/chrome.err" ||
    fail "chromium --dump-dom (clicks) failed"
got=$(grep -o 'data-test="[^"]*"' "$E2E_TMP/dom-c.html" | sed 's/^data-test="//; s/"$//')
REQ="chromium --dump-dom file://$E2E_TMP/clicks.html" BODY=""
[ "$got" = "$want" ] || fail "after the clicks: expected '$want', got '$got'"
echo "$got"

step "(a) screenshot (kept as an artifact)"
rm -f "$ART/trace.png"
chrome --screenshot="$ART/trace.png" --window-size=1400,1000 "file://$E2E_TMP/trace.html" \
    >"$E2E_TMP/shot.out" 2>>"$E2E_TMP/chrome.err" || { REQ="chromium --screenshot" BODY=$(tail -5 "$E2E_TMP/chrome.err"); fail "chromium --screenshot failed"; }
# a PNG (signature, IHDR) of 1400x1000 with something drawn (not a blank page)
/usr/bin/python3 - "$ART/trace.png" <<'PY' || fail "$ART/trace.png is not a 1400x1000 PNG of a rendered page"
import struct, sys, zlib
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
assert d[12:16] == b"IHDR", "no IHDR"
w, h = struct.unpack(">II", d[16:24])
assert (w, h) == (1400, 1000), (w, h)
assert len(d) > 20000, "only %d bytes: a blank page?" % len(d)
print("PNG %dx%d, %d bytes" % (w, h, len(d)))
PY
echo "artifact: $ART/trace.png"

# ------------------------------------------------------------------ (b)
step "(b) 10000 spans written into Redis in OSProfiler's layout"
BIG=$(new_uuid)
on_exit "redis-cli -u '$RURI' DEL 'osprofiler_opt:$BIG' >/dev/null 2>&1"
/usr/bin/python3 - "$RURI" "$BIG" 10000 >"$E2E_TMP/big.want" 2>"$E2E_TMP/gen.err" <<'PY' ||
import datetime, json, sys, uuid
import redis
uri, base, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = datetime.datetime(2026, 1, 2, 3, 4, 5)
ts = lambda us: (t0 + datetime.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%f")
ids = [str(uuid.uuid4()) for _ in range(n)]
evil = "</script><img src=x onerror=alert(1)>"
evs, errors = [], 0
for i in range(n):
    parent = base if i == 0 else ids[(i - 1) // 8]
    name = "wsgi" if i == 0 else evil if i % 7 == 0 else "db" if i % 2 else "redis"
    common = {"base_id": base, "trace_id": ids[i], "parent_id": parent,
              "project": "p41", "service": "<b>svc</b>"}
    stop = {"host": "h41"}
    if i % 97 == 5:
        stop = {"etype": "E\u2028rr", "message": "</script><script>alert(2)</script>", "host": "h41"}
        errors += 1
    start_us, stop_us = i * 10, (n * 10 if i == 0 else i * 10 + 5)
    evs.append(dict(name=name + "-start", timestamp=ts(start_us), info={"k": evil, "host": "h41"}, **common))
    evs.append(dict(name=name + "-stop", timestamp=ts(stop_us), info=stop, **common))
evs.sort(key=lambda e: e["timestamp"])
r = redis.Redis.from_url(uri)
p = r.pipeline()
for e in evs:
    p.lpush("osprofiler_opt:" + base, json.dumps(e))
p.execute()
print(errors)
print("\n".join(sorted(ids)))
PY
    { REQ="(python3 generator)" STATUS="" BODY=$(cat "$E2E_TMP/gen.err"); fail "could not write the synthetic trace"; }
BIG_ERRORS=$(head -n 1 "$E2E_TMP/big.want")
tail -n +2 "$E2E_TMP/big.want" >"$E2E_TMP/big.ids"
"$LDPROF_CLI" trace show --redis "$RURI" "$BIG" --html >"$E2E_TMP/big.html" 2>"$E2E_TMP/big.err" ||
    { REQ="ldprof trace show --redis $RURI $BIG --html" STATUS="" BODY=$(cat "$E2E_TMP/big.err"); fail "trace show --redis --html failed"; }
echo "page: $(wc -c <"$E2E_TMP/big.html") bytes, $BIG_ERRORS error spans"
REQ="(the page $E2E_TMP/big.html)" STATUS="" BODY=""
[ "$(grep -ci '</script' "$E2E_TMP/big.html")" = 2 ] || fail "an injected </script> survived in the page"

step "(b) headless Chromium renders every one of the 10000 rows"
chrome --dump-dom "file://$E2E_TMP/big.html" >"$E2E_TMP/big-dom.html" 2>>"$E2E_TMP/chrome.err" ||
    { REQ="chromium --dump-dom (big)" BODY=$(tail -5 "$E2E_TMP/chrome.err"); fail "chromium --dump-dom failed on the big trace"; }
REQ="chromium --dump-dom file://$E2E_TMP/big.html" BODY=""
grep -q 'data-rendered="10000"' "$E2E_TMP/big-dom.html" || fail "the script did not finish rendering 10000 spans"
dom_ids "$E2E_TMP/big-dom.html" | diff -q "$E2E_TMP/big.ids" - >/dev/null ||
    fail "the rows' ids differ from the 10000 span ids"
[ "$(grep -o '<div class="row err"' "$E2E_TMP/big-dom.html" | wc -l)" = "$BIG_ERRORS" ] ||
    fail "expected $BIG_ERRORS error rows, got $(grep -o '<div class="row err"' "$E2E_TMP/big-dom.html" | wc -l)"
# the injections are text: escaped in the serialised DOM, no element made of them
grep -Eiq '<img|<b>svc|alert\(2\)</script>' "$E2E_TMP/big-dom.html" && fail "an injected element exists in the DOM"
grep -q '<span class="sn">&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;</span>' "$E2E_TMP/big-dom.html" ||
    fail "the injected span name is not shown as text"
echo "10000 rows, $BIG_ERRORS error rows; artifacts in $ART"
