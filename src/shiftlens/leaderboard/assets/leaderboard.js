/* The Leaderboard page: a sortable table and a scatter of any two metrics, drawn in SVG.
 * Data arrive as a script that calls SL.loaded(key, payload) (fetch() of local files is blocked under file://). */
(function () {
  "use strict";
  const SL = (window.SL = window.SL || {});
  const NS = "http://www.w3.org/2000/svg";
  let D = null;
  let sortState = { col: null, dir: "asc" };  // null: the CSV's order (trained rows first, each by rank_mean)

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(3);
    return String(v);
  }
  function direction(m) {
    if (m.direction === "neither") return "not a measure of shift invariance: more or less is not more shift-invariant";
    return m.direction === "higher" ? "higher = more shift-invariant" : "lower = more shift-invariant";
  }

  function columns() {
    const cols = ["model", "layer", "weights", "net_stride"].map((n) => ({ name: n, title: D.identity[n], text: n !== "net_stride" }));
    D.metrics.forEach((m) => cols.push({ name: m.name, title: `${m.definition}. ${direction(m)}${m.ranked ? "" : " (not ranked)"}` }));
    cols.push({ name: "rank_mean", title: "mean of the row's ranks over the metrics it has (1 = most invariant); trained and untrained rows are ranked apart" });
    D.ranks.forEach((r) => cols.push({ name: r, title: `rank by ${r.slice(5)} (1 = most invariant) among rows of the same training` }));
    Object.entries(D.published).forEach(([n, t]) => cols.push({ name: n, title: t, published: true }));
    cols.push({ name: "published_protocol", title: "the published number's protocol and network variant", published: true, text: true });
    cols.push({ name: "published_source", title: "where the published numbers come from", published: true, text: true });
    return cols;
  }

  function sorted() {
    const { col, dir } = sortState;
    if (col === null) return D.rows.slice();
    const sign = dir === "asc" ? 1 : -1;
    return D.rows.slice().sort((a, b) => {
      const x = a[col], y = b[col];
      if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;  // empty cells last
      if (y === null || y === undefined) return -1;
      if (typeof x === "number" && typeof y === "number") return sign * (x - y);
      return sign * String(x).localeCompare(String(y));
    });
  }

  function renderTable() {
    const cols = columns();
    const head = document.querySelector("#board thead");
    const body = document.querySelector("#board tbody");
    head.replaceChildren();
    body.replaceChildren();
    const tr = el("tr");
    cols.forEach((c) => {
      const th = el("th", { title: c.title, "data-col": c.name, class: (c.published ? "published " : "") + (c.text ? "text" : "") }, c.name);
      if (sortState.col === c.name) th.dataset.sort = sortState.dir;
      th.addEventListener("click", () => {
        sortState = { col: c.name, dir: sortState.col === c.name && sortState.dir === "asc" ? "desc" : "asc" };
        renderTable();
      });
      tr.appendChild(th);
    });
    head.appendChild(tr);
    sorted().forEach((r) => {
      const row = el("tr", { "data-model": r.model, "data-layer": r.layer, class: r.untrained ? "untrained" : "" });
      cols.forEach((c) => {
        const td = el("td", { "data-col": c.name, class: c.text ? "text" : "" });
        if (typeof r[c.name] === "number") td.dataset.value = String(r[c.name]);
        if (c.name === "model" && r.site) {
          td.appendChild(el("a", { href: "../" + r.site, title: "this model's own results site" }, r.model));
        } else if (c.name === "weights" && r.untrained) {
          td.textContent = r.weights;
          td.appendChild(el("span", { class: "badge" }, "UNTRAINED"));
        } else if (c.name === "grid_share" && typeof r.grid_share !== "number" && r.grid_share_note) {
          td.textContent = "n/a";  // not measurable at this run's stride or map size: why, on hover
          td.title = r.grid_share_note;
          td.classList.add("na");
        } else {
          td.textContent = fmt(r[c.name]);
        }
        row.appendChild(td);
      });
      body.appendChild(row);
    });
  }

  function numericColumns() {
    return columns().filter((c) => !c.text && c.name !== "net_stride"
      && D.rows.some((r) => typeof r[c.name] === "number"));
  }

  function renderScatter() {
    const svg = document.getElementById("scatter");
    const xs = document.getElementById("sx").value, ys = document.getElementById("sy").value;
    svg.replaceChildren();
    const W = +svg.getAttribute("width"), H = +svg.getAttribute("height"), P = 50;
    const pts = D.rows.filter((r) => typeof r[xs] === "number" && typeof r[ys] === "number");
    svg.dataset.x = xs; svg.dataset.y = ys; svg.dataset.points = String(pts.length);
    document.getElementById("scatter-note").textContent = `${pts.length} of ${D.rows.length} rows have both`;
    const range = (k) => {
      const v = pts.map((r) => r[k]);
      let lo = Math.min(...v), hi = Math.max(...v);
      if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
      const pad = (hi - lo) * 0.05;  // keep points off the axes
      return [lo - pad, hi + pad];
    };
    const [x0, x1] = pts.length ? range(xs) : [0, 1], [y0, y1] = pts.length ? range(ys) : [0, 1];
    const sx = (v) => P + (v - x0) / (x1 - x0) * (W - 2 * P), sy = (v) => H - P - (v - y0) / (y1 - y0) * (H - 2 * P);
    const add = (tag, attrs, text) => {
      const e = document.createElementNS(NS, tag);
      Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e);
      return e;
    };
    add("line", { x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#999" });
    add("line", { x1: P, y1: P, x2: P, y2: H - P, stroke: "#999" });
    add("text", { x: W / 2, y: H - 12, "text-anchor": "middle", "font-size": 12 }, xs);
    add("text", { x: 14, y: H / 2, "text-anchor": "middle", "font-size": 12, transform: `rotate(-90 14 ${H / 2})` }, ys);
    [[x0, P, H - P + 16, "start"], [x1, W - P, H - P + 16, "end"]].forEach(([v, x, y, a]) => add("text", { x, y, "text-anchor": a, "font-size": 11 }, fmt(v)));
    [[y0, P - 4, H - P, "end"], [y1, P - 4, P + 4, "end"]].forEach(([v, x, y, a]) => add("text", { x, y, "text-anchor": a, "font-size": 11 }, fmt(v)));
    pts.forEach((r) => {
      const c = add("circle", { cx: sx(r[xs]), cy: sy(r[ys]), r: 5, class: r.untrained ? "untrained" : "", "data-model": r.model, "data-layer": r.layer });
      const t = document.createElementNS(NS, "title");
      t.textContent = `${r.model}:${r.layer} (${r.weights}${r.untrained ? ", UNTRAINED" : ""}): ${xs} ${fmt(r[xs])}, ${ys} ${fmt(r[ys])}`;
      c.appendChild(t);
    });
  }

  function render() {
    const notes = document.getElementById("notes");
    (D.notes || []).forEach((n) => notes.appendChild(el("p", { class: "note" }, n)));
    renderTable();
    const cols = numericColumns();
    ["sx", "sy"].forEach((id, i) => {
      const s = document.getElementById(id);
      cols.forEach((c) => s.appendChild(el("option", { value: c.name, title: c.title }, c.name)));
      const want = i === 0 ? "canvas_consistency" : "global_invariance";
      if (cols.some((c) => c.name === want)) s.value = want;
      s.addEventListener("change", renderScatter);
    });
    renderScatter();
    if (D.figure) {
      document.getElementById("figure").src = D.figure;
      document.getElementById("figure-section").hidden = false;
    }
    document.body.dataset.ready = "1";
  }

  SL.loaded = function (key, payload) {
    if (key !== "leaderboard") return;
    D = payload;
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", render); else render();
  };
})();
