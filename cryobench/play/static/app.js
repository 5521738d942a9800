// cryobench play: the page. Plain JavaScript, no build step, nothing loaded from elsewhere.
// The server holds the session; this page only draws what the server says and sends clicks.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const MOVE_NAMES = {
  patch: "same patch",
  square: "other patch, same square",
  tile: "other square, same tile",
  grid: "other atlas tile",
};
const SHORT_MOVE = { patch: "hole", square: "patch", tile: "square", grid: "tile", grid_exchange: "grid" };

const app = {
  config: null,
  layout: null,
  layoutVersion: null, // staged: the layout_version the page's layout shows
  index: null, // per-square / per-patch lookups built once from the layout
  snapshot: null,
  sessionId: null,
  selectedSquare: null,
  selectedPatch: null,
  overlay: false,
  busy: false,
  replayStep: null, // replay: how many exposures to show
  replayTimer: null,
  endShown: false,
};

// ---- small helpers ----------------------------------------------------------------------
function $(id) { return document.getElementById(id); }

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

function clock(minutes) {
  const m = Math.floor(minutes + 1e-9);
  return `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}`;
}

function formatCtf(ctf) {
  if (ctf === null || ctf === undefined) return "…";
  if (ctf >= 1000) return "fit failed";
  if (ctf > 20) return "> 20 Å";
  return `${ctf.toFixed(1)} Å`;
}

function grey(look, lift) {
  const v = Math.max(0, Math.min(255, Math.round((look + (lift || 0)) * 255)));
  return `rgb(${v},${v},${Math.min(255, v + 6)})`;
}

// A fixed pseudo-random number per hole and salt: cosmetic texture only, carries no information.
function hash01(hole, salt) {
  let x = (hole * 2654435761 + salt * 40503) >>> 0;
  x ^= x >>> 15; x = Math.imul(x, 2246822507) >>> 0; x ^= x >>> 13;
  return (x >>> 0) / 4294967296;
}

