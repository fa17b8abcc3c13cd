#pragma once
// The batch report: OUT/index.html, one self-contained page over a batch's table
// (batch_table.hpp). Written by glimpse-compare --batch and rebuilt by --merge from the
// same rows, so it holds nothing that differs between the two (no clock, no host): the
// same rows give the same bytes.
//
// The summary and the scatter plots are static HTML/SVG, readable with JavaScript off. The
// per-image table is built by a little inline script from one JSON block: at 10,000 images
// a table re-sorted in the DOM, or 10,000 rows written out twice (HTML + data), would cost
// more than rendering the rows again from the array. Thumbnails load lazily, so every row can
// be in the DOM without fetching every figure.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "glimpse/compare/batch_table.hpp"

namespace glimpse::compare {

struct report_meta {
    std::string title;                                       // e.g. "glimpse-compare: hico_test.jsonl"
    std::vector<std::pair<std::string, std::string>> facts;  // ("base model", path), ("images", "3 computed, 1 failed")
};

namespace report_detail {

// U+2028/2029 as references too: harmless in HTML text, but a page copied into a JavaScript
// string literal (an older engine, a bookmarklet) would end the line there.
inline std::string html_escape(std::string_view s) {
    std::string o;
    o.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) switch (const char c = s[i]) {
            case '&':
                o += "&amp;";
                break;
            case '<':
                o += "&lt;";
                break;
            case '>':
                o += "&gt;";
                break;
            case '"':
                o += "&quot;";
                break;
            case '\'':
                o += "&#39;";
                break;
            default:
                if (c == '\xE2' && i + 2 < s.size() && s[i + 1] == '\x80' &&
                    (s[i + 2] == '\xA8' || s[i + 2] == '\xA9')) {
                    o += s[i + 2] == '\xA8' ? "&#x2028;" : "&#x2029;";
                    i += 2;
                } else
                    o += c;
        }
    return o;
}

// Percent-encodes everything but RFC 3986's unreserved characters, keeping '/' between
// segments: an id is a directory name under OUT, and may hold '#', '?', '%' or spaces that
// a browser would otherwise read as URL syntax.
inline std::string url_path(std::string_view s) {
    static const char hex[] = "0123456789ABCDEF";
    std::string o;
    for (unsigned char c : s) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~' || c == '/')
            o += static_cast<char>(c);
        else {
            o += '%';
            o += hex[c >> 4];
            o += hex[c & 15];
        }
    }
    return o;
}

// JSON inside <script>: the HTML parser ends the element at the first "</script" whatever
// the JSON means, and "<!--" changes how it looks for it; \u escapes are the same string to
// JSON.parse. U+2028/2029 are escaped too, for any consumer that evaluates it as JavaScript.
inline std::string script_safe_json(const nlohmann::json& j) {
    const std::string d = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string o;
    o.reserve(d.size() + d.size() / 16);
    for (std::size_t i = 0; i < d.size(); ++i) {
        const char c = d[i];
        if (c == '<')
            o += "\\u003c";
        else if (c == '>')
            o += "\\u003e";
        else if (c == '&')
            o += "\\u0026";
        else if (c == '\xE2' && i + 2 < d.size() && d[i + 1] == '\x80' && (d[i + 2] == '\xA8' || d[i + 2] == '\xA9')) {
            o += d[i + 2] == '\xA8' ? "\\u2028" : "\\u2029";
            i += 2;
        } else
            o += c;
    }
    return o;
}

// Box coordinates as typed: shortest form that round-trips what a reader cares about.
inline std::string coord(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return b;
}

// The metric labels present in `rows`, in metrics_of's order (referring's, then grounding's),
// then any other label, so a row from a newer schema still shows.
inline std::vector<std::string> metric_columns(const std::vector<image_row>& rows) {
    std::set<std::string> present;
    for (const auto& r : rows)
        for (const auto& [label, v] : r.values) present.insert(label);
    std::vector<std::string> out;
    for (task_type t : {task_type::referring, task_type::grounding})
        for (const auto& m : metrics_of(t))
            if (present.erase(m.label)) out.push_back(m.label);
    out.insert(out.end(), present.begin(), present.end());
    return out;
}

