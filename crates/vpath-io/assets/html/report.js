// vpath HTML report: the path table (search, sort, paging) and the
// waterfall of the selected path. Hand-written, no library. The data is
// the JSON in #vpath-data; see crates/vpath-io/src/export/html/mod.rs for
// its layout.
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('vpath-data').textContent);
  var KIND = ['server', 'origin', 'remote'];
  var KIND_SHORT = ['S', 'O', 'R'];
  var PAGE = 100;
  // Span fields (see SPAN_FIELDS in mod.rs).
  var DEPTH = 0, PARENT = 1, KINDF = 2, NODE = 3, PLACE = 4, LOCAL = 5, REMOTE = 6,
    START = 7, DUR = 8, BIN = 9, BOUT = 10, ISSUES = 11, NAME = 12;
  // Path fields.
  var PID = 0, COMPLETE = 1, WALL_MS = 2, PDUR = 3, SPANS = 4;

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function fmtDur(ns) {
    var a = Math.abs(ns), v, u;
    // Thresholds just under the next unit, so that 999.96 µs reads 1.00 ms.
    if (a >= 999.5e6) { v = ns / 1e9; u = 's'; }
    else if (a >= 999.5e3) { v = ns / 1e6; u = 'ms'; }
    else if (a >= 999.5) { v = ns / 1e3; u = 'µs'; }
    else { return Math.round(ns) + ' ns'; }
    var d = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
    return v.toFixed(d) + ' ' + u;
  }
  function fmtTick(ns) {
    if (ns === 0) return '0';
    var s = fmtDur(ns);
    return s.replace(/\.0+ /, ' ').replace(/(\.\d*?)0+ /, '$1 ');
  }
  function fmtBytes(b) {
    if (b >= 1048576) return (b / 1048576).toFixed(1) + ' MiB';
    if (b >= 10240) return (b / 1024).toFixed(0) + ' KiB';
    if (b >= 1024) return (b / 1024).toFixed(1) + ' KiB';
    return b + ' B';
  }
  function isoTime(ms) {
    var d = new Date(ms);
    return isNaN(d.getTime()) ? '' : d.toISOString().replace('T', ' ').replace('Z', ' UTC');
  }
  function node(k) { return D.nodes[k]; }
  // What a span is called: its name when the analysis gives one (a
  // protocol's operation), else its tier's program.
  function spanName(sp) {
    if (sp[NAME]) return sp[NAME];
    return node(sp[NODE]).program;
  }
  function place(sp) { return D.places[sp[PLACE]]; }

  // ---- the path table ----------------------------------------------------
  var paths = D.paths;
  var t0 = Infinity, maxDur = 1;
  paths.forEach(function (p) {
    if (p[WALL_MS] < t0) t0 = p[WALL_MS];
    if (p[PDUR] > maxDur) maxDur = p[PDUR];
  });
  var hayCache = [];
  function hay(i) {
    var h = hayCache[i];
    if (h !== undefined) return h;
    var p = paths[i], parts = ['#' + p[PID], p[COMPLETE] ? 'complete' : 'incomplete'];
    p[SPANS].forEach(function (sp) {
      var n = node(sp[NODE]), pl = place(sp);
      parts.push(n.program, n.tier, n.group, D.eps[sp[LOCAL]], D.eps[sp[REMOTE]], KIND[sp[KINDF]]);
      if (sp[KINDF] !== 2) parts.push(pl[4], pl[5], pl[0], String(pl[2]), String(pl[3]));
      if (sp[NAME]) parts.push(sp[NAME]);
      sp[ISSUES].forEach(function (k) { parts.push(D.issues[k]); });
    });
    h = parts.join('\u0001').toLowerCase();
    hayCache[i] = h;
    return h;
  }
  function chain(p) {
    var seen = {}, out = [];
    p[SPANS].forEach(function (sp) {
      var n = node(sp[NODE]).program;
      if (!seen[n]) { seen[n] = 1; out.push(n); }
    });
    return out;
  }
  function pathIssues(p) {
    var set = {};
    p[SPANS].forEach(function (sp) { sp[ISSUES].forEach(function (k) { set[D.issues[k]] = 1; }); });
    return Object.keys(set).sort();
  }

  var state = { q: '', status: 'all', key: 'id', dir: 1, shown: PAGE, sel: -1 };
  var view = [];
  var tbody = document.querySelector('#path-table tbody');
  var countEl = document.getElementById('path-count');
  var moreEl = document.getElementById('path-more');

  function keyOf(i) {
    var p = paths[i];
    switch (state.key) {
      case 'dur': return p[PDUR];
      case 'spans': return p[SPANS].length;
      case 'at': return p[WALL_MS];
      case 'status': return p[COMPLETE];
      default: return p[PID];
    }
  }
  function apply() {
    var words = state.q.toLowerCase().split(/\s+/).filter(Boolean);
    view = [];
    for (var i = 0; i < paths.length; i++) {
      var p = paths[i];
      if (state.status === 'complete' && !p[COMPLETE]) continue;
      if (state.status === 'incomplete' && p[COMPLETE]) continue;
      if (words.length) {
        var h = hay(i), ok = true;
        for (var w = 0; w < words.length; w++) if (h.indexOf(words[w]) < 0) { ok = false; break; }
        if (!ok) continue;
      }
      view.push(i);
    }
    view.sort(function (a, b) {
      var ka = keyOf(a), kb = keyOf(b);
      if (ka !== kb) return ka < kb ? -state.dir : state.dir;
      return paths[a][PID] - paths[b][PID];
    });
    renderTable();
  }
  function renderTable() {
    var n = Math.min(state.shown, view.length), html = [];
    for (var r = 0; r < n; r++) {
      var i = view[r], p = paths[i], iss = pathIssues(p);
      var w = Math.max(2, Math.round(70 * Math.log(1 + p[PDUR]) / Math.log(1 + maxDur)));
      html.push('<tr data-i="' + i + '"' + (i === state.sel ? ' class="sel"' : '') + '>' +
        '<td class="num mono">' + p[PID] + '</td>' +
        '<td>' + (p[COMPLETE] ? '<span class="pill ok">complete</span>' : '<span class="pill bad">incomplete</span>') + '</td>' +
        '<td class="num" style="white-space:nowrap">' + fmtDur(p[PDUR]) + '<span class="durbar" style="width:' + w + 'px"></span></td>' +
        '<td class="num">' + p[SPANS].length + '</td>' +
        '<td class="tiers" title="' + esc(chain(p).join(' › ')) + '">' + esc(chain(p).join(' › ')) + '</td>' +
        '<td class="num mono">+' + ((p[WALL_MS] - t0) / 1000).toFixed(3) + ' s</td>' +
        '<td>' + iss.map(function (x) { return '<span class="pill warn">' + esc(x) + '</span>'; }).join(' ') + '</td></tr>');
    }
    tbody.innerHTML = html.join('');
    countEl.textContent = view.length === paths.length
      ? paths.length + ' paths'
      : view.length + ' of ' + paths.length + ' paths match';
    moreEl.style.display = view.length > n ? '' : 'none';
    moreEl.querySelector('button').textContent = 'Show ' + Math.min(PAGE, view.length - n) + ' more (' + (view.length - n) + ' left)';
    document.querySelectorAll('#path-table th[data-key]').forEach(function (th) {
      th.classList.toggle('sorted', th.dataset.key === state.key);
      th.classList.toggle('asc', state.dir > 0);
    });
  }

  document.getElementById('path-search').addEventListener('input', function (e) {
    state.q = e.target.value; state.shown = PAGE; apply();
  });
  document.querySelectorAll('#path-status button').forEach(function (b) {
    b.addEventListener('click', function () {
      document.querySelectorAll('#path-status button').forEach(function (x) { x.classList.remove('on'); });
      b.classList.add('on'); state.status = b.dataset.status; state.shown = PAGE; apply();
    });
  });
  document.querySelectorAll('#path-table th[data-key]').forEach(function (th) {
    th.addEventListener('click', function () {
      var k = th.dataset.key;
      if (state.key === k) state.dir = -state.dir;
      else { state.key = k; state.dir = (k === 'dur' || k === 'spans') ? -1 : 1; }
      apply();
    });
  });
  document.getElementById('slowest').addEventListener('click', function () {
    state.key = 'dur'; state.dir = -1; apply();
    if (view.length) select(view[0]);
  });
  moreEl.querySelector('button').addEventListener('click', function () { state.shown += PAGE; renderTable(); });
  tbody.addEventListener('click', function (e) {
    var tr = e.target.closest('tr');
    if (tr) select(+tr.dataset.i);
  });

  // ---- the waterfall -----------------------------------------------------
  var wf = document.getElementById('waterfall');
  function niceStep(span) {
    var raw = span / 6, mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    var f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
  }
  function select(i) {
    state.sel = i;
    document.querySelectorAll('#path-table tbody tr').forEach(function (tr) {
      tr.classList.toggle('sel', +tr.dataset.i === i);
    });
    var p = paths[i], spans = p[SPANS];
    var lo = 0, hi = 1;
    spans.forEach(function (sp) { lo = Math.min(lo, sp[START]); hi = Math.max(hi, sp[START] + sp[DUR]); });
    var total = hi - lo, step = niceStep(total);
    var ticks = '';
    for (var t = Math.ceil(lo / step) * step; t <= hi; t += step) {
      ticks += '<i style="left:' + ((t - lo) / total * 100).toFixed(3) + '%"></i>';
    }
    var axisTicks = '';
    for (var t2 = Math.ceil(lo / step) * step; t2 <= hi; t2 += step) {
      var left = (t2 - lo) / total * 100;
      if (left > 96) break;
      axisTicks += '<b style="left:' + left.toFixed(3) + '%">' + fmtTick(t2) + '</b>';
    }
    var rows = ['<div class="wf-row axis"><div>span</div><div>thread</div><div>bytes in / out</div>' +
      '<div class="wf-track"><div class="wf-ticks">' + axisTicks + '</div></div></div>'];
    var issueSpans = 0;
    spans.forEach(function (sp, k) {
      var n = node(sp[NODE]), pl = place(sp), kind = sp[KINDF];
      var left = (sp[START] - lo) / total * 100, width = sp[DUR] / total * 100;
      var iss = sp[ISSUES].map(function (x) { return D.issues[x]; });
      if (iss.length) issueSpans++;
      var thread = kind === 2 ? '(not observed)' : pl[4] + ' [' + pl[2] + '/' + pl[3] + ']';
      var arrow = kind === 1 ? ' → ' : ' ← ';
      var tip = KIND[kind] + ' span: ' + spanName(sp) + '\n' +
        D.eps[sp[LOCAL]] + arrow + D.eps[sp[REMOTE]] + '\n' +
        (kind === 2 ? 'callee not observed (what the caller saw)' : 'thread ' + thread + ' in ' + pl[0] + ' netns:' + pl[1]) + '\n' +
        'starts at +' + fmtDur(sp[START]) + ', lasts ' + fmtDur(sp[DUR]) + '\n' +
        'bytes in ' + sp[BIN] + ', out ' + sp[BOUT] + (iss.length ? '\nissues: ' + iss.join(', ') : '');
      // The duration beside its bar; inside it when the bar reaches the end.
      var durCls = 'wf-dur', durPos;
      if (left + width <= 82) durPos = 'left:calc(' + (left + width).toFixed(3) + '% + 6px)';
      else if (width >= 12) { durCls += ' in'; durPos = 'left:calc(' + left.toFixed(3) + '% + 6px)'; }
      else durPos = 'right:calc(' + (100 - left).toFixed(3) + '% + 6px)';
      rows.push('<div class="wf-row" title="' + esc(tip) + '">' +
        '<div class="wf-label" style="padding-left:' + (10 + 18 * sp[DEPTH]) + 'px">' +
        '<span class="pill kind" title="' + KIND[kind] + '">' + KIND_SHORT[kind] + '</span>' +
        '<span class="name">' + esc(spanName(sp)) + '</span>' +
        '<span class="ep">' + esc(kind === 1 ? '→ ' + D.eps[sp[REMOTE]] : D.eps[sp[LOCAL]]) + '</span>' +
        iss.map(function (x) { return '<span class="pill bad">' + esc(x) + '</span>'; }).join('') + '</div>' +
        '<div class="wf-thread">' + esc(thread) + '</div>' +
        '<div class="wf-bytes">' + fmtBytes(sp[BIN]) + ' / ' + fmtBytes(sp[BOUT]) + '</div>' +
        '<div class="wf-track"><div class="wf-ticks">' + ticks + '</div>' +
        '<div class="wf-bar' + (iss.length ? ' issue' : '') + '" data-span="' + k + '" style="left:' + left.toFixed(3) + '%;width:' +
        width.toFixed(3) + '%;background:' + n.color + '"></div>' +
        '<span class="' + durCls + '" style="' + durPos + '">' + fmtDur(sp[DUR]) + '</span></div></div>');
    });
    var root = spans[0];
    var head = '<div class="wf-head"><h3>Path #' + p[PID] + '</h3>' +
      (p[COMPLETE] ? '<span class="pill ok">complete</span>' : '<span class="pill bad">incomplete</span>') +
      '<span class="meta">' + fmtDur(p[PDUR]) + ' end to end · ' + spans.length + ' spans · ' +
      esc(spanName(root)) + ' ' + esc(KIND[root[KINDF]]) + ' · started ' + esc(isoTime(p[WALL_MS])) + '</span></div>';
    var foot = issueSpans
      ? '<div class="wf-issues">' + issueSpans + ' span' + (issueSpans > 1 ? 's are' : ' is') +
        ' not known to be exact; the issues say why (see the capture health section for what each means).</div>'
      : '';
    wf.innerHTML = '<div class="wf">' + head + '<div class="wf-grid">' + rows.join('') + '</div>' + foot + '</div>';
    wf.dataset.path = p[PID];
    wf.dataset.spans = spans.length;
  }

  // ---- CDF legend: highlight a line --------------------------------------
  document.querySelectorAll('table.legend[data-chart]').forEach(function (tbl) {
    var svg = document.querySelector('#' + tbl.dataset.chart + ' svg.cdf');
    if (!svg) return;
    tbl.querySelectorAll('tbody tr[data-series]').forEach(function (tr) {
      tr.addEventListener('mouseenter', function () {
        svg.classList.add('focus');
        svg.querySelectorAll('polyline.cdf-line').forEach(function (l) {
          l.classList.toggle('hl', l.dataset.series === tr.dataset.series);
        });
      });
      tr.addEventListener('mouseleave', function () { svg.classList.remove('focus'); });
    });
  });

  apply();
  // Start on the path named in the URL (#path-ID), else the slowest.
  var want = /^#path-(\d+)$/.exec(location.hash);
  var start = -1;
  if (want) paths.forEach(function (p, i) { if (String(p[PID]) === want[1]) start = i; });
  if (start < 0 && paths.length) {
    start = 0;
    paths.forEach(function (p, i) { if (p[PDUR] > paths[start][PDUR]) start = i; });
  }
  if (start >= 0) select(start);
  else wf.innerHTML = '<div class="wf-empty">No paths to show.</div>';
  document.documentElement.dataset.ready = '1';
})();
