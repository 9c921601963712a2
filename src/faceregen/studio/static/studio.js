// faceregen studio: server calls, controls and start-up. Plain JavaScript, no build step; the
// page loads indexpng.js, mask.js and this file in that order.
"use strict";

const PART_PRESETS = ["mouth", "u_lip", "l_lip"];  // ticked at the start: the report's edit
// The region pickers' starting names (a regional model): the looks people mix most.
const REGION_PRESETS = ["hair", "skin,nose,l_ear,r_ear,neck", "cloth"];

// ---------------------------------------------------------------- server calls

async function api(path, fields) {
  // POST multipart fields (Blobs or strings); a JSON {"error": ...} answer becomes an Error.
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value instanceof Blob) form.append(name, value, name + ".png");
    else if (value !== null && value !== undefined) form.append(name, value);
  }
  const response = await fetch(path, { method: "POST", body: form });
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}

async function errorText(response) {
  try { return (await response.json()).error; } catch { return `HTTP ${response.status}`; }
}

async function getBlob(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(await errorText(response));
  return response.blob();
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function readMask(blob) {  // an index PNG from the server -> {labels, width, height}
  return decodeIndexPng(blob, studio.classes.length);
}

async function maskBlob() {
  return encodeIndexPng(studio.labels, studio.width, studio.height);
}

function regenFields(mask) {
  const fields = { mask };
  if (studio.health.needs_reference) { fields.ref = studio.ref; fields.ref_mask = studio.refMask; }
  (studio.regionRefs || []).forEach((region, index) => {
    if (!region.photo || (!region.mask && !studio.health.parser)) return;  // not usable yet
    const name = `region_ref_${index + 1}`;
    fields[name] = region.photo;
    fields[`${name}_regions`] = region.input.value;
    fields[`${name}_mask`] = region.mask;
  });
  return fields;
}

function canRegenerate() {
  return studio.labels && (!studio.health.needs_reference || studio.ref);
}

async function regenerate() {
  // One request at a time; strokes that land meanwhile are sent together when it returns.
  if (!canRegenerate()) return;
  if (studio.inFlight) { studio.dirty = true; return; }
  studio.inFlight = true; studio.dirty = false;
  $("result-status").textContent = "· generating…";
  try {
    const sent = studio.labels.slice();
    const started = performance.now();
    const response = await api("/api/regen", regenFields(await maskBlob()));
    const blob = await response.blob();
    studio.lastSent = { labels: sent, width: studio.width, height: studio.height };
    studio.resultBlob = blob;
    const image = $("result-image");
    const old = image.src;
    await new Promise((resolve) => { image.onload = resolve; image.onerror = resolve; image.src = URL.createObjectURL(blob); });
    if (old) URL.revokeObjectURL(old);
    studio.regenCount += 1;
    const server = Number(response.headers.get("X-Regen-Seconds") || 0);
    $("result-status").textContent =
      `· ${Math.round(performance.now() - started)} ms (server ${Math.round(server * 1000)} ms)`;
    showError("");
  } catch (error) {
    $("result-status").textContent = "· failed";
    showError(error.message);
  } finally {
    studio.inFlight = false;
    if (studio.dirty) regenerate();
  }
}


// ---------------------------------------------------------------- controls

function selectTool(tool) {
  studio.tool = tool;
  for (const button of document.querySelectorAll(".tool")) {
    button.classList.toggle("active", button.dataset.tool === tool);
    button.setAttribute("aria-checked", button.dataset.tool === tool);
  }
}

function selectClass(id) {
  studio.current = id;
  if (studio.tool === "eraser") selectTool("brush");
  for (const button of document.querySelectorAll(".swatch")) {
    button.classList.toggle("active", Number(button.dataset.label) === id);
    button.setAttribute("aria-checked", Number(button.dataset.label) === id);
  }
}

function setBrushSize(size) {
  studio.size = Math.max(1, Math.min(64, size));
  $("brush-size").value = studio.size;
  $("brush-size-value").textContent = studio.size;
}

function buildPalette() {
  const palette = $("palette");
  for (const c of studio.classes) {
    const button = document.createElement("button");
    button.type = "button"; button.className = "swatch"; button.dataset.label = c.id;
    button.setAttribute("role", "radio");
    button.title = `${c.name} (${c.id}, ${c.color})`;
    button.innerHTML = `<span class="chip"></span><span class="id"></span><span class="name"></span>`;
    button.querySelector(".chip").style.background = c.color;
    button.querySelector(".id").textContent = c.id;
    button.querySelector(".name").textContent = c.name;
    button.addEventListener("click", () => selectClass(c.id));
    palette.append(button);
  }
  const parts = $("parts");
  for (const c of studio.classes.slice(1)) {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox"><span class="chip"></span>`;
    label.querySelector(".chip").style.background = c.color;
    label.querySelector("input").value = c.name;
    label.querySelector("input").checked = PART_PRESETS.includes(c.name);
    label.append(c.name);
    parts.append(label);
  }
}

function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob); link.download = name;
  document.body.append(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

async function guarded(work) {  // run a control's action, showing what went wrong
  try { showError(""); await work(); } catch (error) { showError(error.message); }
}

async function useReference(photo, mask, caption) {
  studio.ref = photo; studio.refMask = mask;
  studio.refLabels = mask ? await readMask(mask) : null;
  const image = $("ref-image");
  if (image.src) URL.revokeObjectURL(image.src);
  image.src = URL.createObjectURL(photo);
  $("ref-caption").textContent = caption;
}

async function loadGalleryReference(face) {
  const [photo, mask] = await Promise.all([getBlob(face.image), getBlob(face.mask)]);
  await useReference(photo, mask, `Reference: dataset face ${face.id} (${face.split})`);
  for (const tile of document.querySelectorAll(".tile")) {
    tile.classList.toggle("selected", Number(tile.dataset.id) === face.id);
  }
  $("ref-status").textContent = "";
}

async function galleryMask(face) {
  if (!studio.partsMasks[face.id]) studio.partsMasks[face.id] = await getBlob(face.mask);
  return studio.partsMasks[face.id];
}

function buildGallery(gallery) {
  $("gallery-message").textContent = gallery.faces.length ? "" : gallery.message;
  $("gallery-hint").hidden = !gallery.faces.length;
  const source = $("parts-source");
  for (const face of gallery.faces) {
    const tile = document.createElement("div");
    tile.className = "tile"; tile.dataset.id = face.id;
    tile.innerHTML = `<img alt=""><button type="button">mask</button>`;
    tile.querySelector("img").src = face.image;
    tile.querySelector("img").alt = `dataset face ${face.id}`;
    tile.querySelector("img").title = `use face ${face.id} as the reference`;
    tile.querySelector("img").addEventListener("click", () => guarded(async () => {
      await loadGalleryReference(face);
      regenerate();
    }));
    tile.querySelector("button").title = `start the mask from face ${face.id}'s mask`;
    tile.querySelector("button").addEventListener("click", () => guarded(async () => {
      setMask(await readMask(await galleryMask(face)));
    }));
    $("gallery").append(tile);
    source.append(new Option(`dataset face ${face.id}`, `gallery:${face.id}`));
  }
}

async function uploadedMask(file) {  // any index or colour mask -> the server's index PNG
  return (await api("/api/mask", { mask: file })).blob();
}

function wireControls() {
  for (const button of document.querySelectorAll(".tool")) {
    button.addEventListener("click", () => selectTool(button.dataset.tool));
  }
  $("brush-size").addEventListener("input", (event) => setBrushSize(Number(event.target.value)));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("start-ref").addEventListener("click", () => guarded(async () => {
    if (!studio.refLabels) throw new Error("the reference has no mask yet: pick a gallery face or upload its mask");
    setMask(studio.refLabels);
  }));
  $("mask-file").addEventListener("change", (event) => guarded(async () => {
    const file = event.target.files[0]; event.target.value = "";
    if (file) setMask(await readMask(await uploadedMask(file)));
  }));
  $("ref-file").addEventListener("change", (event) => guarded(async () => {
    const file = event.target.files[0]; event.target.value = "";
    if (!file) return;
    for (const tile of document.querySelectorAll(".tile")) tile.classList.remove("selected");
    let mask = null;
    if (studio.health.parser) {
      $("ref-status").textContent = "predicting its mask with the face parser…";
      mask = await (await api("/api/parse", { ref: file })).blob();
      $("ref-status").textContent = "mask predicted by the face parser; upload its mask to replace it";
    } else {
      $("ref-status").textContent = "no face parser on the server: upload this photo's mask too";
    }
    await useReference(file, mask, `Reference: ${file.name}`);
    if (mask) regenerate();
  }));
  $("ref-mask-file").addEventListener("change", (event) => guarded(async () => {
    const file = event.target.files[0]; event.target.value = "";
    if (!file) return;
    if (!studio.ref) throw new Error("upload or pick the reference photo first");
    await useReference(studio.ref, await uploadedMask(file), $("ref-caption").textContent);
    $("ref-status").textContent = `its mask: ${file.name}`;
    regenerate();
  }));
  $("parts-file").addEventListener("change", (event) => guarded(async () => {
    const file = event.target.files[0]; event.target.value = "";
    if (!file) return;
    studio.partsMasks.uploaded = await uploadedMask(file);
    const source = $("parts-source");
    if (![...source.options].some((o) => o.value === "uploaded")) source.append(new Option("uploaded mask", "uploaded"));
    source.value = "uploaded";
  }));
  $("apply-parts").addEventListener("click", () => guarded(async () => {
    const parts = [...document.querySelectorAll("#parts input:checked")].map((box) => box.value);
    const choice = $("parts-source").value;
    if (!choice) throw new Error("no other face: upload a mask to take parts from");
    if (!parts.length) throw new Error("tick the parts to take");
    const other = choice === "uploaded" ? studio.partsMasks.uploaded
      : await galleryMask(studio.gallery.faces.find((f) => `gallery:${f.id}` === choice));
    const response = await api("/api/mask", { mask: await maskBlob(), edit_from: other, parts: parts.join(",") });
    setMask(await readMask(await response.blob()));
  }));
  $("download-face").addEventListener("click", () => guarded(async () => {
    if (!studio.resultBlob) throw new Error("no face generated yet");
    download(studio.resultBlob, "face.png");
  }));
  $("download-mask").addEventListener("click", () => guarded(async () => download(await maskBlob(), "mask.png")));
  $("download-compare").addEventListener("click", () => guarded(async () => {
    if (!canRegenerate()) throw new Error("nothing to compare yet");
    download(await (await api("/api/compare", regenFields(await maskBlob()))).blob(), "compare.png");
  }));
  document.addEventListener("keydown", (event) => {
    if (event.target.matches("input, select")) return;
    const key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && key === "z") { event.preventDefault(); event.shiftKey ? redo() : undo(); }
    else if ((event.ctrlKey || event.metaKey) && key === "y") { event.preventDefault(); redo(); }
    else if (key === "b") selectTool("brush");
    else if (key === "f") selectTool("fill");
    else if (key === "e") selectTool("eraser");
    else if (key === "[") setBrushSize(studio.size - 1);
    else if (key === "]") setBrushSize(studio.size + 1);
  });
}

