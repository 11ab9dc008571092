/* shiftlens: draw the canvas the network saw at offset (y, x), under the run's protocol, shared by the Maps and Units
   pages so that both show exactly what canvases/ rendered. paste: the patch at (y, x) on the background (a flat
   colour or the run's background.png); crop: the canvas window at (y, x) of the resized large image; a circular
   shift rolls the image at (0, 0) by (y, x) with wrap-around. Patches have binary alpha, so drawImage is a paste. */
(function () {
  'use strict';

  function drawUnshifted(ctx, idx, img, bg, y, x) {
    const w = ctx.canvas.width, h = ctx.canvas.height;
    if (idx.protocol === 'crop') {
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, w, h);
      if (img) ctx.drawImage(img, -x, -y);
      return;
    }
    if (bg) ctx.drawImage(bg, 0, 0, w, h);
    else {
      const c = (idx.background || {}).colour || [255, 255, 255];
      ctx.fillStyle = 'rgb(' + c[0] + ',' + c[1] + ',' + c[2] + ')';
      ctx.fillRect(0, 0, w, h);
    }
    if (img) ctx.drawImage(img, x, y);
  }

  /* Draws into `canvas` (sized idx.canvas) the image at offset (y, x); img: the patch or large image, or null for the
     bare background; bg: the background image, or null for a flat colour. */
  function draw(canvas, idx, img, bg, y, x) {
    const size = idx.canvas || 224;
    if (canvas.width !== size || canvas.height !== size) canvas.width = canvas.height = size;
    const ctx = canvas.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    if (idx.shift !== 'circular') {
      drawUnshifted(ctx, idx, img, bg, y, x);
      return;
    }
    const base = document.createElement('canvas');
    base.width = base.height = size;
    const bctx = base.getContext('2d');
    bctx.imageSmoothingEnabled = false;
    drawUnshifted(bctx, idx, img, bg, 0, 0);
    const dy = ((y % size) + size) % size, dx = ((x % size) + size) % size;
    for (const oy of [dy, dy - size]) for (const ox of [dx, dx - size]) ctx.drawImage(base, ox, oy);
  }

  window.SLCanvas = { draw };
})();
