/* shiftlens Units page: plain JavaScript, works from file:// (data arrive as scripts calling SL.loaded). */
(function () {
  'use strict';
  const IDX = window.SL_INDEX || {};
  const SL = (window.SL = window.SL || {});
  const cache = new Map();
  SL.loaded = function (key, payload) { cache.set(key, payload); };
  const $ = (id) => document.getElementById(id);

  function load(src, key) {
    if (cache.has(key)) return Promise.resolve(cache.get(key));
    return new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = src;
      s.onload = () => (cache.has(key) ? resolve(cache.get(key)) : reject(new Error('no data in ' + src)));
      s.onerror = () => reject(new Error('could not load ' + src));
      document.head.appendChild(s);
    });
  }
  function imageFrom(src, key) {
    return load(src, key).then((url) => new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error('bad image ' + key));
      img.src = url;
    }));
  }
  function decode(t) {
    const bin = atob(t.q);
    const q = new Uint16Array(bin.length >> 1);
    for (let i = 0; i < q.length; i++) q[i] = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
    const scale = (t.hi - t.lo) / 65535;
    return Array.from(q, (v) => t.lo + v * scale);
  }
  function lut(name) {
    const b64 = IDX.colormaps && IDX.colormaps[name];
    if (!b64) return null;
    const bin = atob(b64);
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }
  const VIRIDIS = lut('viridis');

  let U = null;
  let group = null;
  let unit = null;

  function drawHistogram(g) {
    const c = $('histogram');
    const ctx = c.getContext('2d');
    ctx.clearRect(0, 0, c.width, c.height);
    const bins = new Array(20).fill(0);
    let live = 0;
    for (const v of g.position_share) if (v != null) { bins[Math.min(19, Math.floor(v * 20))]++; live++; }
    const max = Math.max(1, ...bins);
    const w = c.width / 20;
    ctx.fillStyle = '#3b6fb6';
    bins.forEach((b, i) => { const h = (c.height - 16) * b / max; ctx.fillRect(i * w + 1, c.height - 14 - h, w - 2, h); });
    ctx.fillStyle = '#333';
    ctx.font = '10px sans-serif';
    ctx.fillText('0', 0, c.height - 2);
    ctx.fillText('position share', c.width / 2 - 30, c.height - 2);
    ctx.fillText('1', c.width - 8, c.height - 2);
    c.dataset.live = String(live);
    c.dataset.bins = bins.join(',');
    $('histogram-note').textContent = live + ' live units of ' + g.position_share.length +
      ' (silent units, constant over the grid, have no share)';
  }

  function fmt(v) { return v == null ? '\u2013' : v.toFixed(3); }

  function drawList(g) {
    const detail = new Set(g.detail);
    const rows = g.order.map((u) => '<tr data-unit="' + u + '" class="' + (detail.has(u) ? 'has-detail' : 'no-detail') +
      '"><td>' + u + '</td><td>' + fmt(g.position_share[u]) + '</td><td>' + fmt(g.identity_share[u]) + '</td></tr>');
    $('unit-list').innerHTML = '<table><thead><tr><th>unit</th><th>position</th><th>identity</th></tr></thead><tbody>' +
      rows.join('') + '</tbody></table>';
    for (const tr of $('unit-list').querySelectorAll('tr.has-detail')) {
      tr.addEventListener('click', () => showUnit(Number(tr.dataset.unit)));
    }
  }

  async function composeExemplar(canvas, j, y, x) {
    const bg = (IDX.background || {}).image ? await imageFrom(IDX.background.image, 'img/background') : null;
    const img = j == null ? null
      : await imageFrom('data/img/p' + group.size + '/' + j + '.js', 'img/' + group.size + '/' + j);
    window.SLCanvas.draw(canvas, IDX, img, bg, y, x);  // canvas.js, as the Maps page's hover image
    if (j != null) canvas.dataset.drawn = y + ',' + x;
  }

  let shown = 0;  // the latest showUnit call: an older one that finishes later draws nothing

  async function showUnit(u) {
    const call = ++shown;
    document.body.dataset.unit = '';  // drawing: tests and readers wait for the unit's number
    unit = u;
    writeURL();
    const key = 'units/' + group.gid + '/u' + u;
    const d = await load('data/units/' + group.gid + '/u' + u + '.js', key);
    if (call !== shown) return;
    for (const tr of $('unit-list').querySelectorAll('tr.selected')) tr.classList.remove('selected');
    const row = $('unit-list').querySelector('tr[data-unit="' + u + '"]');
    if (row) row.classList.add('selected');
    $('detail-title').textContent = 'unit ' + u + ': position share ' + fmt(group.position_share[u]) +
      ', identity share ' + fmt(group.identity_share[u]);
    const values = decode(d.tuning);
    const [n, m] = d.tuning.shape;
    const c = $('tuning');
    c.width = m; c.height = n;
    const ctx = c.getContext('2d');
    const im = ctx.createImageData(m, n);
    const span = d.tuning.hi - d.tuning.lo;
    values.forEach((v, i) => {
      const k = Math.max(0, Math.min(255, Math.round(span > 0 ? (v - d.tuning.lo) / span * 255 : 0)));
      im.data[4 * i] = VIRIDIS ? VIRIDIS[3 * k] : k;
      im.data[4 * i + 1] = VIRIDIS ? VIRIDIS[3 * k + 1] : k;
      im.data[4 * i + 2] = VIRIDIS ? VIRIDIS[3 * k + 2] : k;
      im.data[4 * i + 3] = 255;
    });
    ctx.putImageData(im, 0, 0);
    c.dataset.unit = String(u);
    const o = group.offsets || [];
    $('tuning-cap').textContent = 'tuning map: mean over patches at each position (own scale, viridis, ' +
      d.tuning.lo.toPrecision(3) + ' to ' + d.tuning.hi.toPrecision(3) + ')' +
      (o.length ? '; rows y, columns x, ' + o[0] + ' to ' + o[o.length - 1] + ' px' : '');
    const box = $('exemplars');
    box.innerHTML = '';
    const drawn = d.exemplars.map(([j, y, x, v]) => {
      const fig = document.createElement('figure');
      const cv = document.createElement('canvas');
      const cap = document.createElement('figcaption');
      const pid = j == null ? '?' : (IDX.patches[j] || {}).id;
      cap.textContent = pid + ' @ ' + y + ',' + x + ': ' + v.toPrecision(3);
      fig.append(cv, cap);
      box.append(fig);
      return composeExemplar(cv, j, y, x);
    });
    $('synthetic-fig').hidden = !d.synthetic;
    if (d.synthetic) $('synthetic').src = d.synthetic;
    await Promise.all(drawn);
    if (call === shown) document.body.dataset.unit = String(u);
  }

  // The picker lives in the URL's query string (model, layer, size, unit), so a reload or a copied link reopens it.
  function writeURL() {
    const q = new URLSearchParams();
    q.set('model', group.model);
    q.set('layer', group.layer);
    q.set('size', String(group.size));
    if (unit != null) q.set('unit', String(unit));
    try { history.replaceState(null, '', '?' + q.toString() + location.hash); } catch (e) { /* the page still works */ }
  }

  function readURL() {
    let q;
    try { q = new URLSearchParams(location.search); } catch (e) { return {}; }
    const g = U.groups.find((x) => x.model === q.get('model') && x.layer === q.get('layer') && String(x.size) === q.get('size'));
    return { gid: g ? g.gid : null, unit: q.has('unit') ? Number(q.get('unit')) : null };
  }

  // A group opens on the unit asked for, when the site carries it, else on the first unit of the list that it does.
  function selectGroup(gid, asked) {
    group = U.groups.find((g) => g.gid === gid);
    $('group').value = gid;
    $('group-note').textContent = (group.untrained ? ' UNTRAINED (random weights) \u00b7 ' : ' weights ' + group.weights + ' \u00b7 ') +
      group.n_patches + ' patches, ' + group.n + ' \u00d7 ' + group.n + ' positions';
    drawHistogram(group);
    drawList(group);
    const detail = new Set(group.detail);
    const first = detail.has(asked) ? asked : group.order.find((u) => detail.has(u));
    unit = null;
    if (first === undefined) { writeURL(); return Promise.resolve(); }
    return showUnit(first);
  }

  async function main() {
    try {
      U = await load('data/units/index.js', 'units/index');
    } catch (e) {
      $('no-units').hidden = false;
      document.body.dataset.ready = 'none';
      return;
    }
    const sel = $('group');
    for (const g of U.groups) {
      const o = document.createElement('option');
      o.value = g.gid;
      o.textContent = g.model + ' \u00b7 ' + g.layer + ' \u00b7 ' + g.size + 'px' + (g.untrained ? ' (untrained)' : '');
      sel.append(o);
    }
    if (U.groups.some((g) => g.untrained)) {
      $('untrained-banner').hidden = false;
      $('untrained-banner').textContent = 'UNTRAINED: some networks here have random weights; their units say nothing about trained networks.';
    }
    sel.addEventListener('change', () => selectGroup(sel.value, null));
    if (U.groups.length) {
      const asked = readURL();
      try {
        await selectGroup(asked.gid || U.groups[0].gid, asked.gid ? asked.unit : null);
      } catch (e) {
        $('detail-hint').textContent = 'Could not show the unit: ' + (e.message || e);
      }
    }
    document.body.dataset.ready = 'yes';
  }
  main();
})();
