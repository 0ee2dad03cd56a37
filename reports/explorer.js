/* saliency-lab token explorer: plain JavaScript, no network, no libraries. Reads the JSON document in
   #explorer-data (built by saliency_lab/report/explorer.py) and renders into #explorer-root. */
(function () {
  "use strict";
  var root = document.getElementById("explorer-root");
  var dataEl = document.getElementById("explorer-data");
  if (!root || !dataEl) { return; }
  var D = JSON.parse(dataEl.textContent);
  if (!D || !D.samples) { return; }
  var PAGE = 60;
  var state = { score: D["default"], run: "", label: "", cat: "", q: "", shown: PAGE, selected: null };
  var scales = {};

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) { for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, attrs[k]); } } }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) { return "–"; }
    var a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e5)) ? v.toExponential(3) : v.toPrecision(4);
  }
  function quantile(sorted, p) {
    if (!sorted.length) { return NaN; }
    var i = Math.min(sorted.length - 1, Math.max(0, Math.round(p * (sorted.length - 1))));
    return sorted[i];
  }
  function scaleOf(name) {
    if (scales[name]) { return scales[name]; }
    var vals = [];
    D.samples.forEach(function (s) {
      (s.s[name] || []).forEach(function (v) { if (v !== null && isFinite(v)) { vals.push(v); } });
    });
    vals.sort(function (a, b) { return a - b; });
    var lo = quantile(vals, 0.02), hi = quantile(vals, 0.98);
    if (!(hi > lo)) { hi = lo + 1e-12; }
    scales[name] = { lo: lo, hi: hi };
    return scales[name];
  }
  /* Light yellow -> dark blue; returns [css colour, text colour]. */
  var STOPS = [[255, 247, 188], [161, 218, 180], [65, 182, 196], [34, 94, 168], [12, 44, 132]];
  function colour(v, sc) {
    if (v === null || v === undefined || !isFinite(v)) { return ["transparent", "#1d2330"]; }
    var t = Math.min(1, Math.max(0, (v - sc.lo) / (sc.hi - sc.lo)));
    var x = t * (STOPS.length - 1), i = Math.min(STOPS.length - 2, Math.floor(x)), f = x - i;
    var c = [0, 1, 2].map(function (k) { return Math.round(STOPS[i][k] + f * (STOPS[i + 1][k] - STOPS[i][k])); });
    return ["rgb(" + c.join(", ") + ")", t > 0.55 ? "#ffffff" : "#1d2330"];
  }
  function paint(span, s, i) {
    var c = colour(s.s[state.score] ? s.s[state.score][i] : null, scaleOf(state.score));
    span.style.backgroundColor = c[0];
    span.style.color = c[1];
    span.setAttribute("data-score-value", String(s.s[state.score] ? s.s[state.score][i] : null));
  }

  /* ---- controls ---- */
  var controls = el("div", { "class": "ex-controls" });
  function select(id, label, options, value, onchange) {
    var wrap = el("label", null, label + " ");
    var sel = el("select", { id: id });
    options.forEach(function (o) {
      var opt = el("option", { value: o[0] }, o[1]);
      if (o[0] === value) { opt.selected = true; }
      sel.appendChild(opt);
    });
    sel.addEventListener("change", function () { onchange(sel.value); });
    wrap.appendChild(sel);
    controls.appendChild(wrap);
    return sel;
  }
  select("explorer-score", "colour by", D.scores.map(function (n) { return [n, n]; }), state.score, function (v) {
    state.score = v; recolour(); legend();
    if (state.selected) { showDetail(state.selected[0], state.selected[1]); }
  });
  select("explorer-run", "run", [["", "all runs"]].concat(D.runs.map(function (r, i) { return [String(i), r.id]; })),
    "", function (v) { state.run = v; state.shown = PAGE; render(); });
  select("explorer-label", "labels", [["", "all samples"], ["hal", "with a hallucinated token"],
    ["clean", "labeled, no hallucination"], ["none", "no labeled token"]], "",
    function (v) { state.label = v; state.shown = PAGE; render(); });
  var cats = {};
  D.samples.forEach(function (s) { s.cats.forEach(function (c) { cats[c] = true; }); });
  select("explorer-cat", "object", [["", "any object"]].concat(Object.keys(cats).sort().map(function (c) { return [c, c]; })),
    "", function (v) { state.cat = v; state.shown = PAGE; render(); });
  var search = el("input", { id: "explorer-q", type: "search", placeholder: "search the text" });
  search.addEventListener("input", function () { state.q = search.value.toLowerCase(); state.shown = PAGE; render(); });
  controls.appendChild(search);
  var legendEl = el("div", { "class": "ex-legend", id: "explorer-legend" });
  var countEl = el("div", { "class": "note", id: "explorer-count" });
  var layout = el("div", { "class": "ex-layout" });
  var list = el("div", { "class": "ex-list", id: "explorer-list" });
  var detail = el("div", { "class": "ex-detail", id: "explorer-detail" });
  detail.appendChild(el("p", { "class": "note" }, "Click a token to see its values."));
  var more = el("button", { type: "button", id: "explorer-more" }, "show more");
  more.addEventListener("click", function () { state.shown += PAGE; render(); });
  root.textContent = "";
  root.appendChild(controls);
  root.appendChild(legendEl);
  root.appendChild(countEl);
  layout.appendChild(list);
  layout.appendChild(detail);
  root.appendChild(layout);

  function legend() {
    var sc = scaleOf(state.score);
    legendEl.textContent = "";
    legendEl.appendChild(el("span", null, state.score + ": " + fmt(sc.lo) + " "));
    var bar = el("span", { "class": "ex-bar" });
    bar.style.background = "linear-gradient(to right, " + STOPS.map(function (c) { return "rgb(" + c.join(",") + ")"; }).join(", ") + ")";
    legendEl.appendChild(bar);
    legendEl.appendChild(el("span", null, " " + fmt(sc.hi) + " (2nd to 98th percentile over all tokens)"));
  }

  function matches(s) {
    if (state.run !== "" && String(s.r) !== state.run) { return false; }
    var hal = s.lab.indexOf(1) >= 0, any = s.lab.some(function (v) { return v !== null; });
    if (state.label === "hal" && !hal) { return false; }
    if (state.label === "clean" && (hal || !any)) { return false; }
    if (state.label === "none" && any) { return false; }
    if (state.cat && s.cats.indexOf(state.cat) < 0) { return false; }
    if (state.q && s.text.toLowerCase().indexOf(state.q) < 0) { return false; }
    return true;
  }

  function sampleCard(s, si) {
    var card = el("div", { "class": "ex-sample", "data-sample": s.id, "data-run": D.runs[s.r].id });
    card.appendChild(el("div", { "class": "head" }, D.runs[s.r].id + " · " + s.id));
    var text = el("div", { "class": "text" });
    var pos = 0, spansOk = s.tok.every(function (t) { return t[0] !== null && t[1] !== null; });
    for (var i = 0; i < s.st.length; i++) {
      var a = spansOk ? s.tok[i][0] : null, b = spansOk ? s.tok[i][1] : null;
      if (a !== null && a > pos) { text.appendChild(document.createTextNode(s.text.slice(pos, a))); }
      var shown = (a !== null && b > a) ? s.text.slice(a, b) : (s.tt[i] || "");
      if (!shown.trim()) { shown = shown || "⟨eos⟩"; }
      var cls = "tok" + (s.lab[i] === 1 ? " hal" : s.lab[i] === 0 ? " cor" : "");
      var span = el("span", { "class": cls, "data-si": String(si), "data-i": String(i), "data-step": String(s.st[i]),
                              "data-sample": s.id, "data-run": D.runs[s.r].id, title: "step " + s.st[i] }, shown);
      paint(span, s, i);
      text.appendChild(span);
      if (b !== null) { pos = Math.max(pos, b); }
    }
    if (spansOk && pos < s.text.length) { text.appendChild(document.createTextNode(s.text.slice(pos))); }
    card.appendChild(text);
    return card;
  }

  function render() {
    list.textContent = "";
    var n = 0, total = 0;
    for (var si = 0; si < D.samples.length; si++) {
      if (!matches(D.samples[si])) { continue; }
      total += 1;
      if (n < state.shown) { list.appendChild(sampleCard(D.samples[si], si)); n += 1; }
    }
    countEl.textContent = total + " of " + D.samples.length + " samples match" + (total > n ? "; showing " + n : "");
    if (total > n) { list.appendChild(more); }
  }

  function recolour() {
    var spans = list.querySelectorAll("span.tok");
    for (var k = 0; k < spans.length; k++) {
      var sp = spans[k];
      paint(sp, D.samples[+sp.getAttribute("data-si")], +sp.getAttribute("data-i"));
    }
  }

  list.addEventListener("click", function (ev) {
    var t = ev.target;
    if (!t || !t.classList || !t.classList.contains("tok")) { return; }
    var prev = list.querySelector("span.tok.sel");
    if (prev) { prev.classList.remove("sel"); }
    t.classList.add("sel");
    showDetail(+t.getAttribute("data-si"), +t.getAttribute("data-i"));
  });

  function kv(table, name, value, attrs) {
    var tr = el("tr");
    tr.appendChild(el("th", null, name));
    var td = el("td", attrs || null, typeof value === "number" || value === null ? fmt(value) : value);
    if (typeof value === "number") { td.setAttribute("data-value", String(value)); td.className = "num"; }
    tr.appendChild(td);
    table.appendChild(tr);
  }

  function showDetail(si, i) {
    state.selected = [si, i];
    var s = D.samples[si], run = D.runs[s.r], step = s.st[i];
    detail.textContent = "";
    detail.setAttribute("data-run", run.id);
    detail.setAttribute("data-sample", s.id);
    detail.setAttribute("data-step", String(step));
    var tokText = (s.tok[i][0] !== null && s.tok[i][1] > s.tok[i][0]) ? s.text.slice(s.tok[i][0], s.tok[i][1]) : s.tt[i];
    detail.appendChild(el("h4", null, "“" + tokText + "” · step " + step));
    detail.appendChild(el("div", { "class": "note" }, run.id + " · " + s.id + " · " +
      (s.lab[i] === 1 ? "hallucinated" + (s.obj[i] ? " (" + s.obj[i] + ")" : "") :
       s.lab[i] === 0 ? "correct" + (s.obj[i] ? " (" + s.obj[i] + ")" : "") : "not labeled")));
    var scores = el("table", { "class": "data", "data-detail": "scores" });
    scores.appendChild(el("caption", null, "Scores (mean over layers " + JSON.stringify(run.layers) + ")"));
    D.scores.forEach(function (name) {
      var v = s.s[name] ? s.s[name][i] : null;
      kv(scores, name, v === null ? null : v, { "data-score": name });
    });
    detail.appendChild(scores);
    var lay = s.lay[i] || [];
    if (lay.length) {
      /* One row per value, one column per layer (score layers shaded): narrow enough for the side panel. */
      var lt = el("table", { "class": "data", "data-detail": "layers" });
      lt.appendChild(el("caption", null, "Per layer (row-normalized; shaded: the score layers)"));
      var hr = el("tr");
      hr.appendChild(el("th", null, "layer"));
      lay.forEach(function (r) {
        var th = el("th", { "class": "num" }, String(r[0]));
        if (run.layers.indexOf(r[0]) >= 0) { th.className = "num used"; }
        hr.appendChild(th);
      });
      lt.appendChild(hr);
      D.layer_values.forEach(function (name, k) {
        var tr = el("tr", { "data-row": name });
        if (name === state.score) { tr.className = "chosen"; }
        tr.appendChild(el("th", null, name));
        lay.forEach(function (r) {
          var td = el("td", { "class": "num" + (run.layers.indexOf(r[0]) >= 0 ? " used" : ""), "data-layer": String(r[0]),
                              "data-col": name }, fmt(r[k + 1]));
          if (r[k + 1] !== null) { td.setAttribute("data-value", String(r[k + 1])); }
          tr.appendChild(td);
        });
        lt.appendChild(tr);
      });
      detail.appendChild(lt);
    }
    detail.appendChild(rowView(s, i, run));
    detail.appendChild(imageView(s, i, run));
  }

  function rowView(s, i, run) {
    var box = el("div", { "class": "ex-row", "data-detail": "row" });
    box.appendChild(el("div", { "class": "label" }, "Saliency toward earlier output tokens (S_raw / ‖row‖₂, mean over the score layers)"));
    if (!run.rows) { box.appendChild(el("p", { "class": "note" }, "Rows were not captured for this run (capture with --rows output or --rows all).")); return box; }
    var row = s.row ? s.row[i] : null;
    if (!row || !row.length) { box.appendChild(el("p", { "class": "note" }, "No earlier output tokens (step 0) or no row stored.")); return box; }
    var top = 0;
    row.forEach(function (v) { if (v !== null && v > top) { top = v; } });
    var line = el("div", { "class": "text" });
    for (var j = 0; j < row.length; j++) {
      var v = row[j], t = top > 0 && v !== null ? v / top : 0;
      var sp = el("span", { "class": "rowtok", "data-key-step": String(j), "data-value": String(v), title: fmt(v) }, s.tt[j] || "");
      sp.style.backgroundColor = "rgba(192, 57, 43, " + (0.08 + 0.85 * t).toFixed(3) + ")";
      line.appendChild(sp);
    }
    box.appendChild(line);
    return box;
  }

  function imageView(s, i, run) {
    var box = el("div", { "class": "ex-image", "data-detail": "image" });
    if (s.img === undefined) {
      if (s.img_note) { box.appendChild(el("p", { "class": "note" }, s.img_note)); }
      return box;
    }
    var patch = s.patch ? s.patch[i] : null;
    var canvas = el("canvas", { width: "192", height: "192", "data-patches": patch ? "1" : "0" });
    box.appendChild(canvas);
    if (!patch) {
      box.appendChild(el("p", { "class": "note" }, run.rows === "all" ? "No image-patch row for this token." :
        "The image alone: saliency over image patches needs rows captured with --rows all."));
    } else {
      box.appendChild(el("p", { "class": "note" }, "Red: the token's saliency over the image patches (relative to its largest patch)."));
    }
    var img = new Image();
    img.onload = function () {
      var ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, 0, 0, 192, 192);
      if (patch) {
        var rows = s.grid[0], cols = s.grid[1], w = 192 / cols, h = 192 / rows;
        var bytes = atob(patch);
        for (var p = 0; p < rows * cols && p < bytes.length; p++) {
          var v = bytes.charCodeAt(p) / 255;
          ctx.fillStyle = "rgba(220, 30, 30, " + (0.75 * v).toFixed(3) + ")";
          ctx.fillRect((p % cols) * w, Math.floor(p / cols) * h, w, h);
        }
      }
      canvas.setAttribute("data-drawn", "1");
    };
    img.src = D.images[s.img];
    return box;
  }

  legend();
  render();
  root.setAttribute("data-explorer-ready", "1");
})();
