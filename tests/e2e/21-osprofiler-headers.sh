#!/usr/bin/env bash
# 21-osprofiler-headers.sh - which inbound trace headers start a trace.
#
# Headers made by the real OSProfiler (profiler.init + web.get_trace_id_headers,
# Debian's python3-osprofiler 3.4.3), the vectors of tests/data/header_vectors.json
# (copied from OSProfiler runs) and headers built here with python's hmac are
# sent by plain curl (not preloaded) to zaqard running under the preload.
# Accepted ones must give exactly one dump <base_id>.json with one `wsgi`
# span whose parent_id is the header's; rejected ones must leave no trace at
# all, and no request may see a different answer either way.  Each request
# carries its case name in the query (?case=NAME), so a wrongly accepted case
# is named by the span it produced.
#
# Three zaqards, one collector:
#   one   - no hmac_keys set anywhere: the default key SECRET_KEY
#   multi - LDPROF_HMAC_KEYS="a, KEY ,b" (pieces trimmed)
#   ini   - hmac_keys from a profiler.ini (LDPROF_CONFIG), non-ASCII key too
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_services redis postgres
ldprof_need
PY=${LDPROF_PYTHON:-/usr/bin/python3}
"$PY" -c 'import osprofiler.profiler, osprofiler.web' 2>/dev/null ||
    { echo "skip: $PY cannot import osprofiler (python3-osprofiler)"; exit 77; }