// The metric of a task's scatter plot: the interaction box's mass (the box the head is
// trained to find the pair in), else the first mass the rows have.
inline std::string scatter_metric(const std::vector<image_row>& rows, task_type task) {
    const std::string want = task == task_type::referring ? "interaction" : "head_mass_interaction";
    std::set<std::string> present;
    for (const auto& r : rows)
        if (r.task == task && !r.failed())
            for (const auto& [label, v] : r.values) present.insert(label);
    if (present.count(want)) return want;
    for (const auto& m : metrics_of(task))
        if (!m.box.empty() && present.count(m.label)) return m.label;
    return {};
}

inline std::string svg_num(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", v);
    return b;
}

inline std::string scatter_svg(const std::vector<image_row>& rows, task_type task) {
    const std::string label = scatter_metric(rows, task);
    if (label.empty()) return {};
    constexpr double left = 40, top = 10, side = 200, size_w = left + side + 10, size_h = top + side + 34;
    const auto x = [&](double v) { return left + side * std::clamp(v, 0.0, 1.0); };
    const auto y = [&](double v) { return top + side * (1.0 - std::clamp(v, 0.0, 1.0)); };
    std::ostringstream pts;
    std::int64_t n = 0, above = 0;
    for (const auto& r : rows) {
        if (r.task != task || r.failed()) continue;
        const auto it = r.values.find(label);
        if (it == r.values.end() || !std::isfinite(it->second.first) || !std::isfinite(it->second.second)) continue;
        const auto [b, f] = it->second;
        ++n;
        if (f > b) ++above;
        pts << "<circle cx=\"" << svg_num(x(b)) << "\" cy=\"" << svg_num(y(f)) << "\" r=\"2.5\"><title>"
            << html_escape(r.id) << ": base " << num(b) << ", fine-tuned " << num(f) << "</title></circle>";
    }
    if (n == 0) return {};
    std::ostringstream o;
    const std::string t(name(task));
    o << "<figure class=\"scatter\" id=\"scatter-" << t << "\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\""
      << size_w << "\" height=\"" << size_h << "\" viewBox=\"0 0 " << size_w << " " << size_h << "\" role=\"img\">"
      << "<rect class=\"plot\" x=\"" << left << "\" y=\"" << top << "\" width=\"" << side << "\" height=\"" << side
      << "\"/>";
    for (double v : {0.0, 0.5, 1.0}) {
        o << "<line class=\"grid\" x1=\"" << svg_num(x(v)) << "\" y1=\"" << top << "\" x2=\"" << svg_num(x(v))
          << "\" y2=\"" << top + side << "\"/><line class=\"grid\" x1=\"" << left << "\" y1=\"" << svg_num(y(v))
          << "\" x2=\"" << left + side << "\" y2=\"" << svg_num(y(v)) << "\"/>";
        o << "<text class=\"tick\" x=\"" << svg_num(x(v)) << "\" y=\"" << top + side + 12
          << "\" text-anchor=\"middle\">" << coord(v) << "</text><text class=\"tick\" x=\"" << left - 4 << "\" y=\""
          << svg_num(y(v) + 3) << "\" text-anchor=\"end\">" << coord(v) << "</text>";
    }
    o << "<line class=\"diagonal\" x1=\"" << x(0) << "\" y1=\"" << y(0) << "\" x2=\"" << x(1) << "\" y2=\"" << y(1)
      << "\"/><g class=\"points\">" << pts.str() << "</g>"
      << "<text class=\"axis\" x=\"" << left + side / 2 << "\" y=\"" << top + side + 28
      << "\" text-anchor=\"middle\">base</text><text class=\"axis\" transform=\"translate(12 " << top + side / 2
      << ") rotate(-90)\" text-anchor=\"middle\">fine-tuned</text></svg><figcaption>" << html_escape(label)
      << ": mass in box per image. Above the diagonal (fine-tuned puts more mass in the box): " << above << " of " << n
      << ".</figcaption></figure>";
    return o.str();
}

inline std::string ci_cells(const char* cls, const analysis::bootstrap_ci& c) {
    std::string o =
        "<td class=\"num " + std::string(cls) + "-mean\">" + num(c.mean) + "</td><td class=\"" + cls + "-ci num";
    if (!std::isfinite(c.lo) || !std::isfinite(c.hi)) return o + " no-ci\">(no CI)</td>";
    // A difference whose interval excludes 0: the one result a reader scans the table for.
    if (std::string_view(cls) == "diff" && (c.lo > 0 || c.hi < 0)) o += " excludes-zero";
    return o + "\">[<span class=\"" + cls + "-lo\">" + num(c.lo) + "</span>, <span class=\"" + cls + "-hi\">" +
           num(c.hi) + "</span>]</td>";
}

