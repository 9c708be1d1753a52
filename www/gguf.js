// A GGUF file's metadata as far as its first bytes hold it: enough to say what a model is (its
// architecture, quantization and shape) before downloading it, from a ranged request for the
// file's head. The engine (Rust) parses the whole file again when it loads it; this reader only
// informs the page and the memory check, so it never throws on a short or odd file.

/** Bytes of a GGUF's head worth fetching ahead: the model's shape comes before its vocabulary. */
export const HEAD_BYTES = 1 << 20;

/** llama.cpp's `general.file_type` numbers (its LLAMA_FTYPE_MOSTLY_* names). */
const FILE_TYPES = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1', 10: 'Q2_K',
  11: 'Q3_K_S', 12: 'Q3_K_M', 13: 'Q3_K_L', 14: 'Q4_K_S', 15: 'Q4_K_M', 16: 'Q5_K_S', 17: 'Q5_K_M',
  18: 'Q6_K', 19: 'IQ2_XXS', 20: 'IQ2_XS', 21: 'Q2_K_S', 22: 'IQ3_XS', 23: 'IQ3_XXS', 24: 'IQ1_S',
  25: 'IQ4_NL', 26: 'IQ3_S', 27: 'IQ3_M', 28: 'IQ2_S', 29: 'IQ2_M', 30: 'IQ4_XS', 31: 'IQ1_M',
  32: 'BF16', 36: 'TQ1_0', 37: 'TQ2_0',
};

/** Sizes of GGUF's scalar value types by type id (8 is a string, 9 an array). */
const SCALAR = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/**
 * The metadata in `bytes` (the whole file or its head): scalars and strings by key, and for an
 * array its length (`{ array: n }`: the vocabulary's size is the length of `tokenizer.ggml.tokens`).
 * Reading stops where the bytes end. Null when `bytes` does not start like a GGUF (v2 or v3).
 * @param {Uint8Array} bytes
 * @returns {Map<string, number | bigint | boolean | string | { array: number }> | null}
 */
export function readMetadata(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = new TextDecoder();
  if (bytes.length < 24 || text.decode(bytes.subarray(0, 4)) !== 'GGUF') return null;
  const version = view.getUint32(4, true);
  if (version !== 2 && version !== 3) return null;
  const kvCount = Number(view.getBigUint64(16, true));
  const meta = new Map();
  let at = 24;
  const need = (n) => {
    if (at + n > bytes.length) throw RangeError('end of the bytes');
  };
  const u32 = () => (need(4), (at += 4), view.getUint32(at - 4, true));
  const u64 = () => (need(8), (at += 8), Number(view.getBigUint64(at - 8, true)));
  const string = (skip = false) => {
    const n = u64();
    need(n);
    at += n;
    return skip ? '' : text.decode(bytes.subarray(at - n, at));
  };
  const scalar = (type) => {
    const n = SCALAR[type];
    if (!n) throw RangeError(`value type ${type}`);
    need(n);
    at += n;
    const p = at - n;
    switch (type) {
      case 0: return view.getUint8(p);
      case 1: return view.getInt8(p);
      case 2: return view.getUint16(p, true);
      case 3: return view.getInt16(p, true);
      case 4: return view.getUint32(p, true);
      case 5: return view.getInt32(p, true);
      case 6: return view.getFloat32(p, true);
      case 7: return view.getUint8(p) !== 0;
      case 10: return Number(view.getBigUint64(p, true));
      case 11: return Number(view.getBigInt64(p, true));
      default: return view.getFloat64(p, true);
    }
  };
  try {
    for (let i = 0; i < kvCount; i++) {
      const key = string();
      const type = u32();
      if (type === 8) {
        meta.set(key, string());
      } else if (type === 9) {
        const itemType = u32();
        const n = u64();
        meta.set(key, { array: n }); // known even when the items run past the bytes
        if (itemType === 8) for (let j = 0; j < n; j++) string(true);
        else if (SCALAR[itemType]) (need(n * SCALAR[itemType]), (at += n * SCALAR[itemType]));
        else throw RangeError(`array of type ${itemType}`);
      } else {
        meta.set(key, scalar(type));
      }
    }
  } catch {
    // The head ended (or the file is odd): what was read so far stands.
  }
  return meta;
}

/**
 * What the metadata says of the model: architecture, quantization (llama.cpp's name for the
 * file type) and the shape the KV cache depends on; a field the metadata lacks is undefined.
 * @param {Map<string, any>} meta
 */
export function describe(meta) {
  const arch = meta.get('general.architecture');
  const num = (key) => (typeof meta.get(key) === 'number' ? meta.get(key) : undefined);
  const a = (key) => num(`${arch}.${key}`);
  const heads = a('attention.head_count');
  const embedding = a('embedding_length');
  const keyLength = a('attention.key_length') ?? (heads && embedding ? embedding / heads : undefined);
  const fileType = num('general.file_type');
  return {
    architecture: typeof arch === 'string' ? arch : undefined,
    quantization: fileType === undefined ? undefined : (FILE_TYPES[fileType] ?? `file type ${fileType}`),
    layers: a('block_count'),
    heads,
    kvHeads: a('attention.head_count_kv') ?? heads,
    keyLength,
    valueLength: a('attention.value_length') ?? keyLength,
    embedding,
    contextLength: a('context_length'),
    vocab: meta.get('tokenizer.ggml.tokens')?.array,
  };
}
