// Index PNGs in and out: 8-bit greyscale PNGs whose pixel values are class ids.
//
// The page writes the PNG itself (signature, IHDR, zlib-compressed IDAT, IEND) from the label
// array, so what is uploaded is exactly the labels; and it reads the server's index PNGs with
// colour management off, so the grey values it gets are exactly the class ids.
"use strict";

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function storedZlib(raw) {  // zlib with uncompressed blocks: for browsers without CompressionStream
  const blocks = Math.max(1, Math.ceil(raw.length / 65535));
  const out = new Uint8Array(2 + raw.length + 5 * blocks + 4);
  out.set([0x78, 0x01]);
  let at = 2;
  for (let i = 0; i < blocks; i++) {
    const chunk = raw.subarray(i * 65535, (i + 1) * 65535);
    out[at] = i === blocks - 1 ? 1 : 0;
    out[at + 1] = chunk.length & 0xff; out[at + 2] = chunk.length >> 8;
    out[at + 3] = ~chunk.length & 0xff; out[at + 4] = (~chunk.length >> 8) & 0xff;
    out.set(chunk, at + 5);
    at += 5 + chunk.length;
  }
  let a = 1, b = 0;
  for (const byte of raw) { a = (a + byte) % 65521; b = (b + a) % 65521; }
  new DataView(out.buffer).setUint32(at, ((b << 16) | a) >>> 0);
  return out;
}

async function zlib(raw) {
  if (typeof CompressionStream === "undefined") return storedZlib(raw);
  const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function pngChunk(type, data) {
  const chunk = new Uint8Array(12 + data.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) chunk[4 + i] = type.charCodeAt(i);
  chunk.set(data, 8);
  view.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
  return chunk;
}

async function encodeIndexPng(labels, width, height) {
  // 8-bit greyscale, one filter byte (0: none) per row: pixel value = class id.
  const raw = new Uint8Array((width + 1) * height);
  for (let y = 0; y < height; y++) raw.set(labels.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width); view.setUint32(4, height);
  header.set([8, 0, 0, 0, 0], 8);
  const parts = [new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]), pngChunk("IHDR", header),
    pngChunk("IDAT", await zlib(raw)), pngChunk("IEND", new Uint8Array(0))];
  return new Blob(parts, { type: "image/png" });
}

async function decodeIndexPng(blob, numClasses) {
  // The server's index PNGs (mode L): grey value = class id, read without colour management.
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const scratch = document.createElement("canvas");
  scratch.width = bitmap.width; scratch.height = bitmap.height;
  const scratchContext = scratch.getContext("2d", { willReadFrequently: true });
  scratchContext.drawImage(bitmap, 0, 0);
  const rgba = scratchContext.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const labels = new Uint8Array(bitmap.width * bitmap.height);
  for (let i = 0; i < labels.length; i++) {
    if (rgba[4 * i] >= numClasses) throw new Error("not an index mask: value " + rgba[4 * i]);
    labels[i] = rgba[4 * i];
  }
  return { labels, width: bitmap.width, height: bitmap.height };
}