// A task's section: its summary table (static, so it reads without JavaScript) and scatter plot.
inline std::string task_html(const task_summary& s, const std::vector<image_row>& rows) {
    const std::string t(name(s.task));
    const bool ref = s.task == task_type::referring;
    std::ostringstream o;
    o << "<section class=\"task\" id=\"task-" << t << "\"><h2>" << t << "</h2><p class=\"what\">"
      << (ref ? "Mass each model's map for a box puts inside that box."
              : "Normalised entropy of the head under a uniform heatmap and of the encoder's own attention, and "
                "the mass of each inside every box given.")
      << "</p><div class=\"task-body\"><div>";
    if (s.rows.empty())
        o << "<p class=\"empty\">No image of this task was computed.</p>";
    else {
        o << "<table class=\"summary\" id=\"summary-" << t << "\"><thead><tr><th rowspan=\"2\">"
          << (ref ? "box" : "metric")
          << "</th><th rowspan=\"2\">n</th><th colspan=\"2\">base</th><th colspan=\"2\">fine-tuned</th>"
          << "<th colspan=\"2\">base &minus; fine-tuned</th><th rowspan=\"2\" title=\"mean area fraction of the box: "
             "what a flat map scores\">uniform</th></tr><tr><th>mean</th><th>95% CI</th><th>mean</th><th>95% "
             "CI</th><th>mean</th><th>95% CI</th></tr></thead><tbody>";
        for (const auto& r : s.rows)
            o << "<tr class=\"summary-row\" data-label=\"" << html_escape(r.label) << "\"><td class=\"label\">"
              << html_escape(r.label) << "</td><td class=\"num n\">" << r.base.n << "</td>" << ci_cells("base", r.base)
              << ci_cells("finetuned", r.finetuned) << ci_cells("diff", r.diff) << "<td class=\"num uniform\">"
              << num(r.uniform_mean) << "</td></tr>";
        o << "</tbody></table>";
    }
    o << "<p class=\"files\">";
    const auto link = [&](const std::filesystem::path& p, const char* sep) {
        if (p.empty()) return;
        const std::string f = p.filename().string();
        o << sep << "<a href=\"" << html_escape(url_path(f)) << "\">" << html_escape(f) << "</a>";
    };
    link(s.summary_csv, "");
    link(s.per_image_csv, s.summary_csv.empty() ? "" : " &middot; ");
    o << "</p></div>" << scatter_svg(rows, s.task) << "</div></section>\n";
    return o.str();
}

inline nlohmann::json row_json(const image_row& r, const std::vector<std::string>& metrics) {
    nlohmann::json j = nlohmann::json::object();
    j["i"] = r.index;
    j["id"] = r.id;
    j["task"] = std::string(name(r.task));
    j["action"] = r.action;
    j["object"] = r.object_category;
    j["status"] = r.status;
    j["failed"] = r.failed();
    j["fig"] = r.failed() ? std::string() : url_path(r.id) + "/" + url_path(output_stem(r.task)) + ".png";
    std::string boxes;
    for (const char* b : {"person", "object"})
        if (const auto it = r.boxes.find(b); it != r.boxes.end()) {
            if (!boxes.empty()) boxes += "\n";
            boxes += std::string(b) + " " + coord(it->second[0]) + ", " + coord(it->second[1]) + ", " +
                     coord(it->second[2]) + ", " + coord(it->second[3]);
        }
    j["boxes"] = boxes;
    // Strings, not numbers: the very text of per_image_<task>.csv, whatever JSON.parse would round.
    nlohmann::json v = nlohmann::json::object();
    for (const auto& m : metrics)
        if (const auto it = r.values.find(m); it != r.values.end())
            v[m] = nlohmann::json::array({num(it->second.first), num(it->second.second)});
    j["v"] = std::move(v);
    return j;
}

