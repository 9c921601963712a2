// The painted mask: a Uint8Array of class ids (the source of truth), its history, the tools.
//
// Strokes write ids into the array, the canvas only shows it through the palette, and uploads
// encode the array as an index PNG (indexpng.js), so no anti-aliased or in-between colour of
// the canvas ever reaches the model.
"use strict";

const studio = {  // window.studio: the state, also read by the browser test
  health: null, classes: [], width: 0, height: 0, labels: null,
  tool: "brush", current: 1, size: 4, undo: [], redo: [], maxUndo: 60,
  ref: null, refMask: null, refLabels: null, gallery: [], partsMasks: {},
  inFlight: false, dirty: false, regenCount: 0, lastSent: null, resultBlob: null,
};
window.studio = studio;

const $ = (id) => document.getElementById(id);
const canvas = $("mask-canvas");
const context = canvas.getContext("2d", { willReadFrequently: true });

// ---------------------------------------------------------------- the mask and its history

let packedColours = null;  // the palette as RGBA words (little-endian: A B G R)
function render() {
  packedColours ??= Uint32Array.from(studio.classes, (c) => {
    const v = parseInt(c.color.slice(1), 16);
    return (255 << 24 | (v & 0xff) << 16 | (v & 0xff00) | (v >> 16)) >>> 0;
  });
  const image = context.createImageData(studio.width, studio.height);
  const pixels = new Uint32Array(image.data.buffer);
  for (let i = 0; i < studio.labels.length; i++) pixels[i] = packedColours[studio.labels[i]];
  context.putImageData(image, 0, 0);
}

function snapshot() {
  return { labels: studio.labels.slice(), width: studio.width, height: studio.height };
}

function restore(state) {
  studio.labels = state.labels; studio.width = state.width; studio.height = state.height;
  canvas.width = state.width; canvas.height = state.height;
  render();
}

function remember() {  // call before every change
  if (studio.labels) studio.undo.push(snapshot());
  if (studio.undo.length > studio.maxUndo) studio.undo.shift();
  studio.redo = [];
  updateHistoryButtons();
}

function setMask(state) {  // a new mask from a file, a gallery face or an edit: undoable
  remember();
  restore({ labels: state.labels.slice(), width: state.width, height: state.height });
  regenerate();
}

function travel(from, to) {  // undo: from the undo stack to redo; redo: the other way
  if (!from.length) return;
  to.push(snapshot());
  restore(from.pop());
  updateHistoryButtons();
  regenerate();
}

function undo() { travel(studio.undo, studio.redo); }

function redo() { travel(studio.redo, studio.undo); }

function updateHistoryButtons() {
  $("undo").disabled = !studio.undo.length;
  $("redo").disabled = !studio.redo.length;
}

// ---------------------------------------------------------------- painting

function paintLabel() {
  return studio.tool === "eraser" ? 0 : studio.current;
}

function stamp(x, y, label) {
  // Every pixel whose centre lies within the brush radius of (x, y) gets the label.
  const radius = studio.size / 2;
  const x0 = Math.max(0, Math.floor(x - radius)), x1 = Math.min(studio.width - 1, Math.ceil(x + radius));
  const y0 = Math.max(0, Math.floor(y - radius)), y1 = Math.min(studio.height - 1, Math.ceil(y + radius));
  for (let py = y0; py <= y1; py++) {
    for (let px = x0; px <= x1; px++) {
      const dx = px + 0.5 - x, dy = py + 0.5 - y;
      if (dx * dx + dy * dy <= radius * radius) studio.labels[py * studio.width + px] = label;
    }
  }
}

function line(from, to, label) {
  const distance = Math.hypot(to.x - from.x, to.y - from.y);
  const steps = Math.max(1, Math.ceil(distance / Math.max(0.5, studio.size / 4)));
  for (let i = 1; i <= steps; i++) {
    stamp(from.x + (to.x - from.x) * i / steps, from.y + (to.y - from.y) * i / steps, label);
  }
}

function floodFill(x, y, label) {
  const { width, height, labels } = studio;
  const start = Math.floor(y) * width + Math.floor(x);
  const target = labels[start];
  if (target === label) return;
  const stack = [start];
  while (stack.length) {
    const i = stack.pop();
    if (labels[i] !== target) continue;
    labels[i] = label;
    const px = i % width;
    if (px > 0) stack.push(i - 1);
    if (px < width - 1) stack.push(i + 1);
    if (i >= width) stack.push(i - width);
    if (i < width * (height - 1)) stack.push(i + width);
  }
}

function maskPoint(event) {
  // The canvas is drawn with object-fit: contain; map the pointer into mask pixels.
  const rect = canvas.getBoundingClientRect();
  const scale = Math.min(rect.width / studio.width, rect.height / studio.height);
  const left = rect.left + (rect.width - studio.width * scale) / 2;
  const top = rect.top + (rect.height - studio.height * scale) / 2;
  return { x: (event.clientX - left) / scale, y: (event.clientY - top) / scale };
}

function inside(point) {
  return point.x >= 0 && point.y >= 0 && point.x < studio.width && point.y < studio.height;
}

let stroke = null;
canvas.addEventListener("pointerdown", (event) => {
  if (!studio.labels || event.button !== 0) return;
  const point = maskPoint(event);
  if (!inside(point)) return;
  remember();
  if (studio.tool === "fill") {
    floodFill(point.x, point.y, studio.current);
    render();
    regenerate();
    return;
  }
  canvas.setPointerCapture(event.pointerId);
  stroke = point;
  stamp(point.x, point.y, paintLabel());
  render();
});
canvas.addEventListener("pointermove", (event) => {
  if (!studio.labels) return;
  const point = maskPoint(event);
  if (inside(point)) {
    const label = studio.labels[Math.floor(point.y) * studio.width + Math.floor(point.x)];
    $("hover-info").textContent = `· ${Math.floor(point.x)}, ${Math.floor(point.y)}: ${studio.classes[label].name}`;
  }
  if (!stroke) return;
  line(stroke, point, paintLabel());
  stroke = point;
  render();
});
function endStroke() {
  if (!stroke) return;
  stroke = null;
  regenerate();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