function buildRegionPickers(count) {
  // One row per region reference: the regions it gives, its photo, its optional mask, clear.
  studio.regionRefs = [];
  const box = $("region-refs");
  for (let index = 0; index < count; index++) {
    const row = document.createElement("div");
    row.className = "row region-ref";
    row.innerHTML = `<input type="text" class="region-names" aria-label="regions">
      <label class="file-button small">photo<input type="file" accept="image/*"></label>
      <label class="file-button small">its mask<input type="file" accept="image/*"></label>
      <button type="button" class="small">clear</button>
      <span class="hint"></span>`;
    const [names, photoInput, maskInput] = row.querySelectorAll("input");
    const status = row.querySelector("span");
    const region = { input: names, photo: null, mask: null };
    names.value = REGION_PRESETS[index] || "";
    names.addEventListener("change", () => { if (region.photo) regenerate(); });
    photoInput.addEventListener("change", (event) => guarded(async () => {
      const file = event.target.files[0]; event.target.value = "";
      if (!file) return;
      region.photo = file; region.mask = null;
      status.textContent = file.name + (studio.health.parser ? "" : " · upload its mask too");
      if (studio.health.parser) regenerate();
    }));
    maskInput.addEventListener("change", (event) => guarded(async () => {
      const file = event.target.files[0]; event.target.value = "";
      if (!file) return;
      if (!region.photo) throw new Error("upload the region's photo first");
      region.mask = await uploadedMask(file);
      status.textContent = `${region.photo.name} · mask ${file.name}`;
      regenerate();
    }));
    row.querySelector("button").addEventListener("click", () => {
      region.photo = null; region.mask = null; status.textContent = "";
      regenerate();
    });
    studio.regionRefs.push(region);
    box.append(row);
  }
  $("regions-section").hidden = false;
}

async function start() {
  studio.health = await (await fetch("/api/health")).json();
  studio.classes = studio.health.classes;
  const h = studio.health;
  $("model-info").textContent = `${h.model} · ${h.checkpoint} (step ${h.step}) · ${h.size} px · ${h.device}`;
  if (!h.needs_reference) $("ref-caption").textContent = `Reference: not used by ${h.model}`;
  buildPalette();
  wireControls();
  if (h.supports_regions) buildRegionPickers(h.max_region_references);
  selectTool("brush"); selectClass(1); setBrushSize(Math.max(1, Math.round(h.size / 16)));
  studio.gallery = await (await fetch("/api/gallery")).json();
  buildGallery(studio.gallery);
  restore({ labels: new Uint8Array(h.size * h.size), width: h.size, height: h.size });
  updateHistoryButtons();
  if (studio.gallery.faces.length) {
    await loadGalleryReference(studio.gallery.faces[0]);
    restore({ ...studio.refLabels, labels: studio.refLabels.labels.slice() });  // not an undo step
    regenerate();
  } else if (!h.needs_reference) {
    regenerate();
  } else {
    $("ref-status").textContent = "upload a reference photo to start";
  }
}

start().catch((error) => showError(error.message));