function toast(message) {
  const el = $("toast");
  el.textContent = message;
  el.classList.remove("hidden");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.add("hidden"), 4000);
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = { error: `${response.status} ${response.statusText}` }; }
  if (!response.ok) {
    const error = new Error(data && data.error ? data.error : `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// ---- the layout's lookups -----------------------------------------------------------------
function buildIndex(layout) {
  const n = layout.n_holes;
  const pitch = layout.pitch_um;
  const squares = new Map();
  const patches = new Map();
  if (layout.staged) {
    // Staged: every square from the atlas, imaged or not; only imaged squares' holes are known.
    layout.square_tile.forEach((t, s) => squares.set(s, { id: s, tile: t, holes: [], patches: [] }));
  }
  for (let h = 0; h < n; h++) {
    const s = layout.square[h];
    if (s < 0) continue; // a hole of a square not imaged yet
    const p = layout.patch[h];
    if (!squares.has(s)) squares.set(s, { id: s, tile: layout.tile[h], holes: [], patches: [] });
    if (!patches.has(p)) {
      patches.set(p, { id: p, square: s, holes: [] });
      squares.get(s).patches.push(p);
    }
    squares.get(s).holes.push(h);
    patches.get(p).holes.push(h);
  }
  // Local names: square id, patch number within the square, hole number within the patch.
  const localName = new Array(n);
  for (const sq of squares.values()) {
    sq.patches.sort((a, b) => a - b);
    sq.patches.forEach((p, i) => {
      const patch = patches.get(p);
      patch.number = i + 1;
      patch.holes.forEach((h, j) => { localName[h] = `S${sq.id}/P${i + 1}/H${j + 1}`; });
      const xs = patch.holes.map((h) => layout.x_um[h] / pitch);
      const ys = patch.holes.map((h) => layout.y_um[h] / pitch);
      patch.box = [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
    });
    sq.meanLook = sq.holes.length ? sq.holes.reduce((a, h) => a + layout.look[h], 0) / sq.holes.length : null;
  }
  let halfSquare = 0;
  for (let h = 0; h < n; h++) {
    if (layout.square[h] < 0) continue;
    halfSquare = Math.max(halfSquare, Math.abs(layout.x_um[h]), Math.abs(layout.y_um[h]));
  }
  halfSquare += pitch;
  return { squares, patches, localName, halfSquare, pitch };
}

// ---- what is shown now (live, or a replay's step) ----------------------------------------------
function currentView() {
  const snap = app.snapshot;
  let log = snap.log;
  let elapsed = snap.elapsed;
  let current = snap.current_hole;
  if (app.replayStep !== null && app.replayStep < log.length) {
    log = log.slice(0, app.replayStep);
    elapsed = log.length ? log[log.length - 1].at_minutes : 0;
    current = log.length ? log[log.length - 1].hole : snap.start_hole;
  }
  const step = new Map();
  const ctf = new Map();
  for (const entry of log) {
    step.set(entry.hole, entry.step);
    if (entry.ctf !== null) ctf.set(entry.hole, entry.ctf);
  }
  const queue = app.replayStep === null ? snap.queue : [];
  const good = log.filter((e) => e.ctf !== null && e.ctf < app.layout.threshold).length;
  return { log, elapsed, current, step, ctf, queue, good, awaiting: log.length - ctf.size };
}

function holeStatus(view, hole) {
  if (hole === app.snapshot.start_hole) return "start";
  if (!view.step.has(hole)) return view.queue.includes(hole) ? "queued" : "unvisited";
  if (!view.ctf.has(hole)) return "awaiting";
  return view.ctf.get(hole) < app.layout.threshold ? "good" : "bad";
}

function moveLevel(from, to) {
  const L = app.layout;
  return 3 - (L.tile[from] === L.tile[to]) - (L.square[from] === L.square[to]) - (L.patch[from] === L.patch[to]);
}

// ---- drawing: atlas -------------------------------------------------------------------------
// The atlas is drawn as the microscope's atlas montage: tiles where the grid puts them, each
// tile's squares as cells on a lattice inside it (the squares' order kept). Positions are for
// orientation only: a move's cost depends on the hierarchy, not the distance (as in the paper).
function atlasGeometry() {
  if (app.index.atlas) return app.index.atlas;
  const xy = app.layout.square_xy_um;
  const byTile = new Map();
  for (const sq of app.index.squares.values()) {
    if (!byTile.has(sq.tile)) byTile.set(sq.tile, { id: sq.tile, squares: [] });
    byTile.get(sq.tile).squares.push(sq.id);
  }
  const tiles = [...byTile.values()];
  for (const t of tiles) {
    t.x = t.squares.reduce((a, s) => a + xy[s][0], 0) / t.squares.length;
    t.y = t.squares.reduce((a, s) => a + xy[s][1], 0) / t.squares.length;
  }
  // Tiles on a lattice as wide as the panel allows, in the grid's own top-to-bottom, left-to-right order.
  const panel = $("atlas").getBoundingClientRect();
  const aspect = panel.width > 0 && panel.height > 0 ? panel.width / panel.height : 1;
  const cols = Math.max(1, Math.min(tiles.length, Math.round(Math.sqrt(tiles.length * aspect))));
  const side = 100;
  const gap = 16;
  const cells = new Map();
  lattice(tiles, cols, (t) => t.x, (t) => t.y).forEach((t, i) => {
    t.cx = (i % cols) * (side + gap) + side / 2;
    t.cy = Math.floor(i / cols) * (side + gap + 6) + side / 2;
    t.side = side;
    const k = Math.ceil(Math.sqrt(t.squares.length));
    const cell = (side - 8) / k;
    lattice(t.squares, k, (s) => xy[s][0], (s) => xy[s][1]).forEach((s, j) => {
      cells.set(s, { x: t.cx - side / 2 + 4 + (j % k) * cell + cell * 0.06,
        y: t.cy - side / 2 + 4 + Math.floor(j / k) * cell + cell * 0.06, size: cell * 0.88 });
    });
  });
  const rows = Math.ceil(tiles.length / cols);
  const looks = [...app.index.squares.values()].map((sq) => sq.meanLook).filter((look) => look !== null);
  app.index.atlas = { tiles, cells, lookMin: Math.min(...looks), lookMax: Math.max(...looks), box: [-gap, -gap - 4, cols * (side + gap) + gap, rows * (side + gap + 6) + gap] };
  return app.index.atlas;
}

// Items in reading order on a lattice of `cols` columns: rows by y, each row by x.
function lattice(items, cols, xOf, yOf) {
  const byY = [...items].sort((a, b) => yOf(a) - yOf(b));
  const out = [];
  for (let i = 0; i < byY.length; i += cols) out.push(...byY.slice(i, i + cols).sort((a, b) => xOf(a) - xOf(b)));
  return out;
}

function drawAtlas(view) {
  const root = $("atlas");
  clear(root);
  const L = app.layout;
  const geo = atlasGeometry();
  const [x0, y0, w, h] = geo.box;
  root.setAttribute("viewBox", `${x0} ${y0} ${w} ${h}`);
  const panel = root.getBoundingClientRect();
  const u = Math.max(w / Math.max(panel.width, 1), h / Math.max(panel.height, 1)); // one screen pixel
  for (const t of geo.tiles) {
    const half = t.side / 2;
    svg("rect", { class: "tile-frame", x: t.cx - half, y: t.cy - half, width: t.side, height: t.side, rx: 3 * u,
      "stroke-width": 1.2 * u }, root);
    const label = svg("text", { class: "tile-label", x: t.cx - half, y: t.cy - half - 3 * u, "font-size": 10 * u }, root);
    label.textContent = `tile ${t.id}`;
  }
  const perSquare = new Map();
  for (const entry of view.log) {
    const s = L.square[entry.hole];
    perSquare.set(s, (perSquare.get(s) || 0) + 1);
  }
  for (const sq of app.index.squares.values()) {
    const c = geo.cells.get(sq.id);
    if (L.staged && !L.imaged[sq.id]) {
      // Not imaged yet: the atlas's estimate only (greener: more good holes expected); a click images it.
      const f = L.atlas_good_fraction[sq.id];
      const cell = svg("rect", { class: "square-cell square-unimaged", x: c.x, y: c.y, width: c.size, height: c.size,
        fill: `rgb(${Math.round(90 - 60 * f)}, ${Math.round(60 + 150 * f)}, ${Math.round(70 + 30 * f)})`,
        "stroke-width": 1.2 * u, "stroke-dasharray": `${3 * u} ${2 * u}`, "data-square": sq.id }, root);
      cell.addEventListener("click", () => imageSquare(sq.id));
      const title = svg("title", {}, cell);
      title.textContent = `square ${sq.id} (tile ${sq.tile}), not imaged: atlas size class ${L.atlas_size_class[sq.id]} ` +
        `of 0-4, about ${Math.round(100 * f)}% good. Click to image it (${L.square_minutes} min).`;
      const label = svg("text", { class: "square-label", x: c.x + 2.5 * u, y: c.y + 9 * u, "font-size": 8 * u }, root);
      label.textContent = `${sq.id}?`;
      continue;
    }
    // Contrast stretched over the grid's squares (a monotone map: still the predictions, nothing more).
    const shade = 0.25 + 0.65 * (sq.meanLook - geo.lookMin) / Math.max(geo.lookMax - geo.lookMin, 1e-9);
    const cell = svg("rect", { class: "square-cell", x: c.x, y: c.y, width: c.size, height: c.size,
      fill: grey(shade), "stroke-width": 1.2 * u, "data-square": sq.id }, root);
    cell.addEventListener("click", () => selectSquare(sq.id));
    const title = svg("title", {}, cell);
    title.textContent = `square ${sq.id} (tile ${sq.tile}): ${sq.holes.length} holes, ${sq.patches.length} patches`;
    const label = svg("text", { class: "square-label", x: c.x + 2.5 * u, y: c.y + 9 * u, "font-size": 8 * u }, root);
    label.textContent = sq.id;
    if (perSquare.has(sq.id)) {
      const r = 6.5 * u;
      svg("circle", { class: "square-badge", cx: c.x + c.size - r - 1.5 * u, cy: c.y + c.size - r - 1.5 * u, r,
        "stroke-width": u }, root);
      const t = svg("text", { class: "square-badge-text", x: c.x + c.size - r - 1.5 * u,
        y: c.y + c.size - r + 1.2 * u, "font-size": 7 * u }, root);
      t.textContent = perSquare.get(sq.id);
    }
  }
  const stage = geo.cells.get(L.square[view.current]);
  svg("rect", { class: "square-stage", x: stage.x - 2.5 * u, y: stage.y - 2.5 * u, width: stage.size + 5 * u,
    height: stage.size + 5 * u, "stroke-width": 2 * u, "stroke-dasharray": `${4 * u} ${2.5 * u}` }, root);
  if (app.selectedSquare !== null) {
    const sel = geo.cells.get(app.selectedSquare);
    svg("rect", { class: "square-selected", x: sel.x - 0.5 * u, y: sel.y - 0.5 * u, width: sel.size + u,
      height: sel.size + u, "stroke-width": 2 * u }, root);
  }
}

// ---- drawing: square --------------------------------------------------------------------------
const STATUS_FILL = { good: "#3ccf7a", bad: "#ef5350", awaiting: "#f2c94c" };

function drawSquare(view) {
  const root = $("square");
  clear(root);
  const L = app.layout;
  const idx = app.index;
  const sq = idx.squares.get(app.selectedSquare);
  const half = idx.halfSquare / idx.pitch;
  root.setAttribute("viewBox", `${-half} ${-half} ${2 * half} ${2 * half}`);
  svg("rect", { class: "foil", x: -half, y: -half, width: 2 * half, height: 2 * half }, root);
  const exposedHere = view.log.filter((e) => L.square[e.hole] === sq.id).length;
  clear($("square-title"));
  $("square-title").append(`Square ${sq.id} (tile ${sq.tile})`);
  const hint = document.createElement("span");
  hint.className = "hint";
  hint.textContent = `${sq.patches.length} patches · ${sq.holes.length} holes · ${exposedHere} exposed`;
  $("square-title").append(hint);
  for (const p of sq.patches) {
    const patch = idx.patches.get(p);
    const [a, b, c, d] = patch.box;
    const frame = svg("rect", { class: "patch-frame", x: a - 0.6, y: b - 0.6, width: c - a + 1.2, height: d - b + 1.2,
      rx: 0.3, "stroke-width": 0.08, "data-patch": p }, root);
    frame.addEventListener("click", () => selectPatch(p));
    const title = svg("title", {}, frame);
    title.textContent = `patch ${patch.number} of square ${sq.id}: ${patch.holes.length} holes`;
  }
  for (const h of sq.holes) {
    const status = holeStatus(view, h);
    const fill = STATUS_FILL[status] || grey(L.look[h]);
    svg("circle", { class: "hole-small", cx: L.x_um[h] / idx.pitch, cy: L.y_um[h] / idx.pitch, r: 0.36, fill,
      "data-hole": h }, root);
    if (status === "queued") {
      svg("circle", { cx: L.x_um[h] / idx.pitch, cy: L.y_um[h] / idx.pitch, r: 0.5, fill: "none",
        stroke: "#5ac8fa", "stroke-width": 0.12 }, root);
    }
  }
  if (app.selectedPatch !== null && L.patch[idx.patches.get(app.selectedPatch).holes[0]] === app.selectedPatch
      && idx.patches.get(app.selectedPatch).square === sq.id) {
    const [a, b, c, d] = idx.patches.get(app.selectedPatch).box;
    svg("rect", { class: "patch-selected", x: a - 0.7, y: b - 0.7, width: c - a + 1.4, height: d - b + 1.4, rx: 0.3,
      "stroke-width": 0.2 }, root);
  }
  if (L.square[view.current] === sq.id) {
    const cx = L.x_um[view.current] / idx.pitch;
    const cy = L.y_um[view.current] / idx.pitch;
    svg("circle", { class: "stage-mark", cx, cy, r: 0.75, "stroke-width": 0.16 }, root);
    svg("path", { class: "stage-mark", d: `M${cx - 1.2} ${cy}h0.6M${cx + 0.6} ${cy}h0.6M${cx} ${cy - 1.2}v0.6M${cx} ${cy + 0.6}v0.6`,
      "stroke-width": 0.16 }, root);
  }
  // Scale bar: 10 µm.
  const bar = 10 / idx.pitch;
  svg("line", { class: "scale-bar", x1: half - bar - 1, y1: half - 1, x2: half - 1, y2: half - 1, "stroke-width": 0.15 }, root);
  const t = svg("text", { class: "scale-text", x: half - bar - 1, y: half - 1.4, "font-size": 0.9 }, root);
  t.textContent = "10 µm";
}

// ---- drawing: patch (where holes are exposed) ---------------------------------------------------
function drawPatch(view) {
  const root = $("patch");
  clear(root);
  const L = app.layout;
  const idx = app.index;
  const patch = idx.patches.get(app.selectedPatch);
  const [a, b, c, d] = patch.box;
  const size = Math.max(c - a, d - b) + 2.2;
  const cx0 = (a + c) / 2;
  const cy0 = (b + d) / 2;
  root.setAttribute("viewBox", `${cx0 - size / 2} ${cy0 - size / 2} ${size} ${size}`);
  svg("rect", { class: "foil", x: cx0 - size / 2, y: cy0 - size / 2, width: size, height: size }, root);
  const title = $("patch-title");
  clear(title);
  title.append(`Patch ${patch.number} · square ${patch.square}`);
  const hint = document.createElement("span");
  hint.className = "hint";
  const queueMode = app.config.feedback.startsWith("queue");
  const readOnly = app.snapshot.read_only || app.snapshot.over || app.replayStep !== null;
  const action = readOnly ? "hover a hole for details" : `click a hole to ${queueMode ? "queue" : "expose"} it`;
  hint.textContent = `${patch.holes.length} holes · ${action}`;
  title.append(hint);
  for (const h of patch.holes) {
    const x = L.x_um[h] / idx.pitch;
    const y = L.y_um[h] / idx.pitch;
    const status = holeStatus(view, h);
    const exposed = status !== "unvisited" && status !== "queued";
    const g = svg("g", { class: `hole ${exposed ? "exposed" : ""}`, "data-hole": h, "data-status": status }, root);
    svg("circle", { class: "rim", cx: x, cy: y, r: 0.47 }, g);
    // The hole's low-magnification look: brightness from the regressor's prediction (see session.py).
    svg("circle", { cx: x, cy: y, r: 0.4, fill: grey(L.look[h]) }, g);
    svg("circle", { cx: x - 0.05, cy: y - 0.05, r: 0.25, fill: grey(L.look[h], 0.05), opacity: 0.6 }, g);
    for (let k = 0; k < 3; k++) {
      const angle = 2 * Math.PI * hash01(h, k);
      const radius = 0.3 * Math.sqrt(hash01(h, k + 7));
      svg("circle", { class: "speck", cx: x + radius * Math.cos(angle), cy: y + radius * Math.sin(angle),
        r: 0.025 + 0.03 * hash01(h, k + 13) }, g);
    }
    if (app.overlay && !exposed) {
      // Only predicted-good holes get a ring: the orange of the stage marker stays unambiguous.
      if (L.predicted_ctf[h] < L.threshold) svg("circle", { class: "ring pred-good", cx: x, cy: y, r: 0.43 }, g);
      const t = svg("text", { class: "pred", x, y: y + 0.09, "font-size": 0.26 }, g);
      t.textContent = L.predicted_ctf[h].toFixed(1);
    }
    if (status === "queued") {
      svg("circle", { class: "ring queued", cx: x, cy: y, r: 0.5 }, g);
      const t = svg("text", { class: "order-tag", x, y: y - (app.overlay ? 0.16 : 0.02), "font-size": 0.2 }, g);
      t.textContent = `Q${view.queue.indexOf(h) + 1}`;
    }
    if (exposed && status !== "start") {
      const o = svg("text", { class: "order-tag", x, y: y - 0.1, "font-size": 0.2 }, g);
      o.textContent = `#${view.step.get(h)}`;
      svg("rect", { class: `ctf-box ${status}`, x: x - 0.44, y: y + 0.0, width: 0.88, height: 0.3, rx: 0.06 }, g);
      const t = svg("text", { class: "ctf-tag ctf-text", x, y: y + 0.22, "font-size": 0.22,
        "data-ctf": view.ctf.has(h) ? view.ctf.get(h) : "" }, g);
      const ctf = view.ctf.get(h);
      t.textContent = status === "awaiting" ? "? Å" : ctf >= 1000 ? "no fit" : formatCtf(ctf);
    }
    if (h === view.current) svg("circle", { class: "ring stage", cx: x, cy: y, r: 0.55 }, g);
    if (status === "start") {
      const o = svg("text", { class: "order-tag", x, y: y + 0.07, "font-size": 0.2 }, g);
      o.textContent = "start";
    }
    g.addEventListener("mouseenter", () => showHoleInfo(h, view));
    if (!readOnly) g.addEventListener("click", () => clickHole(h));
  }
  const bar = 2 / idx.pitch * 1; // 2 µm
  const bx = cx0 + size / 2 - bar - 0.3;
  const by = cy0 + size / 2 - 0.3;
  svg("line", { class: "scale-bar", x1: bx, y1: by, x2: bx + bar, y2: by, "stroke-width": 0.06 }, root);
  const t = svg("text", { class: "scale-text", x: bx, y: by - 0.12, "font-size": 0.3 }, root);
  t.textContent = "2 µm";
}