VECTORS=${LDPROF_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/tests/data/header_vectors.json
[ -r "$VECTORS" ] || { REQ="" STATUS="" BODY=""; fail "no $VECTORS"; }
REDIS_BASE=${LDPROF_TEST_REDIS_URI%/*}

collector_start main

step "three zaqards under the preload"
: >"$E2E_TMP/empty.ini" # keeps an /etc/ldprof/profiler.ini out of the way
preload_wrapper "$E2E_TMP/wrap-one.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_CONFIG="$E2E_TMP/empty.ini" \
    LDPROF_SERVICE=zq-one
ZAQARD_WRAPPER="$E2E_TMP/wrap-one.sh" zaqard_start one --pool "r1=$REDIS_BASE/8" --threads 4
preload_wrapper "$E2E_TMP/wrap-multi.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_CONFIG="$E2E_TMP/empty.ini" \
    LDPROF_SERVICE=zq-multi LDPROF_HMAC_KEYS="a, KEY ,b"
ZAQARD_WRAPPER="$E2E_TMP/wrap-multi.sh" zaqard_start multi --pool "r1=$REDIS_BASE/8" --thread-per-connection
cat >"$E2E_TMP/profiler.ini" <<'EOF'
[DEFAULT]
hmac_keys = SECRET_KEY

[profiler]
# vectors V3 (my-key), V4 (key-B of "key-A, key-B ,key-C"), V5 (clé-ключ)
hmac_keys = key-A, key-B ,key-C, other,clé-ключ , my-key
service = zq-ini
EOF
preload_wrapper "$E2E_TMP/wrap-ini.sh" LDPROF_COLLECTOR="$COLL_SOCK" LDPROF_CONFIG="$E2E_TMP/profiler.ini"
ZAQARD_WRAPPER="$E2E_TMP/wrap-ini.sh" zaqard_start ini --pool "r1=$REDIS_BASE/8" --threads 2

step "the cases (python: osprofiler, the vectors, hand-made)"
# One JSON object per line: case, zaq, accept (true/false), base, parent
# (the wsgi span's expected parent_id), info/hmac (null: header left out),
# dup (send X-Trace-Info twice), why.
"$PY" - "$VECTORS" >"$E2E_TMP/cases.jsonl" <<'PY' || { REQ="(case generator)" STATUS="" BODY=""; fail "the case generator failed"; }
import base64, hashlib, hmac, json, sys, uuid
from osprofiler import profiler, web

vec = json.load(open(sys.argv[1]))["header_vectors"]
out = []

def case(name, zaq, accept, info, mac, base=None, parent=None, why="", dup=False):
    if isinstance(info, bytes):
        info = info.decode("ascii")
    out.append(dict(case=name, zaq=zaq, accept=accept, info=info, hmac=mac, base=base,
                    parent=parent or base, dup=dup, why=why))

def b64(obj_text):
    return base64.urlsafe_b64encode(obj_text.encode("utf-8")).decode("ascii")

def sign(key, info):
    return hmac.new(key.encode("utf-8"), info.encode("ascii"), hashlib.sha1).hexdigest()

def signed(key, obj_text):
    i = b64(obj_text)
    return i, sign(key, i)

def osp(key, base=None, parent=None, span=False):
    """Headers from the real OSProfiler; returns (info, hmac, base, parent)."""
    profiler.clean()
    p = profiler.init(key, base_id=base, parent_id=parent)
    if span:
        profiler.start("e2e-open-span")
    h = web.get_trace_id_headers()
    ids = json.loads(base64.urlsafe_b64decode(h["X-Trace-Info"]))
    if span:
        assert ids["parent_id"] == p.get_id() != ids["base_id"]
        profiler.stop()
    profiler.clean()
    return h["X-Trace-Info"].decode("ascii"), h["X-Trace-HMAC"], ids["base_id"], ids["parent_id"]

def u():
    return str(uuid.uuid4())

# --- the real OSProfiler, accepted
i, m, b, p = osp("SECRET_KEY")
case("osp-init", "one", True, i, m, b, p, "profiler.init(key): parent_id == base_id")
i, m, b, p = osp("SECRET_KEY", base=u(), parent=u())
case("osp-ids", "one", True, i, m, b, p, "profiler.init(key, base_id, parent_id)")
i, m, b, p = osp("SECRET_KEY", span=True)
case("osp-span", "one", True, i, m, b, p, "made while a span is open: parent_id = that span")
for key in ("a", "KEY", "b"):
    i, m, b, p = osp(key, base=u(), parent=u())
    case("osp-multi-" + key, "multi", True, i, m, b, p, "signed with one of 'a, KEY ,b'")
i, m, b, p = osp("my-key", base=u(), parent=u())
case("osp-ini-my-key", "ini", True, i, m, b, p, "signed with a key from profiler.ini")

# --- the real OSProfiler, rejected
i, m, b, p = osp("WRONG_KEY", base=u(), parent=u())
case("osp-wrong-key", "one", False, i, m, b, p, "signed with a key the server does not have")
for name, key in (("spaced", " KEY "), ("whole-list", "a, KEY ,b"), ("default", "SECRET_KEY")):
    i, m, b, p = osp(key, base=u(), parent=u())
    case("osp-multi-bad-" + name, "multi", False, i, m, b, p,
         "key %r is not one of the trimmed keys (SECRET_KEY is only the default)" % key)
i, m, b, p = osp("SECRET_KEY", base=u(), parent=u())
case("osp-ini-default-key", "ini", False, i, m, b, p, "profiler.ini's [profiler] keys replace the default")

# --- the vectors: accepted ones where the ids are UUIDs
where = {"SECRET_KEY": "one", "my-key": "ini", "key-A, key-B ,key-C": "ini", "other,clé-ключ": "ini"}
for v in vec["valid"]:
    ids = json.loads(v["x_trace_info_decoded"])
    base, parent = ids["base_id"], ids.get("parent_id") or ids["base_id"]
    try:
        uuid.UUID(base), uuid.UUID(parent)
        ok = True
    except ValueError:
        ok = False  # V8: ids OSProfiler accepts but ldprof cannot carry (docs/limitations.md)
    case(v["id"], where[v["receiver_hmac_keys"]], ok, v["headers"]["X-Trace-Info"],
         v["headers"]["X-Trace-HMAC"], base if ok else None, parent if ok else None,
         v["description"][:70] + ("" if ok else " [non-UUID ids: not traceable by ldprof]"))
# --- the vectors: rejected ones (I9, an empty key list, has no zaqard here)
for v in vec["invalid"]:
    if v["id"] == "I9":
        continue
    zaq = "ini" if v["id"] == "I1" else "one"  # I1: signed with SECRET_KEY, which ini lacks
    h = v["headers"]
    case(v["id"], zaq, False, h.get("X-Trace-Info"), h.get("X-Trace-HMAC"), None, None, v["description"][:70])

# --- hand-made with UUID ids, so that only the tested property can reject them
def two(base, parent):
    return '{"base_id": "%s", "parent_id": "%s"}' % (base, parent)

b, p = u(), u()
i, m = signed("SECRET_KEY", two(b, p))
case("ok-python-hmac", "one", True, i, m, b, p, "python hmac, same as OSProfiler")
b = u()
i, m = signed("SECRET_KEY", '{"base_id": "%s", "parent_id": null}' % b)
case("ok-parent-null", "one", True, i, m, b, b, "parent_id null: parent = base_id (profiler.init)")
b, p = u(), u()
i, m = signed("SECRET_KEY", '{"parent_id": "%s", "hmac_key": "whatever", "base_id": "%s"}' % (p, b))
case("ok-hmac-key-member", "one", True, i, m, b, p, "an hmac_key member is allowed (OSProfiler overwrites it)")
b, p = u(), u()
i, m = signed("SECRET_KEY", two(b.upper(), p.upper()))
case("ok-upper-uuid", "one", True, i, m, b, p, "upper-case UUIDs: carried on in lower case (propagation.h)")
b, p = u(), u()
i, m = signed("SECRET_KEY", '{"base_id": "%s", "parent_id": "%s", "extra": 1}' % (b, p))
case("bad-extra-member", "one", False, i, m, b, p, "signed, but an extra JSON member")
b, p = u(), u()
i, m = signed("SECRET_KEY", two(b, p))
t = i[:20] + ("A" if i[20] != "A" else "B") + i[21:]
case("bad-tampered", "one", False, t, m, b, p, "one base64 character changed, HMAC kept")
b, p = u(), u()
i = b64(two(b, p))
assert i.endswith("=") and not i.endswith("==")
case("bad-no-padding", "one", False, i[:-1], sign("SECRET_KEY", i[:-1]), b, p, "padding stripped, correctly signed")
b, p = u(), u()
i, m = signed("SECRET_KEY", two(b, p))
case("bad-upper-hmac", "one", False, i, m.upper(), b, p, "HMAC in upper-case hex")
case("bad-short-hmac", "one", False, i, m[:39], b, p, "HMAC truncated to 39 hex digits")
case("bad-no-hmac", "one", False, i, None, b, p, "X-Trace-HMAC missing")
case("bad-no-info", "one", False, None, m, b, p, "X-Trace-Info missing")
case("bad-dup-info", "one", False, i, m, b, p, "X-Trace-Info sent twice (docs/limitations.md)", dup=True)
b, p = u(), u()
j = two(b, p)
case("bad-hmac-of-json", "one", False, b64(j), sign("SECRET_KEY", j), b, p, "HMAC over the JSON, not the base64 text")
b, p = u(), u()
i, m = signed("SECRET_KEY", '{"base_id": "%s", "parent_id": "%s"}' % (b.replace("-", ""), p))
case("bad-hyphenless-uuid", "one", False, i, m, None, None, "base_id without hyphens: not a UUID text for ldprof")

for c in out:
    print(json.dumps(c))
PY
NCASES=$(wc -l <"$E2E_TMP/cases.jsonl")
echo "$NCASES cases: $(jq -r 'select(.accept) | .case' "$E2E_TMP/cases.jsonl" | wc -l) to accept"

step "a request per case, plain curl: every answer is the untraced one"
declare -A EXPECT_BODY=()
for z in one multi ini; do
    req --url "${ZQ_URL[$z]}" GET "/v2/queues?case=untraced"
    expect_status 200
    EXPECT_BODY[$z]=$BODY
done
# (@sh, not @tsv: V7's HMAC holds a tab that must reach the server as is)
while IFS= read -r line; do
    eval "$line"
    hdr=()
    [ -z "$info" ] || hdr+=(-H "X-Trace-Info: $info")
    [ "$dup" = true ] && hdr+=(-H "X-Trace-Info: $info")
    # one space after the colon as usual; V7's own leading spaces and
    # trailing tab come on top and must be trimmed by the server
    [ -z "$mac" ] || hdr+=(-H "X-Trace-HMAC: $mac")
    req --url "${ZQ_URL[$zaq]}" "${hdr[@]}" GET "/v2/queues?case=$name"
    REQ="[case $name] $REQ"
    expect_status 200
    [ "$BODY" = "${EXPECT_BODY[$zaq]}" ] || fail "case $name: body differs from the untraced answer '${EXPECT_BODY[$zaq]}'"
done < <(jq -r '@sh "name=\(.case) zaq=\(.zaq) info=\(.info // "") mac=\(.hmac // "") dup=\(.dup)"' "$E2E_TMP/cases.jsonl")

step "wait for the accepted cases' dumps"
while IFS=$'\t' read -r name base; do
    wait_dump "$base" 1 15
done < <(jq -r 'select(.accept) | [.case, .base] | @tsv' "$E2E_TMP/cases.jsonl")
# rejected cases were sent before the accepted cases' dumps were written;
# give a wrongly traced span the same time again to arrive, then stop the
# collector (it writes everything it holds)
sleep 1
collector_stop main

step "each accepted case: one dump, one wsgi span, the header's ids"
declare -A SVC=([one]=zq-one [multi]=zq-multi [ini]=zq-ini)
while IFS=$'\t' read -r name zaq base parent; do
    f="$COLL_DIR/$base.json"
    [ -s "$f" ] || { REQ="[case $name]" STATUS="" BODY=""; fail "case $name: no dump $f"; }
    # (driver spans of zaqard's own work may hang below the wsgi span)
    jq_expect "$f" "$JQ_SPANS [core_spans | {name, base_id, parent_id, service, req: .start.info.request, ncore}]" \
        "[{\"name\": \"wsgi\", \"base_id\": \"$base\", \"parent_id\": \"$parent\", \"service\": \"${SVC[$zaq]}\",
           \"req\": {\"path\": \"/v2/queues\", \"query\": \"case=$name\", \"method\": \"GET\", \"scheme\": \"http\"}, \"ncore\": 0}]" \
        "case $name"
    dump_sane "$f" "$base"
    jq_expect "$f" "$JQ_SPANS core_spans | .trace_id | test(\"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\$\") and . != \"$base\" and . != \"$parent\"" \
        true "case $name: the wsgi span's own id is a fresh UUID4"
    echo "  accepted: $name -> $base"
done < <(jq -r 'select(.accept) | [.case, .zaq, .base, .parent] | @tsv' "$E2E_TMP/cases.jsonl")

step "rejected cases left no trace"
jq -r 'select(.accept) | .base' "$E2E_TMP/cases.jsonl" | sort | sed "s|^|$COLL_DIR/|; s|\$|.json|" >"$E2E_TMP/want"
dumps >"$E2E_TMP/got"
if ! cmp -s "$E2E_TMP/want" "$E2E_TMP/got"; then
    extra=""
    for f in $(comm -13 "$E2E_TMP/want" "$E2E_TMP/got"); do
        extra+=" $(jq -r "$JQ_SPANS [core_spans | .start.info.request.query] | join(\",\")" "$f")"
    done
    REQ="(dump directory)" STATUS="" BODY="missing: $(comm -23 "$E2E_TMP/want" "$E2E_TMP/got" | tr '\n' ' ')"
    fail "dumps other than the accepted cases' (traced by mistake:${extra:- none})"
fi
NACC=$(wc -l <"$E2E_TMP/want")
NSP=$(jq -n "$JQ_SPANS [inputs | [spans] | length] | add" $(cat "$E2E_TMP/got"))
jq_expect "$COLL_STATS" '{spans, rejected: .datagrams.rejected, dropped, written: .traces.written}' \
    "{\"spans\": $NSP, \"rejected\": 0, \"dropped\": 0, \"written\": $NACC}" \
    "collector stats (the accepted cases' spans, nothing else)"
jq -r 'select(.accept | not) | "  rejected: \(.case) (\(.zaq)): \(.why)"' "$E2E_TMP/cases.jsonl"

for z in one multi ini; do zaqard_stop "$z"; done
echo "$NACC accepted, $((NCASES - NACC)) rejected, as expected"
