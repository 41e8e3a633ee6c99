#!/usr/bin/env bash
# 13-zaqard-clean.sh - zaqard is the unmodified target: its binary never
# links, exports or mentions ldprof, and its sources never mention it.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -x "${ZAQARD:-}" ] || { echo "FAIL: no zaqard binary at '${ZAQARD:-}'" >&2; exit 1; }
top=${LDPROF_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
REQ="(static checks of $ZAQARD)" STATUS="" BODY=""

step "ldd: no libldprof"
ldd "$ZAQARD" >"$E2E_TMP/ldd" 2>&1 || fail "ldd $ZAQARD failed: $(head -n 3 "$E2E_TMP/ldd")"
grep -q 'libc\.so' "$E2E_TMP/ldd" || fail "ldd output lists no libc (is this a dynamic executable?): $(head -n 3 "$E2E_TMP/ldd")"
if grep -i 'ldprof' "$E2E_TMP/ldd"; then fail "zaqard links an ldprof library"; fi
readelf -d "$ZAQARD" | grep -E 'NEEDED|RPATH|RUNPATH' >"$E2E_TMP/dyn" || fail "readelf -d found no NEEDED entries"
if grep -i 'ldprof' "$E2E_TMP/dyn"; then fail "zaqard's dynamic section names ldprof"; fi

step "nm -D: no ldprof_ symbols"
nm -D "$ZAQARD" >"$E2E_TMP/nm" 2>&1 || fail "nm -D $ZAQARD failed"
grep -q ' U ' "$E2E_TMP/nm" || fail "nm -D shows no undefined symbols: not the binary we expect"
if grep -i 'ldprof' "$E2E_TMP/nm"; then fail "zaqard has ldprof symbols"; fi
nm "$ZAQARD" >"$E2E_TMP/nm-all" 2>/dev/null
if grep -i 'ldprof' "$E2E_TMP/nm-all"; then fail "zaqard's symbol table names ldprof"; fi

step "strings: no 'ldprof' (debug info aside)"
# Debug sections record the build directory, which may be a checkout named
# ldprof: check a copy without them (what the program itself can print).
cp "$ZAQARD" "$E2E_TMP/zaqard.nodebug"
objcopy --strip-debug "$E2E_TMP/zaqard.nodebug" 2>/dev/null || fail "objcopy --strip-debug failed"
strings -a "$E2E_TMP/zaqard.nodebug" >"$E2E_TMP/strings"
grep -q 'msg=' "$E2E_TMP/strings" || fail "strings found no log format strings: not the binary we expect"
if grep -i 'ldprof' "$E2E_TMP/strings"; then fail "zaqard's binary mentions ldprof"; fi

step "sources: tests/zaqard mentions no ldprof"
[ -d "$top/tests/zaqard" ] || fail "no $top/tests/zaqard"
hits=$(grep -rIil ldprof "$top/tests/zaqard/")
[ -z "$hits" ] || fail "files under tests/zaqard mention ldprof: $hits"
n=$(find "$top/tests/zaqard" -name '*.[ch]' | wc -l)
[ "$n" -gt 0 ] || fail "no C sources under tests/zaqard"
grep -rIn '#include' "$top/tests/zaqard" --include='*.[ch]' | grep -Eiv '#include *[<"][A-Za-z0-9_/.-]+[>"]' &&
    fail "odd #include lines in tests/zaqard"
if grep -rIn '#include' "$top/tests/zaqard" --include='*.[ch]' | grep -E '"\.\./|include/|preload/|collector/|hooks/'; then
    fail "tests/zaqard includes a file from outside its directory"
fi
echo "zaqard is clean: $(grep -c 'NEEDED' "$E2E_TMP/dyn") libraries, $(wc -l <"$E2E_TMP/nm") dynamic symbols, $n sources checked"