function showHoleInfo(hole, view) {
  const L = app.layout;
  const el = $("hover-info");
  clear(el);
  const name = document.createElement("b");
  name.textContent = app.index.localName[hole];
  el.append(name, ` (hole ${hole}) `);
  const status = holeStatus(view, hole);
  const parts = [];
  if (status === "unvisited" || status === "queued") {
    const from = view.queue.length ? view.queue[view.queue.length - 1] : view.current;
    const level = moveLevel(from, hole);
    parts.push(`move: ${MOVE_NAMES[L.move_levels[level]]}, ${L.minutes[level]} min`);
    highlightCost(level);
  } else if (status === "start") {
    parts.push("the starting position");
  } else {
    parts.push(`exposure #${view.step.get(hole)}`);
    parts.push(status === "awaiting" ? "CTFMaxRes not yet known" : `CTFMaxRes ${formatCtf(view.ctf.get(hole))}`);
  }
  if (app.overlay) parts.push(`predicted ${L.predicted_ctf[hole].toFixed(1)} Å`);
  el.append(document.createElement("br"), parts.join(" · "));
}

function highlightCost(level) {
  const rows = $("costs").querySelectorAll("tr");
  rows.forEach((row, i) => row.classList.toggle("hot", i === level));
}

// ---- drawing: side panel, readouts ----------------------------------------------------------------
function fillCosts(table) {
  clear(table);
  const L = app.layout;
  L.move_levels.forEach((level, i) => {
    const row = table.insertRow();
    row.insertCell().textContent = MOVE_NAMES[level];
    row.insertCell().textContent = `${L.minutes[i]} min`;
  });
  if (L.staged) { // staged sessions: imaging a square (click a square marked "?" in the atlas)
    const row = table.insertRow();
    row.insertCell().textContent = "image a square";
    row.insertCell().textContent = `${L.square_minutes} min`;
  }
}

