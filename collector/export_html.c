/*
 * collector/export_html.c - `ldprof trace show --html`; see export_html.h.
 *
 * C side: the dump is flattened in tree (pre-)order into a compact JSON
 * document (one object per span: ids, parent index, name, service/host/
 * project, start offset and duration in µs taken from the raw events'
 * timestamps as the other exports do, error and unfinished flags, the
 * short detail of the text tree, and the start/stop infos), which is
 * embedded in the page.  Browser side: the inline script below renders it
 * in one pass over the spans (no per-span search), so a trace of 10k spans
 * costs 10k rows; details are built only when a span is opened.
 */
#include "export_html.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "export_flat.h"
#include "render.h"

static const char *str_or(json_t *v, const char *dflt)
{
    return json_is_string(v) ? json_string_value(v) : dflt;
}

/* A value of the node's info as a string or null. */
static json_t *str_or_null(json_t *v)
{
    return json_is_string(v) ? json_incref(v) : json_null();
}

static json_t *info_or_empty(json_t *ev)
{
    json_t *i = json_object_get(ev, "info");
    return json_is_object(i) ? json_incref(i) : json_object();
}

static json_t *span_json(const struct flat *f, const struct xspan *x, size_t *errors)
{
    json_t *info = json_object_get(x->node, "info");
    json_t *o = json_object();
    json_object_set_new(o, "id", str_or_null(json_object_get(x->node, "trace_id")));
    json_object_set_new(o, "parent", json_integer(x->parent));
    json_object_set_new(o, "parent_id", str_or_null(json_object_get(x->node, "parent_id")));
    json_object_set_new(o, "name", json_string(str_or(json_object_get(info, "name"), "?")));
    json_object_set_new(o, "service", str_or_null(json_object_get(info, "service")));
    json_object_set_new(o, "host", str_or_null(json_object_get(info, "host")));
    json_object_set_new(o, "project", str_or_null(json_object_get(info, "project")));
    int timed = x->has_start || x->has_stop;
    json_object_set_new(o, "start_us", json_integer(timed ? x->s_us - f->min_us : 0));
    json_object_set_new(o, "dur_us", json_integer(x->e_us - x->s_us));
    json_object_set_new(o, "start_ts", str_or_null(json_object_get(x->start, "timestamp")));
    json_object_set_new(o, "stop_ts", str_or_null(json_object_get(x->stop, "timestamp")));
    json_object_set_new(o, "unfinished", json_boolean(!x->stop));
    struct coll_buf d;
    coll_buf_init(&d);
    coll_render_span_detail(&d, info);
    json_object_set_new(o, "detail", json_string(d.p ? d.p : ""));
    coll_buf_free(&d);
    json_t *sinfo = json_object_get(x->stop, "info");
    json_t *et = json_object_get(sinfo, "etype");
    if (et && !json_is_null(et)) {
        (*errors)++;
        json_object_set(o, "etype", et);
        json_t *msg = json_object_get(sinfo, "message");
        if (msg)
            json_object_set(o, "message", msg);
    }
    json_object_set_new(o, "start_info", info_or_empty(x->start));
    json_object_set_new(o, "stop_info", info_or_empty(x->stop));
    return o;
}

/* Append JSON text as script-element data: the text is ASCII (our writer
 * escapes everything else, U+2028/U+2029 included), and '<', '>' and '&'
 * can only occur inside strings, where \u003c etc. mean the same. */
static void add_script_json(struct coll_buf *out, const struct coll_buf *j)
{
    size_t from = 0;
    for (size_t i = 0; i < j->len; i++) {
        const char *esc = j->p[i] == '<'   ? "\\u003c"
                          : j->p[i] == '>' ? "\\u003e"
                          : j->p[i] == '&' ? "\\u0026"
                                           : NULL;
        if (!esc)
            continue;
        coll_buf_add(out, j->p + from, i - from);
        coll_buf_adds(out, esc);
        from = i + 1;
    }
    coll_buf_add(out, j->p + from, j->len - from);
}

