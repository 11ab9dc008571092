// The Arithmetic page: renders window.SL_ARITH (data/arithmetic.js) into tables and figures. No network.
"use strict";
(function () {
  const D = window.SL_ARITH;
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const fmt = (v) => {
    if (v === null || v === undefined || v === "") return "";
    const n = Number(v);
    if (typeof v === "boolean" || !isFinite(n) || String(v).trim() === "") return String(v);
    return Number.isInteger(n) && !String(v).includes(".") ? String(n) : n.toFixed(3);
  };

  function parseCSV(text) {
    const rows = [];
    let row = [], cell = "", quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
        else if (c === '"') quoted = false;
        else cell += c;
      } else if (c === '"') quoted = true;
      else if (c === ",") { row.push(cell); cell = ""; }
      else if (c === "\n") { row.push(cell); rows.push(row); row = []; cell = ""; }
      else if (c !== "\r") cell += c;
    }
    if (cell !== "" || row.length) { row.push(cell); rows.push(row); }
    return { header: rows[0] || [], rows: rows.slice(1) };
  }

  // A table whose column headers sort it (numbers as numbers).
  function table(header, rows, id) {
    const t = el("table", { id: id });
    const head = el("tr");
    const textCol = header.map((h, j) => rows.some((r) => r[j] !== "" && r[j] !== null && isNaN(Number(r[j]))));
    header.forEach((h, j) => {
      const th = el("th", { class: textCol[j] ? "text" : "" }, h);
      th.addEventListener("click", () => {
        const dir = th.dataset.dir === "asc" ? -1 : 1;
        th.dataset.dir = dir === 1 ? "asc" : "desc";
        const body = [...t.querySelectorAll("tr")].slice(1);
        body.sort((a, b) => {
          const x = a.children[j].dataset.v, y = b.children[j].dataset.v;
          const nx = Number(x), ny = Number(y);
          return dir * (!isNaN(nx) && !isNaN(ny) && x !== "" && y !== "" ? nx - ny : x.localeCompare(y));
        });
        body.forEach((r) => t.appendChild(r));
      });
      head.appendChild(th);
    });
    t.appendChild(head);
    for (const r of rows) {
      const tr = el("tr");
      r.forEach((v, j) => {
        const td = el("td", { class: textCol[j] ? "text" : "" }, textCol[j] ? String(v ?? "") : fmt(v));
        td.dataset.v = v === null || v === undefined ? "" : String(v);
        tr.appendChild(td);
      });
      t.appendChild(tr);
    }
    return t;
  }

  // Wide tables scroll inside their own box (as on the main page), so the page never gets wider than the window.
  function scrollBox(child) {
    const box = el("div", { class: "scroll-x" });
    box.appendChild(child);
    return box;
  }

  function csvTable(name, target, id) {
    const text = D.tables[name];
    if (!text) { $(target).appendChild(el("p", { class: "note" }, `no ${name}.csv in this run`)); return; }
    const { header, rows } = parseCSV(text);
    $(target).appendChild(scrollBox(table(header, rows, id)));
  }

  function figure(file, alt) {
    const f = el("figure");
    f.appendChild(el("img", { src: file, alt: alt, loading: "eager" }));
    return f;
  }

  document.title = D.title;
  $("title").textContent = D.title;
  const S = D.summary;
  if (S.untrained) {
    const names = S.models.filter((m) => m.untrained).map((m) => m.model).join(", ");
    $("untrained").hidden = false;
    $("untrained").textContent = `Untrained: ${names} ran with random weights (random (untrained)); their numbers describe the architecture, not a trained network.`;
  }

  const list = $("expression-list");
  if (!D.expressions.length) list.appendChild(el("p", { class: "note" }, "this run has no expressions"));
  for (const e of D.expressions) {
    const box = el("div", { class: "expression", "data-name": e.name });
    box.appendChild(el("h3", {}, `${e.name}: ${e.text}`));
    const cols = ["model", "layer", "weights", "probe", "cos_result", "cos_uncorrected", "cos_best_operand", "cos_gain", "rank", "n_candidates", "pixel_error"];
    box.appendChild(scrollBox(table(["model", "layer", "weights", "probe", "cos(r,f(E))", "cos without blank", "best operand", "gain", "rank of E", "candidates", "pixel error"],
      e.rows.map((r) => cols.map((c) => (c.startsWith("cos") && r[c] !== null ? Number(r[c]).toFixed(3) : r[c]))), `expr-${e.name}`)));
    if (e.figure) box.appendChild(figure(e.figure, `${e.name}: operands, expected scene and inversions per layer`));
    list.appendChild(box);
  }

  csvTable("arithmetic", "summary-table", "summary");
  if (D.tables.arithmetic_layers) {
    $("layers").hidden = false;
    csvTable("arithmetic_layers", "layers-table", "layers-diff");
  }
  const retrieval = D.figures.find((f) => f.name === "arithmetic_retrieval");
  if (retrieval) $("retrieval-figure").appendChild(figure(retrieval.file, "retrieval accuracy and pixel error"));
  csvTable("arithmetic_inversions", "inversion-table", "inversions-table");
  csvTable("arithmetic_per_problem", "per-problem-table", "per-problem");

  const info = [["models", S.models.map((m) => `${m.model} (${m.layers.join(", ")}; ${m.weights})`).join("; ")],
    ["config", Object.entries(S.config).map(([k, v]) => `${k}=${v}`).join(", ")],
    ["device", `${S.device.type} (${S.device.name}), ${S.precision}`],
    ["status", `${S.status}, started ${S.started}${S.finished ? ", finished " + S.finished : ""}`],
    ["fingerprint", S.fingerprint]];
  for (const n of S.notes) info.push(["note", n]);
  $("run-summary").appendChild(scrollBox(table(["", ""], info, "run-info")));
  for (const name of Object.keys(D.tables)) {
    const li = el("li");
    li.appendChild(el("a", { href: `tables/${name}.csv`, download: "" }, `tables/${name}.csv`));
    $("downloads").appendChild(li);
  }
  document.body.dataset.ready = "1";
})();