function drawLog(view) {
  const body = $("log").tBodies[0];
  clear(body);
  const L = app.layout;
  for (let i = view.log.length - 1; i >= 0; i--) {
    const e = view.log[i];
    const row = body.insertRow();
    row.dataset.hole = e.hole;
    row.insertCell().textContent = e.step;
    row.insertCell().textContent = app.index.localName[e.hole];
    row.insertCell().textContent = `${SHORT_MOVE[e.level]} ${e.cost}′`;
    row.insertCell().textContent = clock(e.at_minutes);
    const cell = row.insertCell();
    const known = view.ctf.has(e.hole);
    cell.textContent = known ? formatCtf(view.ctf.get(e.hole)) : "awaiting";
    cell.className = known ? (view.ctf.get(e.hole) < L.threshold ? "good" : "bad") : "awaiting";
    if (known) cell.dataset.ctf = view.ctf.get(e.hole);
  }
}

function drawCurve(view) {
  const root = $("curve");
  clear(root);
  const W = 280;
  const H = 90;
  const pad = 18;
  const duration = app.layout.duration;
  const maxY = Math.max(10, view.log.length);
  const px = (m) => pad + (W - pad - 6) * Math.min(m, duration) / duration;
  const py = (v) => H - 12 - (H - 20) * v / maxY;
  svg("line", { class: "axis", x1: pad, y1: H - 12, x2: W - 6, y2: H - 12 }, root);
  svg("line", { class: "axis", x1: pad, y1: 6, x2: pad, y2: H - 12 }, root);
  let good = 0;
  const goodPts = [`${px(0)},${py(0)}`];
  const allPts = [`${px(0)},${py(0)}`];
  view.log.forEach((e, i) => {
    if (e.ctf !== null && e.ctf < app.layout.threshold && view.ctf.has(e.hole)) good += 1;
    goodPts.push(`${px(e.at_minutes)},${py(good)}`);
    allPts.push(`${px(e.at_minutes)},${py(i + 1)}`);
  });
  svg("polyline", { class: "all", points: allPts.join(" ") }, root);
  svg("polyline", { class: "line", points: goodPts.join(" ") }, root);
  const t1 = svg("text", { x: 2, y: 12 }, root);
  t1.textContent = maxY;
  const t2 = svg("text", { x: W - 40, y: H - 2 }, root);
  t2.textContent = `${duration} min`;
  const t3 = svg("text", { x: pad + 4, y: 14 }, root);
  t3.textContent = "— good   ‐‐ all exposures";
}