inline constexpr const char* report_css = R"CSS(
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px 24px;color:#1d1d1f;background:#fff}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:18px 0 4px}
table{border-collapse:collapse}th,td{padding:3px 8px;text-align:left;vertical-align:top}
.facts th{font-weight:600;color:#555;padding-left:0}.facts td{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.summary{margin:4px 0}.summary th[colspan]{text-align:center}.summary th,.summary td{border-bottom:1px solid #e3e3e3}
.summary thead th,#images thead th{background:#f5f5f7;border-bottom:1px solid #ccc;font-weight:600;white-space:nowrap}
.num{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;text-align:right;white-space:nowrap}
td.excludes-zero{background:#fff3cd}.no-ci{color:#888}
.task-body{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.what,.ci-method,.files,figcaption{color:#555;font-size:12px;margin:2px 0}
.scatter{margin:0}.scatter figcaption{max-width:250px}
.scatter .plot{fill:#fafafa;stroke:#bbb}.scatter .grid{stroke:#e6e6e6}.scatter .diagonal{stroke:#888;stroke-dasharray:4 3}
.scatter circle{fill:#1f77b4;fill-opacity:.55}.scatter text{font-size:10px;fill:#555}.scatter .axis{font-size:11px;fill:#333}
.controls{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin:18px 0 6px}
.controls label{font-size:12px;color:#555}
.table-wrap{overflow-x:auto}
#images td{border-bottom:1px solid #eee}#images thead{position:sticky;top:0}#images th[data-key]{cursor:pointer;user-select:none}
#images thead th.sorted-asc::after{content:" \25B2";font-size:9px}#images thead th.sorted-desc::after{content:" \25BC";font-size:9px}
#images th.metric{text-align:center;cursor:default}
#images td.thumb{padding:2px}#images td.thumb img{height:64px;display:block;background:#f0f0f0}
#images td.boxes{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px;white-space:pre;color:#444}
#images td.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;overflow-wrap:anywhere;min-width:18ch;max-width:40ch}
tr.failed{background:#fdecea}tr.failed td.status{color:#a4000f;font-weight:600}
td.status{font-size:12px;max-width:320px}
)CSS";

// Plain ES2017 for any browser; the hash (#sort=b:person&desc=1&action=...&object=...&status=...&q=...)
// holds the view, so a sorted or filtered table can be linked to and reloaded.
inline constexpr const char* report_js = R"JS(
(function () {
  'use strict';
  var rows = JSON.parse(document.getElementById('rows').textContent);
  var table = document.getElementById('images');
  var tbody = table.tBodies[0];
  var metrics = JSON.parse(table.getAttribute('data-metrics'));
  var ui = {action: document.getElementById('f-action'), object: document.getElementById('f-object'),
            status: document.getElementById('f-status'), q: document.getElementById('f-q')};
  // Rows per page: a browser lays out a few hundred table rows at once in well under a second,
  // 10,000 (a whole test split) in 10-15 s, most of it the thumbnails' elements.
  var PAGE = 500;
  var state = {sort: 'index', desc: false, action: '', object: '', status: '', q: '', page: 1};
  var ESC = {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'};
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }

  function fill(select, key) {
    var seen = {}, values = [];
    rows.forEach(function (r) { if (!(r[key] in seen)) { seen[r[key]] = 1; values.push(r[key]); } });
    values.sort();
    values.forEach(function (v) {
      var o = document.createElement('option');
      o.value = v === '' ? '\u0001' : v;
      o.textContent = v === '' ? '(none)' : v;
      select.appendChild(o);
    });
  }
  fill(ui.action, 'action');
  fill(ui.object, 'object');

  function sortKey(r, k) {
    if (k === 'index') return r.i;
    if (k.charAt(1) === ':') {
      var v = r.v[k.slice(2)];
      var x = v ? parseFloat(v[k.charAt(0) === 'b' ? 0 : 1]) : NaN;
      return isNaN(x) ? null : x;
    }
    var s = r[k];
    return s === '' ? null : String(s).toLowerCase();
  }

  function render() {
    var want = function (sel, v) { return sel === '' || (sel === '\u0001' ? v === '' : v === sel); };
    var q = state.q.toLowerCase();
    var shown = rows.filter(function (r) {
      return want(state.action, r.action) && want(state.object, r.object) &&
             (state.status === '' || (state.status === 'failed') === r.failed) &&
             (q === '' || r.id.toLowerCase().indexOf(q) >= 0);
    });
    var k = state.sort, dir = state.desc ? -1 : 1;
    var keyed = shown.map(function (r) { return [sortKey(r, k), r]; });
    keyed.sort(function (a, b) {
      if (a[0] === null || b[0] === null) {
        if (a[0] !== b[0]) return a[0] === null ? 1 : -1;  // no value: last either way
      } else if (a[0] < b[0]) return -dir;
      else if (a[0] > b[0]) return dir;
      return a[1].i - b[1].i;
    });
    var pages = Math.max(1, Math.ceil(keyed.length / PAGE));
    state.page = Math.min(Math.max(1, state.page), pages);
    var first = (state.page - 1) * PAGE;
    var html = [];
    keyed.slice(first, first + PAGE).forEach(function (e) {
      var r = e[1], fig = esc(r.fig), link = function (t) { return fig ? '<a href="' + fig + '">' + t + '</a>' : t; };
      // (The class is not spelled out next to class=" here: the page's text then names each row once.)
      var cls = 'image-row' + (r.failed ? ' failed' : '');
      var h = '<tr class="' + cls + '" data-id="' + esc(r.id) + '">' +
              '<td class="thumb">' + (fig ? link('<img loading="lazy" src="' + fig + '" alt="">') : '') + '</td>' +
              '<td class="num index">' + r.i + '</td><td class="id">' + link(esc(r.id)) + '</td>' +
              '<td class="task">' + esc(r.task) + '</td><td class="action">' + esc(r.action) + '</td>' +
              '<td class="object">' + esc(r.object) + '</td><td class="boxes">' + esc(r.boxes) + '</td>';
      metrics.forEach(function (m) {
        var v = r.v[m] || ['', ''];
        h += '<td class="num base">' + esc(v[0]) + '</td><td class="num finetuned">' + esc(v[1]) + '</td>';
      });
      html.push(h + '<td class="status' + (r.failed ? ' error' : '') + '">' + esc(r.status) + '</td></tr>');
    });
    tbody.innerHTML = html.join('');
    document.getElementById('shown').textContent = String(shown.length);
    var pager = document.getElementById('pager');
    pager.hidden = pages < 2;
    document.getElementById('page-rows').textContent =
        (keyed.length ? first + 1 : 0) + '\u2013' + Math.min(first + PAGE, keyed.length) + ' (page ' + state.page + ' of ' + pages + ')';
    document.getElementById('prev').disabled = state.page <= 1;
    document.getElementById('next').disabled = state.page >= pages;
    Array.prototype.forEach.call(table.querySelectorAll('th[data-key]'), function (th) {
      var on = th.getAttribute('data-key') === k;
      th.className = on ? (state.desc ? 'sorted-desc' : 'sorted-asc') : '';
      if (on) th.setAttribute('aria-sort', state.desc ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    });
  }

  function save() {
    var p = [];
    if (state.sort !== 'index') p.push('sort=' + encodeURIComponent(state.sort));
    if (state.desc) p.push('desc=1');
    if (state.page > 1) p.push('page=' + state.page);
    ['action', 'object', 'status', 'q'].forEach(function (n) {
      if (state[n] !== '') p.push(n + '=' + encodeURIComponent(state[n]));
    });
    try { history.replaceState(null, '', p.length ? '#' + p.join('&') : location.pathname + location.search); }
    catch (e) { /* a browser that refuses replaceState on file:// keeps the view, without the link */ }
  }

  function load() {
    var h = location.hash.replace(/^#/, '');
    state = {sort: 'index', desc: false, action: '', object: '', status: '', q: '', page: 1};
    h.split('&').forEach(function (kv) {
      var i = kv.indexOf('=');
      if (i < 0) return;
      var n = kv.slice(0, i), v = decodeURIComponent(kv.slice(i + 1).replace(/\+/g, ' '));
      if (n === 'desc') state.desc = v === '1';
      else if (n === 'page') state.page = parseInt(v, 10) || 1;
      else if (n in state) state[n] = v;
    });
    if (!table.querySelector('th[data-key="' + state.sort.replace(/["\\]/g, '') + '"]')) state.sort = 'index';
    ['action', 'object', 'status', 'q'].forEach(function (n) { ui[n].value = state[n]; state[n] = ui[n].value; });
    render();
  }

  Array.prototype.forEach.call(table.querySelectorAll('th[data-key]'), function (th) {
    th.addEventListener('click', function () {
      var k = th.getAttribute('data-key');
      state.desc = state.sort === k ? !state.desc : false;
      state.sort = k;
      state.page = 1;
      render();
      save();
    });
  });
  ['action', 'object', 'status'].forEach(function (n) {
    ui[n].addEventListener('change', function () { state[n] = ui[n].value; state.page = 1; render(); save(); });
  });
  ui.q.addEventListener('input', function () { state.q = ui.q.value; state.page = 1; render(); save(); });
  document.getElementById('prev').addEventListener('click', function () { state.page -= 1; render(); save(); window.scrollTo(0, table.offsetTop); });
  document.getElementById('next').addEventListener('click', function () { state.page += 1; render(); save(); window.scrollTo(0, table.offsetTop); });
  window.addEventListener('hashchange', load);
  document.getElementById('controls').hidden = false;
  load();
})();
)JS";

}  // namespace report_detail

// One self-contained page (no network, no CDN, no external files except the figures it links): the summary
// table of every task with its 95% intervals, a small inline SVG scatter plot of base vs fine-tuned mass in box
// per image (referring: the "interaction" metric if present, else the first; grounding: head_mass_interaction), and
// one row per image that can be sorted by any column and filtered by action / object category (and a text search on
// id). Links are relative: the page belongs in the batch's output directory, next to the <id>/ folders and the CSVs.
inline std::string report_html(const std::vector<image_row>& rows, const std::vector<task_summary>& summaries,
                               const report_meta& meta) {
    namespace d = report_detail;
    const auto metrics = d::metric_columns(rows);
    std::ostringstream o;
    o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"generator\" "
         "content=\"glimpse-compare\"><title>"
      << d::html_escape(meta.title) << "</title><style>" << d::report_css << "</style></head><body>\n<h1>"
      << d::html_escape(meta.title) << "</h1>\n";
    if (!meta.facts.empty()) {
        o << "<table class=\"facts\">";
        for (const auto& [k, v] : meta.facts)
            o << "<tr><th>" << d::html_escape(k) << "</th><td>" << d::html_escape(v) << "</td></tr>";
        o << "</table>\n";
    }
    o << "<p class=\"ci-method\">95% intervals: " << d::html_escape(ci_method)
      << ". Highlighted: a difference whose interval excludes 0.</p>\n";
    for (const auto& s : summaries) o << d::task_html(s, rows);

    o << "<h2>Images</h2>\n<noscript><p>The per-image table needs JavaScript; per_image_&lt;task&gt;.csv holds the "
         "same numbers.</p></noscript>\n"
      << "<div class=\"controls\" id=\"controls\" hidden><label>action <select id=\"f-action\"><option "
         "value=\"\">all</option></select></label><label>object <select id=\"f-object\"><option "
         "value=\"\">all</option></select></label><label>status <select id=\"f-status\"><option "
         "value=\"\">all</option><option value=\"ok\">not failed</option><option "
         "value=\"failed\">failed</option></select></label><label>id <input type=\"search\" id=\"f-q\" "
         "placeholder=\"contains\"></label><span><span id=\"shown\">"
      << rows.size() << "</span> of " << rows.size()
      << " images</span><span id=\"pager\" hidden><button type=\"button\" id=\"prev\">&lsaquo; prev</button> rows "
         "<span id=\"page-rows\"></span> <button type=\"button\" id=\"next\">next &rsaquo;</button></span></div>\n";
    o << "<div class=\"table-wrap\"><table id=\"images\" data-n=\"" << rows.size() << "\" data-metrics=\""
      << d::html_escape(nlohmann::json(metrics).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      << "\"><thead><tr>";
    const auto th = [&](const char* key, const char* text) {
        o << "<th rowspan=\"2\" data-key=\"" << key << "\">" << text << "</th>";
    };
    o << "<th rowspan=\"2\">figure</th>";
    th("index", "#");
    th("id", "id");
    th("task", "task");
    th("action", "action");
    th("object", "object");
    th("boxes", "boxes (px)");
    for (const auto& m : metrics) o << "<th colspan=\"2\" class=\"metric\">" << d::html_escape(m) << "</th>";
    th("status", "status");
    o << "</tr><tr>";
    for (const auto& m : metrics) {
        const std::string k = d::html_escape(m);
        o << "<th data-key=\"b:" << k << "\">base</th><th data-key=\"f:" << k << "\">fine-tuned</th>";
    }
    o << "</tr></thead><tbody></tbody></table></div>\n";

    nlohmann::json data = nlohmann::json::array();
    for (const auto& r : rows) data.push_back(d::row_json(r, metrics));
    o << "<script type=\"application/json\" id=\"rows\">" << d::script_safe_json(data) << "</script>\n<script>"
      << d::report_js << "</script>\n</body></html>\n";
    return o.str();
}

}  // namespace glimpse::compare