static const char page_head[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head>\n"
    "<meta charset=\"utf-8\">\n"
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
    "script-src 'unsafe-inline'; style-src 'unsafe-inline'\">\n"
    "<meta name=\"referrer\" content=\"no-referrer\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<meta name=\"generator\" content=\"ldprof trace show --html\">\n"
    "<title>ldprof trace</title>\n"
    "<style>\n"
    ":root{--fg:#1d2330;--mute:#5f6b7a;--line:#e3e7ee;--bar:#3b82c4;--err:#c62828;"
    "--errbg:#fdecea;--sel:#eef4fb}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;font:13px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);"
    "background:#fff}\n"
    "header{padding:12px 16px 8px;border-bottom:1px solid var(--line)}\n"
    "h1{font-size:16px;margin:0 0 4px;font-family:ui-monospace,monospace;font-weight:600}\n"
    "h2{font-size:13px;margin:12px 16px 6px;text-transform:uppercase;letter-spacing:.05em;"
    "color:var(--mute)}\n"
    ".summary{color:var(--mute)}\n"
    ".summary .errors{color:var(--err);font-weight:600}\n"
    "table.stats{border-collapse:collapse;margin:0 16px;font-variant-numeric:tabular-nums}\n"
    "table.stats th,table.stats td{padding:2px 14px 2px 0;text-align:right}\n"
    "table.stats th:first-child,table.stats td:first-child{text-align:left}\n"
    "table.stats th{color:var(--mute);font-weight:500;border-bottom:1px solid var(--line)}\n"
    ".controls{margin:8px 16px}\n"
    "button{font:inherit;padding:2px 10px;margin-right:6px;border:1px solid #c6ccd6;"
    "border-radius:4px;background:#f6f8fa;cursor:pointer}\n"
    ".tree{margin:0 0 24px;border-top:1px solid var(--line);font-variant-numeric:tabular-nums}\n"
    ".row,.axis{display:grid;grid-template-columns:minmax(280px,44%) 76px 76px 1fr;"
    "align-items:center;min-height:22px;border-bottom:1px solid #f0f2f5;cursor:pointer}\n"
    ".axis{cursor:default;color:var(--mute);font-size:11px;position:sticky;top:0;"
    "background:#fff;z-index:1;border-bottom:1px solid var(--line)}\n"
    /* rows off screen are neither laid out nor painted: 10k rows stay cheap */
    ".row{content-visibility:auto;contain-intrinsic-size:auto 23px}\n"
    ".row:hover{background:#f7f9fc}.row.open{background:var(--sel)}\n"
    ".row.err{background:var(--errbg)}.row.err .name{color:var(--err)}\n"
    ".name{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;padding-right:8px}\n"
    ".tog{display:inline-block;width:16px;text-align:center;color:var(--mute);"
    "user-select:none}\n"
    ".sn{font-weight:600}.where{color:var(--mute)}.det{margin-left:6px}\n"
    ".flag{margin-left:6px;padding:0 4px;border-radius:3px;font-size:11px;"
    "background:var(--err);color:#fff}\n"
    ".flag.unf{background:#8a6d00}\n"
    ".num{text-align:right;padding-right:10px;color:var(--mute)}\n"
    ".track{position:relative;height:14px;margin-right:16px;background:#f3f5f8}\n"
    ".bar{position:absolute;top:2px;bottom:2px;min-width:2px;background:var(--bar);"
    "border-radius:2px}\n"
    ".bar.err{background:var(--err)}\n"
    ".bar.unf{background:repeating-linear-gradient(45deg,#b08a00 0 4px,#e0c050 4px 8px)}\n"
    ".tick{position:absolute;top:0;transform:translateX(-50%)}\n"
    ".tick:first-child{transform:none}.tick:last-child{transform:translateX(-100%)}\n"
    ".axis .track{background:none;height:16px}\n"
    ".axis .name{padding-left:24px}\n"
    ".details{padding:6px 16px 10px 40px;background:#fafbfd;border-bottom:1px solid var(--line);"
    "font:12px/1.45 ui-monospace,monospace}\n"
    ".details table{border-collapse:collapse}\n"
    ".details td{padding:1px 12px 1px 0;vertical-align:top;white-space:pre-wrap;"
    "word-break:break-all}\n"
    ".details td.k{color:var(--mute);white-space:nowrap}\n"
    ".details tr.sec td{padding-top:6px;font-weight:600;color:var(--fg)}\n"
    ".empty{margin:16px;color:var(--mute)}\n"
    "</style>\n"
    "</head>\n"
    "<body>\n"
    "<header id=\"head\"><h1>ldprof trace</h1>"
    "<div class=\"summary\" id=\"summary\">This page needs JavaScript to show the trace.</div>"
    "</header>\n"
    "<h2>Stats per category</h2>\n"
    "<table class=\"stats\" id=\"stats\"><thead><tr><th>category</th><th>count</th>"
    "<th>total ms</th></tr></thead><tbody></tbody></table>\n"
    "<h2>Spans</h2>\n"
    "<div class=\"controls\"><button type=\"button\" id=\"expand\">expand all</button>"
    "<button type=\"button\" id=\"collapse\">collapse all</button>"
    "<button type=\"button\" id=\"nexterr\">next error</button></div>\n"
    "<div class=\"tree\" id=\"tree\"></div>\n"
    "<script type=\"application/json\" id=\"ldprof-data\">";

/* The renderer.  Everything from the data goes into the DOM through
 * textContent or setAttribute, never through HTML parsing. */
static const char page_tail[] =
    "</script>\n"
    "<script>\n"
    "(function () {\n"
    "\"use strict\";\n"
    "var D = JSON.parse(document.getElementById(\"ldprof-data\").textContent);\n"
    "var S = D.spans, n = S.length, total = D.total_us > 0 ? D.total_us : 0;\n"
    "function el(tag, cls, text) {\n"
    "  var e = document.createElement(tag);\n"
    "  if (cls) e.className = cls;\n"
    "  if (text !== undefined && text !== null) e.textContent = String(text);\n"
    "  return e;\n"
    "}\n"
    "function ms(us) {\n"
    "  var v = us / 1000;\n"
    "  return v >= 100 ? v.toFixed(1) : v >= 10 ? v.toFixed(2) : v.toFixed(3);\n"
    "}\n"
    "function pct(us) { return total > 0 ? Math.min(100, us * 100 / total) : 0; }\n"
    "document.title = \"ldprof trace \" + D.base_id;\n"
    "document.querySelector(\"#head h1\").textContent = \"trace \" + D.base_id;\n"
    "var sum = document.getElementById(\"summary\");\n"
    "sum.textContent = \"started \" + (D.start || \"?\") + \", \" + D.duration_ms + \" ms, \" +\n"
    "  D.span_count + (D.span_count === 1 ? \" span\" : \" spans\");\n"
    "if (D.errors > 0)\n"
    "  sum.appendChild(el(\"span\", \"errors\", \", \" + D.errors + (D.errors === 1 ?\n"
    "    \" error span\" : \" error spans\")));\n"
    "/* stats: the report's, in its order */\n"
    "var tb = document.querySelector(\"#stats tbody\"), cats = Object.keys(D.stats || {});\n"
    "cats.forEach(function (c) {\n"
    "  var st = D.stats[c] || {}, tr = el(\"tr\");\n"
    "  tr.setAttribute(\"data-category\", c);\n"
    "  tr.appendChild(el(\"td\", \"cat\", c));\n"
    "  tr.appendChild(el(\"td\", \"count\", st.count));\n"
    "  tr.appendChild(el(\"td\", \"ms\", st.duration));\n"
    "  tb.appendChild(tr);\n"
    "});\n"
    "if (!cats.length) {\n"
    "  var tr0 = el(\"tr\"), td0 = el(\"td\", null, \"no spans\");\n"
    "  td0.colSpan = 3; tr0.appendChild(td0); tb.appendChild(tr0);\n"
    "}\n"
    "/* tree: depth and subtree end (exclusive) of every span, in one pass;\n"
    "   spans are in pre-order, so a subtree is the range [i+1, end[i]) */\n"
    "var depth = new Array(n), end = new Array(n), stack = [];\n"
    "for (var i = 0; i < n; i++) {\n"
    "  var p = S[i].parent;\n"
    "  depth[i] = p >= 0 && p < i ? depth[p] + 1 : 0;\n"
    "  while (stack.length && depth[stack[stack.length - 1]] >= depth[i])\n"
    "    end[stack.pop()] = i;\n"
    "  stack.push(i);\n"
    "}\n"
    "while (stack.length) end[stack.pop()] = n;\n"
    "var tree = document.getElementById(\"tree\"), rows = new Array(n);\n"
    "var collapsed = new Array(n), det = new Array(n), byId = Object.create(null);\n"
    "var frag = document.createDocumentFragment();\n"
    "var axis = el(\"div\", \"axis\");\n"
    "axis.appendChild(el(\"div\", \"name\", \"span\"));\n"
    "axis.appendChild(el(\"div\", \"num\", \"start ms\"));\n"
    "axis.appendChild(el(\"div\", \"num\", \"ms\"));\n"
    "var at = el(\"div\", \"track\");\n"
    "for (var k = 0; k <= 4; k++) {\n"
    "  var t = el(\"span\", \"tick\", ms(total * k / 4));\n"
    "  t.style.left = (k * 25) + \"%\";\n"
    "  at.appendChild(t);\n"
    "}\n"
    "axis.appendChild(at);\n"
    "frag.appendChild(axis);\n"
    "for (i = 0; i < n; i++) {\n"
    "  var s = S[i], r = el(\"div\", \"row\");\n"
    "  r.setAttribute(\"data-span-id\", s.id === null ? \"\" : s.id);\n"
    "  r.setAttribute(\"data-index\", i);\n"
    "  if (s.etype !== undefined) r.classList.add(\"err\");\n"
    "  var nm = el(\"div\", \"name\");\n"
    "  nm.style.paddingLeft = (4 + Math.min(depth[i], 40) * 14) + \"px\";\n"
    "  nm.appendChild(el(\"span\", \"tog\", end[i] > i + 1 ? \"\\u25be\" : \"\"));\n"
    "  if (depth[i] > 40) nm.appendChild(el(\"span\", \"where\", \"[\" + depth[i] + \"] \"));\n"
    "  nm.appendChild(el(\"span\", \"sn\", s.name));\n"
    "  if (s.service !== null || s.host !== null)\n"
    "    nm.appendChild(el(\"span\", \"where\", \" [\" + (s.service === null ? \"\" : s.service) +\n"
    "      (s.host === null ? \"\" : \"@\" + s.host) + \"]\"));\n"
    "  if (s.detail) nm.appendChild(el(\"span\", \"det\", s.detail));\n"
    "  if (s.etype !== undefined) nm.appendChild(el(\"span\", \"flag\", \"ERROR \" + s.etype));\n"
    "  if (s.unfinished) nm.appendChild(el(\"span\", \"flag unf\", \"unfinished\"));\n"
    "  nm.title = s.name + (s.detail ? \" \" + s.detail : \"\");\n"
    "  r.appendChild(nm);\n"
    "  r.appendChild(el(\"div\", \"num\", ms(s.start_us)));\n"
    "  r.appendChild(el(\"div\", \"num\", ms(s.dur_us)));\n"
    "  var tr = el(\"div\", \"track\"), b = el(\"div\", \"bar\");\n"
    "  if (s.etype !== undefined) b.classList.add(\"err\");\n"
    "  if (s.unfinished) b.classList.add(\"unf\");\n"
    "  b.style.left = pct(s.start_us) + \"%\";\n"
    "  b.style.width = pct(s.dur_us) + \"%\";\n"
    "  b.title = ms(s.start_us) + \" + \" + ms(s.dur_us) + \" ms\";\n"
    "  tr.appendChild(b);\n"
    "  r.appendChild(tr);\n"
    "  rows[i] = r;\n"
    "  if (s.id !== null && !(s.id in byId)) byId[s.id] = i;\n"
    "  frag.appendChild(r);\n"
    "}\n"
    "tree.appendChild(frag);\n"
    "if (!n) tree.appendChild(el(\"div\", \"empty\", \"This trace has no spans.\"));\n"
    "/* details: built when first opened */\n"
    "function val(v) { return typeof v === \"string\" ? v : JSON.stringify(v); }\n"
    "function fields(tb, obj, prefix, lvl) {\n"
    "  Object.keys(obj).forEach(function (key) {\n"
    "    var v = obj[key], name = prefix ? prefix + \".\" + key : key;\n"
    "    if (v && typeof v === \"object\" && !Array.isArray(v) && lvl < 32 &&\n"
    "        Object.keys(v).length) {\n"
    "      fields(tb, v, name, lvl + 1);\n"
    "      return;\n"
    "    }\n"
    "    var tr = el(\"tr\");\n"
    "    tr.appendChild(el(\"td\", \"k\", name));\n"
    "    tr.appendChild(el(\"td\", \"v\", val(v)));\n"
    "    tb.appendChild(tr);\n"
    "  });\n"
    "}\n"
    "function section(tb, title) {\n"
    "  var tr = el(\"tr\", \"sec\"), td = el(\"td\", null, title);\n"
    "  td.colSpan = 2; tr.appendChild(td); tb.appendChild(tr);\n"
    "}\n"
    "function details(i) {\n"
    "  var s = S[i], d = el(\"div\", \"details\"), t = el(\"table\"), tb = el(\"tbody\");\n"
    "  d.setAttribute(\"data-details-for\", s.id === null ? \"\" : s.id);\n"
    "  section(tb, \"span\");\n"
    "  fields(tb, {name: s.name, trace_id: s.id, parent_id: s.parent_id,\n"
    "    service: s.service, host: s.host, project: s.project,\n"
    "    start: s.start_ts, stop: s.unfinished ? \"(unfinished)\" : s.stop_ts,\n"
    "    \"start offset ms\": ms(s.start_us), \"duration ms\": ms(s.dur_us)}, \"\", 0);\n"
    "  section(tb, \"start info\");\n"
    "  fields(tb, s.start_info, \"\", 0);\n"
    "  if (!s.unfinished) { section(tb, \"stop info\"); fields(tb, s.stop_info, \"\", 0); }\n"
    "  t.appendChild(tb); d.appendChild(t);\n"
    "  return d;\n"
    "}\n"
    "function toggleDetails(i, open) {\n"
    "  if (open === undefined) open = !(det[i] && !det[i].hidden);\n"
    "  if (open && !det[i]) { det[i] = details(i); rows[i].after(det[i]); }\n"
    "  if (det[i]) det[i].hidden = !open;\n"
    "  rows[i].classList.toggle(\"open\", open);\n"
    "}\n"
    "/* show/hide the rows below i, keeping collapsed subtrees closed */\n"
    "function showBelow(i, show) {\n"
    "  var j = i + 1;\n"
    "  while (j < end[i]) {\n"
    "    rows[j].hidden = !show;\n"
    "    if (det[j]) det[j].hidden = !show || !rows[j].classList.contains(\"open\");\n"
    "    if (show && collapsed[j]) j = end[j]; else j++;\n"
    "  }\n"
    "}\n"
    "function setCollapsed(i, c) {\n"
    "  if (end[i] <= i + 1 || !!collapsed[i] === c) return;\n"
    "  collapsed[i] = c;\n"
    "  rows[i].firstChild.firstChild.textContent = c ? \"\\u25b8\" : \"\\u25be\";\n"
    "  showBelow(i, !c);\n"
    "}\n"
    "tree.addEventListener(\"click\", function (ev) {\n"
    "  var r = ev.target.closest(\".row\");\n"
    "  if (!r) return;\n"
    "  var i = +r.getAttribute(\"data-index\");\n"
    "  if (ev.target.classList.contains(\"tog\")) setCollapsed(i, !collapsed[i]);\n"
    "  else toggleDetails(i);\n"
    "});\n"
    "function all(c) {\n"
    "  for (var i = 0; i < n; i++) {\n"
    "    if (end[i] > i + 1) {\n"
    "      collapsed[i] = c;\n"
    "      rows[i].firstChild.firstChild.textContent = c ? \"\\u25b8\" : \"\\u25be\";\n"
    "    }\n"
    "    rows[i].hidden = c && depth[i] > 0;\n"
    "    if (det[i]) det[i].hidden = rows[i].hidden || !rows[i].classList.contains(\"open\");\n"
    "  }\n"
    "}\n"
    "function reveal(i) {\n"
    "  for (var p = S[i].parent; p >= 0 && p < n; p = S[p].parent) setCollapsed(p, false);\n"
    "}\n"
    "document.getElementById(\"expand\").addEventListener(\"click\", function () { all(false); });\n"
    "document.getElementById(\"collapse\").addEventListener(\"click\", function () { all(true); });\n"
    "var lastErr = -1;\n"
    "document.getElementById(\"nexterr\").addEventListener(\"click\", function () {\n"
    "  for (var k = 1; k <= n; k++) {\n"
    "    var j = (lastErr + k) % n;\n"
    "    if (S[j].etype !== undefined) {\n"
    "      lastErr = j; reveal(j); toggleDetails(j, true);\n"
    "      rows[j].scrollIntoView({block: \"center\"});\n"
    "      return;\n"
    "    }\n"
    "  }\n"
    "});\n"
    "/* #span=<trace_id>: open that span */\n"
    "var h = decodeURIComponent(location.hash.slice(1));\n"
    "if (h.indexOf(\"span=\") === 0 && h.slice(5) in byId) {\n"
    "  var j0 = byId[h.slice(5)];\n"
    "  reveal(j0); toggleDetails(j0, true);\n"
    "  rows[j0].scrollIntoView({block: \"center\"});\n"
    "}\n"
    "document.body.setAttribute(\"data-rendered\", n);\n"
    "})();\n"
    "</script>\n"
    "</body>\n"
    "</html>\n";

int coll_export_html(struct coll_buf *out, const char *text, size_t len)
{
    struct flat f;
    json_t *r = coll_flat_load(&f, text, len);
    if (!r)
        return -1;
    json_t *rinfo = json_object_get(r, "info");
    json_t *spans = json_array();
    size_t errors = 0;
    const char *base = NULL;
    for (size_t i = 0; i < f.n; i++) {
        struct xspan *x = &f.v[i];
        if (!base)
            base = str_or(json_object_get(x->start ? x->start : x->stop, "base_id"), NULL);
        json_array_append_new(spans, span_json(&f, x, &errors));
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "base_id", json_string(base ? base : "?"));
    if (f.n) {
        char ts[40];
        coll_ts_fmt_us(f.min_us, ts);
        strcat(ts, "Z");
        json_object_set_new(doc, "start", json_string(ts));
    } else {
        json_object_set_new(doc, "start", json_null());
    }
    json_t *fin = json_object_get(rinfo, "finished");
    json_object_set_new(doc, "duration_ms", json_integer(json_integer_value(fin)));
    json_object_set_new(doc, "total_us", json_integer(f.max_us - f.min_us));
    json_object_set_new(doc, "span_count", json_integer((json_int_t)f.n));
    json_object_set_new(doc, "errors", json_integer((json_int_t)errors));
    json_t *stats = json_object_get(r, "stats");
    json_object_set_new(doc, "stats", json_is_object(stats) ? json_incref(stats) : json_object());
    json_object_set_new(doc, "spans", spans);

    struct coll_buf j;
    coll_buf_init(&j);
    int rc = coll_json_dump(&j, doc, COLL_JSON_COMPACT);
    json_decref(doc);
    free(f.v);
    json_decref(r);
    if (j.oom)
        rc = -1;
    if (rc == 0) {
        coll_buf_adds(out, page_head);
        add_script_json(out, &j);
        coll_buf_adds(out, page_tail);
    }
    coll_buf_free(&j);
    return rc < 0 || out->oom ? -1 : 0;
}