function drawQueue(view) {
  const queueMode = app.config.feedback.startsWith("queue");
  $("queue-box").classList.toggle("hidden", !queueMode || app.replayStep !== null);
  if (!queueMode) return;
  const list = $("queue");
  clear(list);
  $("queue-hint").textContent = `CTFs revealed every ${app.config.feedback.split(":")[1]} exposures`;
  for (const h of view.queue) {
    const li = document.createElement("li");
    li.textContent = app.index.localName[h];
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.title = "remove from the queue";
    remove.addEventListener("click", () => queueHole(h, "remove"));
    li.append(remove);
    list.append(li);
  }
  const collect = $("collect");
  collect.textContent = view.queue.length ? `Collect ${view.queue.length} queued` : "Collect queue";
  collect.disabled = !view.queue.length || app.snapshot.over;
}

function drawReadouts(view) {
  const L = app.layout;
  const left = Math.max(L.duration - view.elapsed, 0);
  $("clock").textContent = clock(view.elapsed);
  $("clock").dataset.minutes = view.elapsed;
  $("clock-of").textContent = `${view.elapsed.toFixed(0)} of ${L.duration} min`;
  $("time-left").textContent = clock(left);
  $("time-left").dataset.minutes = left;
  $("exposures").textContent = view.log.length;
  $("good").textContent = view.good;
  $("good-label").textContent = `Good (< ${L.threshold} Å)`;
  $("awaiting").textContent = view.awaiting;
  $("awaiting-box").classList.toggle("hidden", app.config.feedback === "inspection");
  $("time-bar-fill").style.width = `${Math.min(100, 100 * view.elapsed / L.duration)}%`;
  const meta = $("session-meta");
  clear(meta);
  const who = document.createElement("b");
  who.textContent = app.snapshot.display_name;
  const mode = app.config.mode === "replay" ? "replay" : `${app.config.feedback} mode`;
  meta.append(who, ` · ${app.config.grid} (${app.config.n_holes} holes) · ${mode} · seed ${app.config.seed}`);
  $("finish").disabled = app.snapshot.over || app.snapshot.read_only;
}

