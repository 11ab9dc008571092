/* shiftlens results site: plain JavaScript, no dependencies, works from file:// and any static host.
 *
 * Data arrive as scripts that call SL.loaded(key, payload) (fetch() of local files is blocked under file://).
 * Maps are quantised, prediction-coded and deflated (see decode below): value = lo + q * step.
 */
(function () {
  'use strict';
  const IDX = window.SL_INDEX;
  const SL = (window.SL = window.SL || {});
  const cache = new Map();
  const pending = new Map();
  SL.loaded = function (key, payload) { cache.set(key, payload); };

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const kid of kids) if (kid != null) e.append(kid);
    return e;
  };

  if (!IDX) {
    document.body.prepend(el('p', { class: 'banner', text: 'data/index.js is missing: rebuild the site with shiftlens report.' }));
    return;
  }

  // ---------------------------------------------------------------------------------------------- loading
  function load(src, key) {
    if (cache.has(key)) return Promise.resolve(cache.get(key));
    if (pending.has(src)) return pending.get(src);
    const p = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = src;
      s.async = true;
      s.onload = () => (cache.has(key) ? resolve(cache.get(key)) : reject(new Error('no data in ' + src)));
      s.onerror = () => { pending.delete(src); reject(new Error('could not load ' + src)); };
      document.head.appendChild(s);
    });
    pending.set(src, p);
    return p;
  }

  function b64bytes(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // A map payload {lo, step, shape, z} (site/__init__.py, encode_map): z is base64 of zlib-deflated bytes, a low-byte
  // plane then a high-byte plane of zigzagged MED prediction residuals of q; value = lo + q * step. The browser's
  // DecompressionStream inflates bytes in memory, so this works under file:// too.
  async function inflate(b64) {
    const stream = new Blob([b64bytes(b64)]).stream().pipeThrough(new DecompressionStream('deflate'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  function unpredict(planes, shape) {
    const half = planes.length >> 1;
    const n1 = shape[shape.length - 1] || 1;
    const n0 = shape.length >= 2 ? shape[shape.length - 2] : 1;
    const q = new Uint16Array(half);
    for (let base = 0; base < half; base += n0 * n1) {
      for (let i = 0; i < n0; i++) {
        for (let j = 0; j < n1; j++) {
          const k = base + i * n1 + j;
          const z = planes[k] | (planes[half + k] << 8);
          const r = (z >>> 1) ^ -(z & 1);
          let p;
          if (i === 0) p = j === 0 ? 0 : q[k - 1];
          else if (j === 0) p = q[k - n1];
          else {
            const a = q[k - 1], b = q[k - n1], c = q[k - n1 - 1];
            const hi = a > b ? a : b, lo = a > b ? b : a;
            p = c >= hi ? lo : c <= lo ? hi : a + b - c;
          }
          q[k] = (p + r) & 0xffff;
        }
      }
    }
    return q;
  }

  // A thinned map (payload.thin = [n, every]; site/__init__.py, thin_index) keeps every `every`-th position per side
  // plus the centre and the last; each of the n positions reads its nearest kept one (the lower on a tie).
  function thinIndex(n, every) {
    const keep = new Set([Math.floor((n - 1) / 2), n - 1]);
    for (let i = 0; i < n; i += Math.max(every, 1)) keep.add(i);
    return Array.from(keep).sort((a, b) => a - b);
  }

  function nearestKept(n, keep) {
    const out = new Int32Array(n);
    let k = 0;
    for (let i = 0; i < n; i++) {
      while (k + 1 < keep.length && Math.abs(keep[k + 1] - i) < Math.abs(i - keep[k])) k++;
      out[i] = k;
    }
    return out;
  }

  function expandThin(values, shape, thin) {
    const [n, every] = thin;
    const keep = thinIndex(n, every);
    const near = nearestKept(n, keep);
    const m = keep.length;
    const lead = values.length / (m * m);
    const out = new Float64Array(lead * n * n);
    for (let a = 0; a < lead; a++) {
      for (let r = 0; r < n; r++) {
        const src = a * m * m + near[r] * m;
        const dst = a * n * n + r * n;
        for (let c = 0; c < n; c++) out[dst + c] = values[src + near[c]];
      }
    }
    return { values: out, shape: shape.slice(0, -2).concat([n, n]), kept: keep };
  }

  async function decodePayload(payload) {
    const q = unpredict(await inflate(payload.z), payload.shape);
    let values = new Float64Array(q.length);
    let min = Infinity;
    for (let i = 0; i < q.length; i++) {
      const v = payload.lo + q[i] * payload.step;
      values[i] = v;
      if (v < min) min = v;
    }
    let shape = payload.shape, kept = null;
    if (payload.thin) ({ values, shape, kept } = expandThin(values, payload.shape, payload.thin));
    return { shape, values, lo: payload.lo, step: payload.step, min, thin: payload.thin ? payload.thin[1] : 1,
      kept: kept ? new Set(kept) : null };
  }
  SL.decodeMap = decodePayload; // tests compare it with site.decode_map

  const decoded = new Map();
  function decode(key, payload) {
    if (!decoded.has(key)) decoded.set(key, decodePayload(payload));
    return decoded.get(key);
  }
  // ---------------------------------------------------------------------------------------------- index helpers
  const groups = IDX.groups;
  const kinds = Object.keys(IDX.kinds);
  const uniq = (a) => Array.from(new Set(a));
  const modelsFor = (kind) => IDX.models.filter((m) => groups.some((g) => g.kind === kind && g.model === m));
  const layersFor = (kind, model) => uniq(groups.filter((g) => g.kind === kind && g.model === model).map((g) => g.layer));
  const sizesFor = (kind) => IDX.sizes.filter((s) => groups.some((g) => g.kind === kind && g.size === s));
  const findGroup = (kind, model, layer, size) =>
    groups.find((g) => g.kind === kind && g.model === model && g.layer === layer && g.size === size);
  const modelInfo = (model) => (IDX.summary.models || []).find((m) => m.model === model) || {};
  const kindScale = (kind) => (IDX.kinds[kind] || {}).scale || 'unit';

  function combos(kind) {
    const out = [];
    for (const m of modelsFor(kind)) for (const l of layersFor(kind, m)) out.push([m, l]);
    return out;
  }

  function anchorCell(name, n) {
    const c = Math.floor((n - 1) / 2);
    return { TL: [0, 0], TR: [0, n - 1], C: [c, c], BL: [n - 1, 0], BR: [n - 1, n - 1] }[name];
  }

  // The anti-aliased (NAME_aa, NAME_aaK) or adaptive-polyphase (NAME_aps) twin of a model, or the plain model of a
  // twin; a model's own weights suffix (NAME@WEIGHTS) carries over, so alexnet@flip.pth pairs with alexnet_aa@flip.pth.
  function twinOf(model, kind) {
    const models = modelsFor(kind);
    const at = model.indexOf('@');
    const base = at < 0 ? model : model.slice(0, at);
    const weights = at < 0 ? '' : model.slice(at);
    const m = base.match(/^(.+)_(aa\d*|aps)$/);
    let cands;
    if (m) cands = [m[1] + weights];
    else {
      cands = [base + '_aa' + weights, base + '_aps' + weights];
      for (const x of models) {
        const xa = x.indexOf('@');
        const xb = xa < 0 ? x : x.slice(0, xa);
        if ((xa < 0 ? '' : x.slice(xa)) === weights && xb.startsWith(base + '_') && /^_(aa\d+|aps)$/.test(xb.slice(base.length))) cands.push(x);
      }
    }
    return cands.find((c) => c !== model && models.includes(c)) || null;
  }

  const cmaps = {};
  for (const [name, b64] of Object.entries(IDX.colormaps)) cmaps[name] = b64bytes(b64);
  const classColour = {};
  for (const [c, info] of Object.entries(IDX.classes || {})) classColour[c] = info.colour;

  // ---------------------------------------------------------------------------------------------- state
  const DEFAULT_CMAP = cmaps.hot ? 'hot' : Object.keys(cmaps)[0];
  const S = {
    kind: kinds.includes('similarity') ? 'similarity' : kinds[0],
    size: null,
    anchor: IDX.anchors.includes('C') ? 'C' : IDX.anchors[0],
    sel: 'all',
    pcat: '', // the patch list shows this category only ('' = every category)
    search: '', // and the patches whose id or category holds every word of this
    cmap: DEFAULT_CMAP,
    compare: false,
    follow: false, // panel B shows panel A's twin and follows A's model and layer
    link: true, // one colour floor for both panels (auto: the lower of the two minima)
    a: { model: null, layer: null, floor: 0, auto: true },
    b: { model: null, layer: null, floor: 0, auto: true },
  };
  let current = { a: null, b: null, n: 0, size: null };
  let lastHover = null;
  let token = 0;

  function setOptions(select, options, value) {
    select.replaceChildren(...options.map(([v, label]) => el('option', { value: String(v), text: label })));
    const values = options.map(([v]) => String(v));
    select.value = values.includes(String(value)) ? String(value) : values[0] || '';
    return select.value;
  }

  function followA() {
    const t = twinOf(S.a.model, S.kind);
    if (!t) return false;
    const ls = layersFor(S.kind, t);
    S.b.model = t;
    S.b.layer = ls.includes(S.a.layer) ? S.a.layer : ls[0];
    return true;
  }

  // Panel A: the first model (the plain one of a twin pair); panel B: A's twin when the run has one, else the
  // next model (same layer where it has it) or the next layer.
  function resetPanels(keepModel) {
    const all = combos(S.kind);
    const models = modelsFor(S.kind);
    let a = all.length ? all[0] : [null, null];
    const plain = models.find((m) => !/_(aa\d*|aps)(@|$)/.test(m) && twinOf(m, S.kind));
    if (keepModel && models.includes(keepModel)) a = [keepModel, layersFor(S.kind, keepModel)[0]];
    else if (plain) a = [plain, layersFor(S.kind, plain)[0]];
    [S.a.model, S.a.layer] = a;
    if (a[0] && followA()) { S.follow = true; S.compare = true; return; }
    S.follow = false;
    let b = null;
    if (models.length > 1) {
      const m = models.find((x) => x !== S.a.model);
      const ls = layersFor(S.kind, m);
      b = [m, ls.includes(S.a.layer) ? S.a.layer : ls[0]];
    } else if (all.length > 1) {
      b = all.find(([m, l]) => m !== S.a.model || l !== S.a.layer);
    }
    S.b.model = b ? b[0] : S.a.model;
    S.b.layer = b ? b[1] : S.a.layer;
    S.compare = !!b;
  }

  // The patch picker: the category filter and the search box narrow the list of patches (and of category means);
  // the current selection stays listed, so narrowing the list never changes the view.
  function patchMatches(j) {
    const p = IDX.patches[j];
    if (S.pcat && p.category !== S.pcat) return false;
    const text = (p.id + ' ' + p.category).toLowerCase();
    return S.search.toLowerCase().split(/\s+/).every((w) => !w || text.includes(w));
  }

  function selectionOptions(g) {
    const opts = [];
    if (!g) return { opts, shown: 0, total: 0 };
    if (g.files.all) opts.push(['all', 'mean over all ' + g.patches.length + ' patches']);
    for (const key of Object.keys(g.files)) {
      if (key.startsWith('cat:')) {
        const cat = key.slice(4);
        if (S.pcat && cat !== S.pcat && key !== S.sel) continue;
        const k = g.patches.filter((j) => IDX.patches[j].category === cat).length;
        opts.push([key, 'mean over ' + cat + ' (' + k + ')']);
      }
    }
    let shown = 0;
    for (const j of g.patches) {
      const hit = patchMatches(j);
      if (hit) shown++;
      if (hit || S.sel === 'p:' + j) opts.push(['p:' + j, IDX.patches[j].id + ' (' + IDX.patches[j].category + ')']);
    }
    return { opts, shown, total: g.patches.length };
  }

  function refreshPicker() {
    const cats = IDX.categories;
    S.pcat = setOptions($('pcat'), [['', 'all categories (' + IDX.patches.length + ')'],
      ...cats.map((c) => [c, c + ' (' + IDX.patches.filter((p) => p.category === c).length + ')'])], S.pcat);
    $('pcat-label').hidden = cats.length < 2;
    if ($('psearch').value !== S.search) $('psearch').value = S.search;
    const { opts, shown, total } = selectionOptions(findGroup(S.kind, S.a.model, S.a.layer, S.size));
    S.sel = setOptions($('patch'), opts, S.sel);
    const pc = $('pcount');
    pc.textContent = shown === total ? total + ' patches' : shown + ' of ' + total + ' patches';
    Object.assign(pc.dataset, { shown: String(shown), total: String(total) });
  }

  function refreshControls() {
    setOptions($('kind'), kinds.map((k) => [k, IDX.kinds[k].label]), S.kind);
    $('kind-label').hidden = kinds.length < 2;
    S.size = Number(setOptions($('size'), sizesFor(S.kind).map((s) => [s, s + ' px']), S.size));
    const anchored = IDX.kinds[S.kind].anchored;
    S.anchor = setOptions($('anchor'), IDX.anchors.map((a) => [a, a]), S.anchor);
    $('anchor').disabled = !anchored;
    $('anchor-label').classList.toggle('disabled', !anchored);
    for (const side of ['a', 'b']) {
      const p = S[side];
      p.model = setOptions($('model-' + side), modelsFor(S.kind).map((m) => [m, m]), p.model);
      p.layer = setOptions($('layer-' + side), layersFor(S.kind, p.model).map((l) => [l, l]), p.layer);
    }
    $('compare-label').hidden = combos(S.kind).length < 2 && !S.compare;
    $('compare').checked = S.compare;
    $('follow').checked = S.follow;
    $('follow-label').hidden = !twinOf(S.a.model, S.kind);
    $('panel-b').hidden = !S.compare;
    const classes = kindScale(S.kind) === 'classes';
    $('cmap-label').hidden = classes;
    $('link-label').hidden = classes || !S.compare;
    $('link').checked = S.link;
    refreshPicker();
    S.cmap = setOptions($('cmap'), Object.keys(cmaps).map((c) => [c, c]), S.cmap);
  }

  function fileKey(sel) { return sel.startsWith('p:') ? 'p' + sel.slice(2) : sel; }

  function selectionPatches(g, sel) {
    if (!g) return [];
    if (sel.startsWith('p:')) return [Number(sel.slice(2))];
    if (sel.startsWith('cat:')) return g.patches.filter((j) => IDX.patches[j].category === sel.slice(4));
    return g.patches;
  }

  function patchSrc(j, size) { return 'patches/p' + size + '/' + IDX.patches[j].file + '.png'; }

  function refreshThumbs(g) {
    const box = $('thumbs');
    const members = selectionPatches(g, S.sel);
    const shown = members.slice(0, 12);
    const kids = shown.map((j) => {
      const origin = IDX.patches[j].origin ? ' \u2014 ' + IDX.patches[j].origin : '';
      const name = IDX.patches[j].id + ' (' + IDX.patches[j].category + ')' + origin;
      const img = el('img', { src: patchSrc(j, S.size), alt: IDX.patches[j].id, title: name });
      img.onerror = () => img.remove();
      if (members.length === 1) { img.className = 'big'; return img; }
      // one of several: a button that shows this patch alone (as choosing it under Patches does)
      img.className = 'pick';
      img.title = 'show ' + name + ' alone';
      img.setAttribute('role', 'button');
      img.tabIndex = 0;
      const pick = () => { S.sel = 'p:' + j; update(); };
      img.addEventListener('click', pick);
      img.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick(); }
      });
      return img;
    });
    if (members.length > shown.length) kids.push(el('span', { text: '+ ' + (members.length - shown.length) + ' more' }));
    if (members.length === 1 && IDX.patches[members[0]].origin) {
      kids.push(el('span', { class: 'muted origin', text: 'from ' + IDX.patches[members[0]].origin }));
    }
    box.replaceChildren(...kids);
  }

  async function loadMap(g, sel) {
    if (!g) return null;
    const file = g.files[fileKey(sel)];
    if (!file) return null;
    const key = g.gid + '/' + file.split('/').pop().replace(/\.js$/, '');
    const payload = await load(file, key);
    return decode(key, payload);
  }

  function anchorIndex() {
    return IDX.kinds[S.kind].anchored ? Math.max(0, IDX.anchors.indexOf(S.anchor)) : 0;
  }

  function sliceOf(m) {
    if (!m) return null;
    const n = m.shape[1];
    const a = Math.min(anchorIndex(), m.shape[0] - 1);
    const values = m.values.subarray(a * n * n, (a + 1) * n * n);
    let min = Infinity, max = -Infinity;
    for (const v of values) { if (v < min) min = v; if (v > max) max = v; }
    return { n, values, step: m.step, min, max, thin: m.thin || 1, kept: m.kept || null };
  }

  // ---------------------------------------------------------------------------------------------- URL state
  // The view lives in the query string (the hash stays free for the page's section links): a copied link reopens
  // it, and a value the run does not have falls back to the default.
  function viewParams() {
    const q = new URLSearchParams();
    q.set('kind', S.kind);
    q.set('size', String(S.size));
    q.set('anchor', S.anchor);
    if (S.sel.startsWith('p:')) q.set('patch', IDX.patches[Number(S.sel.slice(2))].id);
    else if (S.sel.startsWith('cat:')) q.set('cat', S.sel.slice(4));
    if (S.pcat) q.set('filter_cat', S.pcat);
    if (S.search) q.set('search', S.search);
    q.set('model_a', S.a.model);
    q.set('layer_a', S.a.layer);
    q.set('compare', S.compare ? '1' : '0');
    if (S.compare) {
      q.set('model_b', S.b.model);
      q.set('layer_b', S.b.layer);
      q.set('follow', S.follow ? '1' : '0');
    }
    if (kindScale(S.kind) !== 'classes') {
      q.set('floor_a', S.a.auto ? 'auto' : S.a.floor.toFixed(3));
      if (S.compare) {
        q.set('link', S.link ? '1' : '0');
        if (!S.link) q.set('floor_b', S.b.auto ? 'auto' : S.b.floor.toFixed(3));
      }
    }
    q.set('cmap', S.cmap);
    return q;
  }

  function writeURL() {
    const url = '?' + viewParams().toString() + location.hash;
    try { history.replaceState(null, '', url); } catch (e) { /* a host that forbids it keeps the page working */ }
    document.body.dataset.view = url;
  }

  function readURL() {
    let q;
    try { q = new URLSearchParams(location.search); } catch (e) { return; }
    const get = (k) => (q.has(k) ? q.get(k) : null);
    if (kinds.includes(get('kind'))) S.kind = get('kind');
    resetPanels(get('model_a'));
    const ma = get('model_a');
    if (ma && modelsFor(S.kind).includes(ma)) {
      S.a.model = ma;
      const la = get('layer_a');
      S.a.layer = layersFor(S.kind, ma).includes(la) ? la : layersFor(S.kind, ma)[0];
      if (S.follow && !followA()) S.follow = false;
    }
    const size = Number(get('size'));
    if (sizesFor(S.kind).includes(size)) S.size = size;
    if (IDX.anchors.includes(get('anchor'))) S.anchor = get('anchor');
    const pid = get('patch');
    const j = pid == null ? -1 : IDX.patches.findIndex((p) => p.id === pid);
    if (j >= 0) S.sel = 'p:' + j;
    else if (get('cat') != null && IDX.categories.includes(get('cat'))) S.sel = 'cat:' + get('cat');
    if (IDX.categories.includes(get('filter_cat'))) S.pcat = get('filter_cat');
    if (get('search') != null) S.search = get('search');
    if (get('compare') === '0') S.compare = false;
    else if (get('compare') === '1' && combos(S.kind).length > 1) S.compare = true;
    const mb = get('model_b');
    if (get('follow') === '0') S.follow = false;
    if (get('follow') === '1' && followA()) S.follow = true;
    else if (mb && modelsFor(S.kind).includes(mb)) {
      S.follow = false;
      S.b.model = mb;
      const lb = get('layer_b');
      S.b.layer = layersFor(S.kind, mb).includes(lb) ? lb : layersFor(S.kind, mb)[0];
    }
    if (get('link') === '0') S.link = false;
    for (const side of ['a', 'b']) {
      const f = get('floor_' + side);
      const v = f == null || f === '' ? NaN : Number(f);
      if (Number.isFinite(v)) { S[side].floor = v; S[side].auto = false; }
    }
    if (cmaps[get('cmap')]) S.cmap = get('cmap');
  }

  // ---------------------------------------------------------------------------------------------- drawing
  function fnv(bytes) {
    let h = 0x811c9dc5;
    for (let i = 0; i < bytes.length; i++) { h ^= bytes[i]; h = Math.imul(h, 0x01000193); }
    return (h >>> 0).toString(16);
  }

  // Colour scale of a panel: [floor, top]; top is 1 for similarity and probability, the map's maximum otherwise.
  function scaleOf(side) {
    const p = S[side];
    const sl = current[side];
    let top = 1;
    if (kindScale(S.kind) === 'data') {
      const others = S.link && S.compare ? [current.a, current.b] : [sl];
      top = Math.max(...others.filter(Boolean).map((x) => x.max));
      if (!Number.isFinite(top)) top = 1;
    }
    const floor = S.link && side === 'b' ? S.a.floor : p.floor;
    return { floor, top: top > floor ? top : floor + 1e-6 };
  }

  function drawHeat(canvas, sl, side) {
    if (!sl) { canvas.width = 1; canvas.height = 1; canvas.dataset.checksum = 'none'; return; }
    const n = sl.n;
    canvas.width = n;
    canvas.height = n;
    const ctx = canvas.getContext('2d');
    const img = ctx.createImageData(n, n);
    const d = img.data;
    if (kindScale(S.kind) === 'classes') {
      for (let i = 0; i < n * n; i++) {
        const rgb = classColour[String(Math.round(sl.values[i]))] || [128, 128, 128];
        d[4 * i] = rgb[0]; d[4 * i + 1] = rgb[1]; d[4 * i + 2] = rgb[2]; d[4 * i + 3] = 255;
      }
    } else {
      const lut = cmaps[S.cmap];
      const { floor, top } = scaleOf(side);
      for (let i = 0; i < n * n; i++) {
        let t = (sl.values[i] - floor) / (top - floor);
        if (!(t > 0)) t = 0; else if (t > 1) t = 1;
        const c = Math.round(t * 255) * 3;
        d[4 * i] = lut[c]; d[4 * i + 1] = lut[c + 1]; d[4 * i + 2] = lut[c + 2]; d[4 * i + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    canvas.dataset.checksum = fnv(d);
  }

  function drawColorbar(side) {
    const panel = $('panel-' + side);
    const box = panel.querySelector('.colorbar');
    const classes = kindScale(S.kind) === 'classes';
    box.hidden = classes;
    panel.querySelector('.floor-controls').hidden = classes;
    if (classes) return;
    const c = panel.querySelector('canvas.cb');
    const lut = cmaps[S.cmap];
    const ctx = c.getContext('2d');
    const img = ctx.createImageData(256, 1);
    for (let i = 0; i < 256; i++) img.data.set([lut[3 * i], lut[3 * i + 1], lut[3 * i + 2], 255], 4 * i);
    ctx.putImageData(img, 0, 0);
    const { floor, top } = scaleOf(side);
    const digits = kindScale(S.kind) === 'data' ? 2 : 3;
    panel.querySelector('.cb-top').textContent = top.toFixed(digits) + (kindScale(S.kind) === 'data' ? ' px' : '');
    panel.querySelector('.cb-bottom').textContent = '\u2264 ' + floor.toFixed(digits);
  }

  function drawLegend(side) {
    const panel = $('panel-' + side);
    const box = panel.querySelector('.legend');
    const sl = current[side];
    if (kindScale(S.kind) !== 'classes' || !sl) { box.hidden = true; box.replaceChildren(); box.dataset.classes = ''; return; }
    const counts = new Map();
    for (const v of sl.values) { const c = Math.round(v); counts.set(c, (counts.get(c) || 0) + 1); }
    const order = Array.from(counts).sort((x, y) => y[1] - x[1] || x[0] - y[0]);
    box.hidden = false;
    box.dataset.classes = order.map(([c]) => c).join(',');
    box.replaceChildren(...order.map(([c, k]) => {
      const info = (IDX.classes || {})[String(c)] || { name: 'class ' + c, colour: [128, 128, 128] };
      const sw = el('span', { class: 'swatch' });
      sw.style.background = 'rgb(' + info.colour.join(',') + ')';
      return el('div', { class: 'legend-item', 'data-class': String(c) }, sw,
        el('span', { text: info.name + ' (' + c + ')' }), el('span', { class: 'muted', text: ' ' + (100 * k / sl.values.length).toFixed(0) + '%' }));
    }));
  }

  function placeMarker(panel, cls, cell, n) {
    const m = panel.querySelector('.' + cls);
    if (!cell || !n) { m.hidden = true; return; }
    m.hidden = false;
    m.style.left = (100 * cell[1] / n) + '%';
    m.style.top = (100 * cell[0] / n) + '%';
    m.style.width = 'max(' + (100 / n) + '%, 6px)';
    m.style.height = 'max(' + (100 / n) + '%, 6px)';
  }

  function panelTitle(side, g) {
    const p = S[side];
    const t = $('panel-' + side).querySelector('.panel-title');
    if (!g) { t.textContent = p.model + ' / ' + p.layer + ': no data at ' + S.size + ' px'; return; }
    const info = modelInfo(p.model);
    const what = S.sel === 'all' ? 'mean over all patches' : S.sel.startsWith('cat:') ? 'mean over ' + S.sel.slice(4)
      : 'patch ' + IDX.patches[Number(S.sel.slice(2))].id;
    const anchorTxt = IDX.kinds[S.kind].anchored ? ', anchor ' + S.anchor : '';
    const twin = side === 'b' && S.follow ? ' (panel A\u2019s twin)' : '';
    t.replaceChildren(el('span', { text: p.model + ' \u00b7 ' + p.layer + ' \u00b7 ' + S.size + ' px' + anchorTxt }),
      el('br'), el('span', { class: 'muted', text: IDX.kinds[S.kind].label + ', ' + what + (info.weights ? ', weights ' + info.weights : '') + twin }),
      ...(info.untrained ? [el('span', { class: 'badge', text: 'UNTRAINED' })] : []));
  }

  function floorRange(side) {
    if (kindScale(S.kind) === 'data') {
      const { top } = scaleOf(side);
      return { min: 0, max: top, step: 'any' };
    }
    return { min: -1, max: 0.999, step: 0.001 };
  }

  function redraw() {
    for (const side of ['a', 'b']) {
      if (side === 'b' && !S.compare) continue;
      const panel = $('panel-' + side);
      const canvas = $('heat-' + side);
      const sl = current[side];
      drawHeat(canvas, sl, side);
      const { floor, top } = scaleOf(side);
      Object.assign(canvas.dataset, { kind: S.kind, model: S[side].model, layer: S[side].layer, size: String(S.size),
        anchor: S.anchor, sel: S.sel, floor: floor.toFixed(3), top: top.toFixed(3), cmap: S.cmap, n: String(sl ? sl.n : 0) });
      const ac = IDX.kinds[S.kind].anchored && sl ? anchorCell(S.anchor, sl.n) : null;
      placeMarker(panel, 'anchor-marker', ac, sl ? sl.n : 0);
      const offs = IDX.offsets[String(S.size)] || [];
      panel.querySelector('.x1').textContent = offs.length ? offs[offs.length - 1] : '';
      drawColorbar(side);
      drawLegend(side);
      const r = floorRange(side);
      const input = $('floor-' + side);
      Object.assign(input, { min: String(r.min), max: String(r.max), step: String(r.step) });
      input.value = String(floor);
      $('floor-value-' + side).textContent = floor.toFixed(3);
      $('floor-auto-' + side).checked = S.link && side === 'b' ? S.a.auto : S[side].auto;
      input.disabled = $('floor-auto-' + side).disabled = S.link && side === 'b';
    }
    if (lastHover && lastHover.n === current.n) showHover(lastHover.r, lastHover.c);
    writeURL();
    document.body.dataset.ready = String(token);
  }

  function autoFloors() {
    const lowest = (sls) => {
      let lo = Infinity;
      for (const sl of sls) if (sl && sl.min < lo) lo = sl.min;
      if (!Number.isFinite(lo)) return 0;
      return kindScale(S.kind) === 'data' ? Math.max(0, lo) : Math.min(0.999, Math.max(-1, Math.floor(lo * 1000) / 1000));
    };
    if (S.link && S.compare) {
      if (S.a.auto) S.a.floor = lowest([current.a, current.b]);
    } else {
      if (S.a.auto) S.a.floor = lowest([current.a]);
    }
    if (S.b.auto) S.b.floor = lowest([current.b]);
  }

  async function update() {
    const my = ++token;
    document.body.dataset.ready = '';
    if (S.follow && S.compare) followA();
    refreshControls();
    const ga = findGroup(S.kind, S.a.model, S.a.layer, S.size);
    const gb = S.compare ? findGroup(S.kind, S.b.model, S.b.layer, S.size) : null;
    refreshThumbs(ga);
    panelTitle('a', ga);
    if (S.compare) panelTitle('b', gb);
    const status = (side, msg, err) => {
      const s = $('panel-' + side).querySelector('.status');
      s.textContent = msg;
      s.classList.toggle('error', !!err);
    };
    status('a', 'loading\u2026');
    if (S.compare) status('b', 'loading\u2026');
    let ma = null, mb = null;
    try {
      [ma, mb] = await Promise.all([loadMap(ga, S.sel), S.compare ? loadMap(gb, S.sel) : Promise.resolve(null)]);
    } catch (e) {
      if (my !== token) return;
      status('a', String(e.message || e), true);
      document.body.dataset.ready = String(my);
      return;
    }
    if (my !== token) return;
    current = { a: sliceOf(ma), b: sliceOf(mb), n: ma ? ma.shape[1] : 0, size: S.size, ga, gb };
    const note = (m) => kindScale(S.kind) === 'classes' ? 'top-1 ImageNet class at each position' : 'quantisation step ' + m.step.toExponential(1);
    status('a', ma ? note(ma) : 'no data for this selection', !ma);
    if (S.compare) status('b', mb ? note(mb) : 'no data for this selection', !mb);
    autoFloors();
    redraw();
  }

  // ---------------------------------------------------------------------------------------------- hover
  function fmt(v) {
    if (v == null) return '\u2013';
    const scale = kindScale(S.kind);
    if (scale === 'classes') {
      const info = (IDX.classes || {})[String(Math.round(v))];
      return (info ? info.name : 'class') + ' (' + Math.round(v) + ')';
    }
    return scale === 'data' ? v.toFixed(3) + ' px' : v.toFixed(6);
  }

  const images = new Map();
  function imageOf(src, key) {
    if (images.has(key)) return images.get(key);
    const p = load(src, key).then(
      (url) => new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = () => resolve(img);
        img.onerror = () => reject(new Error('bad image ' + key));
        img.src = url;
      }));
    images.set(key, p);
    return p;
  }
  const patchImage = (size, j) => imageOf('data/img/p' + size + '/' + j + '.js', 'img/' + size + '/' + j);
  const backgroundImage = () => (IDX.background.image ? imageOf(IDX.background.image, 'img/background') : Promise.resolve(null));

  async function compose(canvas, j, y, x) {
    canvas.dataset.y = String(y);
    canvas.dataset.x = String(x);
    canvas.dataset.patch = j == null ? '' : IDX.patches[j].id;
    delete canvas.dataset.drawn;
    const [img, bg] = await Promise.all([j == null ? null : patchImage(S.size, j), backgroundImage()]);
    if (canvas.dataset.y !== String(y) || canvas.dataset.x !== String(x)) return;  // a newer hover won
    window.SLCanvas.draw(canvas, IDX, img, bg, y, x);  // canvas.js: paste, crop window or circular roll
    canvas.dataset.drawn = String(y) + ',' + String(x);
  }

  function showHover(r, c) {
    const n = current.n;
    if (!n) return;
    lastHover = { r, c, n };
    const offs = IDX.offsets[String(current.size)];
    const y = offs[r], x = offs[c];
    const i = r * n + c;
    const va = current.a ? current.a.values[i] : null;
    const vb = S.compare && current.b ? current.b.values[i] : null;
    $('hover-hint').hidden = true;
    const pos = $('hover-pos');
    pos.replaceChildren('y = ' + y + ' px, x = ' + x + ' px ', el('small', { text: '(row ' + r + ', column ' + c + ')' }));
    Object.assign(pos.dataset, { y: String(y), x: String(x), row: String(r), col: String(c) });
    const classes = kindScale(S.kind) === 'classes';
    const setVal = (id, labelId, v, side, sl) => {
      const dd = $(id);
      if (v == null) dd.textContent = '\u2013';
      else if (classes) dd.textContent = fmt(v);
      else dd.replaceChildren(fmt(v) + ' ', el('small', { text: '\u00b1 ' + (sl.step / 2).toExponential(1) }));
      dd.dataset.value = v == null ? '' : String(v);
      dd.dataset.step = sl ? String(sl.step) : '';
      $(labelId).textContent = S[side].model + ' / ' + S[side].layer;
    };
    setVal('hover-value-a', 'hover-label-a', va, 'a', current.a);
    $('hover-value-b').hidden = $('hover-label-b').hidden = !S.compare;
    if (S.compare) setVal('hover-value-b', 'hover-label-b', vb, 'b', current.b);
    for (const side of ['a', 'b']) placeMarker($('panel-' + side), 'hover-marker', [r, c], n);
    const members = selectionPatches(current.ga, S.sel);
    const j = members.length ? members[0] : null;
    const single = S.sel.startsWith('p:');
    const thinned = [current.a, S.compare ? current.b : null].find((sl) => sl && sl.kept && !(sl.kept.has(r) && sl.kept.has(c)));
    const thinNote = thinned ? ' This site keeps every ' + thinned.thin + (thinned.thin === 2 ? 'nd' : 'th') +
      ' position of a patch\'s own map (and the corners and centre): the value shown is the nearest kept position\'s;' +
      ' tables/ and maps.zarr hold every position.' : '';
    $('hover-note').textContent = (j == null ? '' : single ? '' :
      'The map is a mean over ' + members.length + ' patches; the images show the first, ' + IDX.patches[j].id + '.') + thinNote;
    $('hover-note').dataset.thinned = thinned ? '1' : '0';
    const what = IDX.protocol === 'crop' ? 'window' : IDX.shift === 'circular' ? 'rolled image' : 'shifted image';
    $('shifted-cap').textContent = what + ' at y = ' + y + ', x = ' + x;
    compose($('shifted'), j, y, x);
    const anchored = IDX.kinds[S.kind].anchored;
    $('anchor-fig').hidden = !anchored;
    if (anchored) {
      const [ar, acol] = anchorCell(S.anchor, n);
      $('anchor-cap').textContent = 'anchor ' + S.anchor + ' at y = ' + offs[ar] + ', x = ' + offs[acol];
      compose($('anchor-img'), j, offs[ar], offs[acol]);
    }
  }

  function onPointer(ev) {
    const canvas = ev.currentTarget;
    const n = current.n;
    if (!n) return;
    const rect = canvas.getBoundingClientRect();
    const c = Math.floor(((ev.clientX - rect.left) / rect.width) * n);
    const r = Math.floor(((ev.clientY - rect.top) / rect.height) * n);
    if (r < 0 || c < 0 || r >= n || c >= n) return;
    showHover(r, c);
  }

  // ---------------------------------------------------------------------------------------------- tables
  function parseCSV(text) {
    const rows = [];
    let row = [], field = '', i = 0, quoted = false;
    while (i < text.length) {
      const ch = text[i];
      if (quoted) {
        if (ch === '"') {
          if (text[i + 1] === '"') { field += '"'; i += 2; continue; }
          quoted = false; i++; continue;
        }
        field += ch; i++; continue;
      }
      if (ch === '"') { quoted = true; i++; continue; }
      if (ch === ',') { row.push(field); field = ''; i++; continue; }
      if (ch === '\r') { i++; continue; }
      if (ch === '\n') { row.push(field); rows.push(row); row = []; field = ''; i++; continue; }
      field += ch; i++;
    }
    if (field !== '' || row.length) { row.push(field); rows.push(row); }
    return rows;
  }

  const MAX_ROWS = 1000;

  function renderTable(card, csv) {
    const rows = parseCSV(csv);
    const header = rows.shift() || [];
    const numeric = header.map((_, k) => rows.length > 0 && rows.every((r) => r[k] === '' || r[k] === undefined || Number.isFinite(Number(r[k]))));
    const table = el('table', { class: 'data' });
    const thead = el('thead');
    const tbody = el('tbody');
    table.append(thead, tbody);
    const tr = el('tr');
    let sortCol = -1, asc = true, filter = '';
    header.forEach((h, k) => {
      const th = el('th', { text: h, 'data-col': String(k), title: 'sort by ' + h });
      th.addEventListener('click', () => {
        asc = sortCol === k ? !asc : true;
        sortCol = k;
        tr.querySelectorAll('th').forEach((t) => t.removeAttribute('aria-sort'));
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        body();
      });
      tr.append(th);
    });
    thead.append(tr);
    const meta = card.querySelector('.meta');
    function body() {
      let view = filter ? rows.filter((r) => r.join(' ').toLowerCase().includes(filter)) : rows.slice();
      if (sortCol >= 0) {
        const k = sortCol, num = numeric[k], sign = asc ? 1 : -1;
        view.sort((x, y) => {
          const a = x[k], b = y[k];
          if (num) return sign * ((a === '' ? -Infinity : Number(a)) - (b === '' ? -Infinity : Number(b)));
          return sign * String(a).localeCompare(String(b), undefined, { numeric: true });
        });
      }
      const shown = view.slice(0, MAX_ROWS);
      tbody.replaceChildren(...shown.map((r) => el('tr', {}, ...header.map((_, k) => el('td', { class: numeric[k] ? 'num' : '', text: r[k] === undefined ? '' : r[k] })))));
      meta.textContent = view.length + ' of ' + rows.length + ' rows' + (view.length > shown.length ? ', showing the first ' + MAX_ROWS + ' (download the CSV for all)' : '');
    }
    const input = card.querySelector('input');
    input.hidden = false;
    input.addEventListener('input', () => { filter = input.value.trim().toLowerCase(); body(); });
    body();
    card.querySelector('.table-scroll').replaceChildren(table);
    card.dataset.loaded = 'true';
  }

  function setupTables() {
    const list = $('table-list');
    if (!IDX.tables.length) { list.replaceChildren(el('p', { text: 'This run has no tables.' })); return; }
    const cards = IDX.tables.map((t) => {
      const card = el('div', { class: 'table-card', id: 'table-' + t.name, 'data-name': t.name },
        el('div', { class: 'table-head' },
          el('h3', { text: t.name }),
          el('a', { href: t.file, download: t.name + '.csv', class: 'download', text: 'download CSV' }),
          el('input', { type: 'search', placeholder: 'filter rows', hidden: '' }),
          el('span', { class: 'meta', text: t.rows + ' rows' })),
        el('div', { class: 'table-scroll' }));
      return card;
    });
    list.replaceChildren(...cards);
    // Load small tables at once, large ones on request.
    IDX.tables.forEach((t, i) => {
      const card = cards[i];
      const go = () => load(t.js, 'table/' + t.name).then((csv) => renderTable(card, csv))
        .catch((e) => { card.querySelector('.table-scroll').textContent = String(e.message || e); });
      if (t.bytes < 3e6) go();
      else {
        const b = el('button', { type: 'button', text: 'show table (' + (t.bytes / 1e6).toFixed(1) + ' MB)' });
        b.addEventListener('click', () => { b.remove(); go(); });
        card.querySelector('.table-scroll').append(b);
      }
    });
  }

  // ---------------------------------------------------------------------------------------------- figures, summary
  function setupFigures() {
    const list = $('figure-list');
    if (!IDX.figures.length) { list.replaceChildren(el('p', { text: 'This run has no figures.' })); return; }
    list.replaceChildren(...IDX.figures.map((f) => el('figure', {},
      el('a', { href: f.file }, el('img', { src: f.file, alt: f.name, loading: 'lazy' })),
      el('figcaption', { text: f.name }))));
  }

  function kvTable(pairs) {
    return el('table', { class: 'summary' }, ...pairs.map(([k, v]) => el('tr', {}, el('th', { text: k }), el('td', { text: v == null ? '' : String(v) }))));
  }

  function rowsTable(cols, rows, id) {
    const t = el('table', { class: 'summary' });
    if (id) t.id = id;
    t.append(el('tr', {}, ...cols.map(([, label]) => el('th', { text: label }))));
    for (const r of rows) t.append(el('tr', {}, ...cols.map(([k]) => el('td', { text: r[k] == null ? '' : String(r[k]) }))));
    return t;
  }

  function setupSummary() {
    const s = IDX.summary;
    document.title = IDX.title;
    $('title').textContent = IDX.title;
    const dev = s.device || {};
    $('subtitle').textContent = (s.models || []).map((m) => m.model).join(', ') + ' \u00b7 ' + IDX.patches.length + ' patches \u00b7 sizes ' +
      IDX.sizes.join(', ') + ' px \u00b7 stride ' + IDX.stride + ' \u00b7 ' + (dev.name || dev.type || '') + ', ' + (s.precision || '');
    const bg = IDX.background || {};
    const protocol = $('protocol-line');
    protocol.textContent = 'protocol ' + IDX.protocol + ' \u00b7 shift ' + IDX.shift + ' \u00b7 background ' + (bg.label || 'white');
    Object.assign(protocol.dataset, { protocol: IDX.protocol, shift: IDX.shift, background: bg.label || '' });
    if (s.untrained) {
      const names = s.models.filter((m) => m.untrained).map((m) => m.model).join(', ');
      const b = $('untrained-banner');
      b.hidden = false;
      b.textContent = 'UNTRAINED: ' + names + ' ran with random weights. These maps show an untrained network and are not a finding about trained networks.';
    }
    const body = $('summary-body');
    const models = (s.models || []).map((m) => Object.assign({}, m, { layers: (m.layers || []).join(', '), untrained: m.untrained ? 'UNTRAINED' : 'no' }));
    const timings = (s.timings || []).map((t) => Object.assign({}, t));
    const cfg = s.config || {};
    body.replaceChildren(
      el('h3', { text: 'Models' }),
      rowsTable([['model', 'model'], ['layers', 'layers'], ['weights', 'weights'], ['untrained', 'untrained'], ['description', 'description']], models, 'models-table'),
      el('h3', { text: 'Device and settings' }),
      kvTable([['device', (dev.name || '') + ' (' + (dev.type || '') + ')'], ['precision', s.precision], ['status', s.status],
        ['started', s.started], ['finished', s.finished], ['fingerprint', s.fingerprint],
        ...Object.entries(cfg).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v])]),
      el('h3', { text: 'Timings' }),
      rowsTable([['unit', 'model / size'], ['seconds', 'seconds'], ['images', 'images'], ['images_per_s', 'images/s']], timings, 'timings-table'),
      el('h3', { text: 'Versions' }),
      kvTable(Object.entries(s.versions || {})));
  }

  // ---------------------------------------------------------------------------------------------- wiring
  function wire() {
    $('kind').addEventListener('change', (e) => { S.kind = e.target.value; resetPanels(S.a.model); S.a.auto = S.b.auto = true; update(); });
    $('size').addEventListener('change', (e) => { S.size = Number(e.target.value); update(); });
    $('anchor').addEventListener('change', (e) => { S.anchor = e.target.value; update(); });
    $('patch').addEventListener('change', (e) => { S.sel = e.target.value; update(); });
    $('pcat').addEventListener('change', (e) => { S.pcat = e.target.value; refreshPicker(); writeURL(); });
    $('psearch').addEventListener('input', (e) => { S.search = e.target.value; refreshPicker(); writeURL(); });
    $('psearch').addEventListener('keydown', (e) => {  // Enter shows the first patch the list holds
      if (e.key !== 'Enter') return;
      const first = Array.from($('patch').options).find((o) => o.value.startsWith('p:') && patchMatches(Number(o.value.slice(2))));
      if (first) { S.sel = first.value; update(); }
    });
    $('cmap').addEventListener('change', (e) => { S.cmap = e.target.value; redraw(); });
    $('compare').addEventListener('change', (e) => { S.compare = e.target.checked; update(); });
    $('follow').addEventListener('change', (e) => {
      S.follow = e.target.checked;
      if (S.follow) S.compare = true;
      update();
    });
    $('link').addEventListener('change', (e) => { S.link = e.target.checked; update(); });
    for (const side of ['a', 'b']) {
      $('floor-' + side).addEventListener('input', (e) => {
        S[side].floor = Number(e.target.value);
        S[side].auto = false;
        redraw();
      });
      $('floor-auto-' + side).addEventListener('change', (e) => { S[side].auto = e.target.checked; update(); });
      $('model-' + side).addEventListener('change', (e) => {
        S[side].model = e.target.value;
        if (side === 'b') S.follow = false;
        update();
      });
      $('layer-' + side).addEventListener('change', (e) => {
        S[side].layer = e.target.value;
        if (side === 'b') S.follow = false;
        update();
      });
      const c = $('heat-' + side);
      c.addEventListener('pointermove', onPointer);
      c.addEventListener('pointerdown', onPointer);
    }
  }

  setupSummary();
  wire();
  if (!kinds.length) {
    $('explorer').replaceChildren(el('p', { text: 'This run has no maps to show.' }));
    document.body.dataset.ready = 'none';
  } else {
    resetPanels();
    readURL();
    update();
  }
  setupTables();
  setupFigures();
})();
