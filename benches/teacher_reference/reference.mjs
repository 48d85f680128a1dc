// Reference outputs of face-api's own age/gender network, for agecam's ONNX teacher import
// (src/train/teacher.rs). Loads the npm package's model/age_gender_model weights with face-api's
// own AgeGenderNet (faceapi.nets.ageGenderNet.loadFromDisk) on TF.js's wasm (default) or cpu
// backend, runs it on PNG files and prints JSON:
//   {"face_api": "1.7.15", "tfjs": "4.22.0", "backend": "wasm",
//    "results": [{"file": "x.png", "age": 31.2, "gender": [p_male, p_female]}, ...]}
// `file` is the base name: agecam-host teacher-check looks for it beside the JSON file.
//
// Each PNG goes to face-api as a [h, w, 3] int32 tensor of its RGB pixels, so face-api's own
// toNetInput/toBatchTensor does the rest: pad to a square (centred zeros) and resize to 112×112
// when it is not 112×112 already, then (x - mean) / 255. Give 112×112 crops to compare the
// networks alone (agecam-host teacher-crops makes them).
//
// Usage: npm ci --prefix benches/teacher_reference
//        node benches/teacher_reference/reference.mjs [--backend wasm|cpu] FILE.png... > ref.json

import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

// face-api's Node build for the pure-JS TF.js + wasm backend (no tfjs-node binary needed).
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { tf } = faceapi;

/** Decodes an 8-bit, non-interlaced PNG (grey, grey+alpha, RGB or RGBA) to RGB bytes. */
function decodePng(file) {
  const buf = fs.readFileSync(file);
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (!buf.subarray(0, 8).equals(signature)) throw new Error(`${file}: not a PNG file`);
  let pos = 8;
  let width = 0;
  let height = 0;
  let colorType = -1;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos);
    const type = buf.toString('latin1', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const depth = data[8];
      colorType = data[9];
      const interlace = data[12];
      if (depth !== 8 || interlace !== 0 || ![0, 2, 4, 6].includes(colorType)) {
        throw new Error(`${file}: only 8-bit non-interlaced grey/RGB(A) PNG is supported (depth ${depth}, colour type ${colorType}, interlace ${interlace}); re-save it as 8-bit RGB`);
      }
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      break;
    }
    pos += 12 + len;
  }
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colorType];
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length !== height * (stride + 1)) throw new Error(`${file}: PNG data has ${raw.length} bytes, expected ${height * (stride + 1)}`);
  const px = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = px.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? px.subarray((y - 1) * stride, y * stride) : Buffer.alloc(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? out[i - channels] : 0;
      const b = prev[i];
      const c = i >= channels ? prev[i - channels] : 0;
      let v;
      switch (filter) {
        case 0: v = line[i]; break;
        case 1: v = line[i] + a; break;
        case 2: v = line[i] + b; break;
        case 3: v = line[i] + ((a + b) >> 1); break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          v = line[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default: throw new Error(`${file}: bad PNG filter ${filter} on row ${y}`);
      }
      out[i] = v & 0xff;
    }
  }
  const rgb = new Int32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    for (let k = 0; k < 3; k++) {
      // Grey (+alpha): the grey value in all three channels; alpha is dropped.
      rgb[i * 3 + k] = channels <= 2 ? px[i * channels] : px[i * channels + k];
    }
  }
  return { width, height, rgb };
}

async function main() {
  const args = process.argv.slice(2);
  let backend = 'wasm';
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--backend') backend = args[++i];
    else files.push(args[i]);
  }
  if (!files.length || !['wasm', 'cpu'].includes(backend)) {
    process.stderr.write('usage: node reference.mjs [--backend wasm|cpu] FILE.png...\n');
    process.exit(2);
  }
  if (!(await tf.setBackend(backend))) throw new Error(`TF.js backend ${backend} did not start`);
  await tf.ready();
  const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');
  await faceapi.nets.ageGenderNet.loadFromDisk(modelDir);
  const pkg = JSON.parse(fs.readFileSync(path.join(modelDir, '..', 'package.json'), 'utf8'));

  const results = [];
  for (const file of files) {
    const { width, height, rgb } = decodePng(file);
    const input = tf.tensor3d(rgb, [height, width, 3], 'int32');
    // forward(): face-api's own preprocessing and AgeGenderNet.forwardInput (softmax gender).
    const out = await faceapi.nets.ageGenderNet.forward(input);
    const age = (await out.age.data())[0];
    const gender = Array.from(await out.gender.data());
    // predictAgeAndGender() labels the same output: index 0 is the probability of "male".
    const labelled = await faceapi.nets.ageGenderNet.predictAgeAndGender(input);
    const male = labelled.gender === 'male';
    if (Math.abs((male ? labelled.genderProbability : 1 - labelled.genderProbability) - gender[0]) > 1e-6) {
      throw new Error(`${file}: predictAgeAndGender disagrees with forward() on which index is male`);
    }
    tf.dispose([input, out.age, out.gender]);
    results.push({ file: path.basename(file), age, gender, label: labelled.gender });
  }
  const report = { face_api: pkg.version, tfjs: tf.version_core, backend: tf.getBackend(), model_dir: path.relative(here, modelDir), results };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
}

main().catch((e) => {
  process.stderr.write(`reference.mjs: ${e.stack || e}\n`);
  process.exit(1);
});