function render() {
  if (!app.snapshot) return;
  const view = currentView();
  drawReadouts(view);
  drawAtlas(view);
  drawSquare(view);
  drawPatch(view);
  drawLog(view);
  drawCurve(view);
  drawQueue(view);
  if (app.config.mode === "replay") {
    $("replay-label").textContent = `step ${view.log.length} of ${app.snapshot.log.length} · ${clock(view.elapsed)}`;
  }
}

// ---- navigation (free) -------------------------------------------------------------------------
function selectSquare(square) {
  app.selectedSquare = square;
  const sq = app.index.squares.get(square);
  const view = currentView();
  // Open the patch where the stage is, if it is in this square; else the square's first patch.
  app.selectedPatch = app.layout.square[view.current] === square ? app.layout.patch[view.current] : sq.patches[0];
  render();
}

function selectPatch(patch) {
  app.selectedPatch = patch;
  app.selectedSquare = app.index.patches.get(patch).square;
  render();
}

// ---- actions (cost time, on the server) --------------------------------------------------------------
// Staged sessions: what is known changes as squares are imaged; the server says when (layout_version).
async function refreshLayout(snapshot) {
  if (!app.layout.staged || snapshot.layout_version === app.layoutVersion) return;
  app.layout = await api("GET", `/api/sessions/${encodeURIComponent(snapshot.session)}/layout`);
  app.index = buildIndex(app.layout);
  app.layoutVersion = snapshot.layout_version;
}

function imageSquare(square) {
  if (!window.confirm(`Image square ${square}? It costs ${app.layout.square_minutes} min; then its holes are shown.`)) {
    return;
  }
  send("POST", `/api/sessions/${app.sessionId}/image-square`, { square });
}

async function send(method, path, body) {
  if (app.busy) return;
  app.busy = true;
  try {
    const snapshot = await api(method, path, body);
    await refreshLayout(snapshot);
    app.snapshot = snapshot;
    render();
    if (app.snapshot.over) showEnd();
  } catch (error) {
    toast(error.message);
    if (error.status === 404) forgetSession();
  } finally {
    app.busy = false;
  }
}

function clickHole(hole) {
  if (app.config.feedback.startsWith("queue")) {
    queueHole(hole, app.snapshot.queue.includes(hole) ? "remove" : "add");
    return;
  }
  send("POST", `/api/sessions/${app.sessionId}/expose`, { hole, overlay: app.overlay });
}

function queueHole(hole, action) {
  send("POST", `/api/sessions/${app.sessionId}/queue`, { hole, action });
}

// ---- session life ----------------------------------------------------------------------------------
function rememberSession(id) {
  app.sessionId = id;
  localStorage.setItem("cryobench-play-session", id);
  const url = new URL(window.location.href);
  url.searchParams.set("session", id);
  history.replaceState(null, "", url.toString());
}

function forgetSession() {
  localStorage.removeItem("cryobench-play-session");
  const url = new URL(window.location.href);
  url.searchParams.delete("session");
  history.replaceState(null, "", url.toString());
}

async function openSession(snapshot) {
  await refreshLayout(snapshot);
  app.snapshot = snapshot;
  rememberSession(snapshot.session);
  const view = currentView();
  app.selectedSquare = app.layout.square[view.current];
  app.selectedPatch = app.layout.patch[view.current];
  $("start-dialog").classList.add("hidden");
  render();
  if (snapshot.over && app.config.mode !== "replay" && !sessionStorage.getItem(`reviewed-${snapshot.session}`)) showEnd();
}

function showStart() {
  const c = app.config;
  $("start-summary").textContent = `${c.grid}: ${c.n_holes} holes · ${c.duration} min session · ` +
    `${c.feedback} feedback · good means CTFMaxRes < ${c.threshold} Å · seed ${c.seed}`;
  fillCosts($("start-costs"));
  $("start-dialog").classList.remove("hidden");
  $("player").focus();
}

async function showEnd() {
  if (app.endShown) return;
  app.endShown = true;
  let result;
  try {
    result = await api("GET", `/api/sessions/${app.sessionId}/results`);
  } catch (error) {
    toast(error.message);
    return;
  }
  const e = result.episodes[0];
  const rows = [
    ["player", "Player", result.agent.name],
    ["minutes", "Session time", `${e.minutes.toFixed(0)} min`],
    ["exposures", "Exposures", e.exposures],
    ["good", `Good exposures (< ${app.layout.threshold} Å)`, e.good_exposures],
    ["fraction", "Good fraction", `${(100 * e.good_fraction).toFixed(1)} %`],
    ["bins", "CTFMaxRes < 4 / 4-5 / 5-6 / > 6 Å", `${e.bins["<4"]} / ${e.bins["4-5"]} / ${e.bins["5-6"]} / ${e.bins[">6"]}`],
    ["squares", "Squares visited", e.squares_visited],
    ["per-square", "Exposures per square", e.exposures_per_square.toFixed(1)],
  ];
  const table = $("end-summary");
  clear(table);
  for (const [id, label, value] of rows) {
    const row = table.insertRow();
    row.insertCell().textContent = label;
    const cell = row.insertCell();
    cell.textContent = value;
    cell.id = `end-${id}`;
  }
  $("end-title").textContent = app.snapshot.finished_early ? "Session ended" : "Session complete";
  $("end-file").textContent = app.snapshot.results_file
    ? `Results saved on the server: ${app.snapshot.results_file}. Compare with agents: cryobench compare FILE …`
    : "";
  $("download").href = `/api/sessions/${app.sessionId}/results`;
  $("end-dialog").classList.remove("hidden");
}

// ---- replay ------------------------------------------------------------------------------------------
function setupReplay() {
  const n = app.snapshot.log.length;
  const slider = $("replay-step");
  slider.max = n;
  slider.value = n;
  app.replayStep = n;
  $("replay-bar").classList.remove("hidden");
  slider.addEventListener("input", () => { app.replayStep = Number(slider.value); render(); });
  $("replay-play").addEventListener("click", () => {
    if (app.replayTimer) {
      clearInterval(app.replayTimer);
      app.replayTimer = null;
      $("replay-play").textContent = "Play";
      return;
    }
    if (app.replayStep >= n) app.replayStep = 0;
    $("replay-play").textContent = "Pause";
    app.replayTimer = setInterval(() => {
      app.replayStep = Math.min(n, app.replayStep + 1);
      slider.value = app.replayStep;
      const view = currentView();
      app.selectedSquare = app.layout.square[view.current];
      app.selectedPatch = app.layout.patch[view.current];
      render();
      if (app.replayStep >= n) $("replay-play").click();
    }, 150);
  });
}

// ---- start ------------------------------------------------------------------------------------------
async function main() {
  try {
    app.config = await api("GET", "/api/config");
    app.layout = await api("GET", "/api/layout");
  } catch (error) {
    toast(`cannot reach the cryobench server: ${error.message}`);
    return;
  }
  app.index = buildIndex(app.layout);
  fillCosts($("costs"));
  $("overlay").addEventListener("change", (event) => { app.overlay = event.target.checked; render(); });
  $("finish").addEventListener("click", () => {
    if (window.confirm("End the session now? The results file is written with what you have collected.")) {
      send("POST", `/api/sessions/${app.sessionId}/finish`, {});
    }
  });
  $("collect").addEventListener("click", () => {
    send("POST", `/api/sessions/${app.sessionId}/collect`, { overlay: app.overlay });
  });
  $("review").addEventListener("click", () => {
    sessionStorage.setItem(`reviewed-${app.sessionId}`, "1");
    $("end-dialog").classList.add("hidden");
  });
  $("new-session").addEventListener("click", () => {
    forgetSession();
    window.location.reload();
  });
  $("start-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await openSession(await api("POST", "/api/sessions", { player: $("player").value }));
    } catch (error) {
      toast(error.message);
    }
  });

  if (app.config.mode === "replay") {
    await openSession(await api("GET", `/api/sessions/${app.config.replay_session}`));
    setupReplay();
    render();
    return;
  }
  const wanted = new URL(window.location.href).searchParams.get("session") ||
    localStorage.getItem("cryobench-play-session");
  if (wanted) {
    try {
      await openSession(await api("GET", `/api/sessions/${encodeURIComponent(wanted)}`));
      return;
    } catch (error) {
      forgetSession();
    }
  }
  showStart();
}

main();
