// Wick's dev server: serves the app, the wasm package, models/, the examples and the `openai`
// package they import, on localhost with the headers a threaded wasm page needs (COOP/COEP) and
// the right MIME types. No dependencies.
//   node scripts/serve.mjs [--port 8080] [--host 127.0.0.1]
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.gguf': 'application/octet-stream',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
};

// Only these paths (and what is under them) are served; the rest of the checkout (target/,
// .git/, the other packages in node_modules/) is not.
const PUBLIC = ['index.html', 'sw.js', 'www', 'models', 'examples', 'node_modules/openai'];

/**
 * The models in `dir` (the checkout's models/), for the page's model picker: each GGUF file and
 * each Hugging Face folder (one with a config.json), by name, sorted, as
 * `[{ path: 'models/NAME' (a folder's ends in '/'), name, bytes }]`.
 */
export async function listModels(dir) {
  const out = [];
  for (const name of (await readdir(dir).catch(() => [])).sort()) {
    const full = join(dir, name);
    const info = await stat(full).catch(() => null);
    if (info?.isFile() && name.endsWith('.gguf')) {
      out.push({ path: `models/${name}`, name, bytes: info.size });
    } else if (info?.isDirectory()) {
      const files = await readdir(full).catch(() => []);
      if (!files.includes('config.json')) continue;
      let bytes = 0;
      for (const f of files) bytes += (await stat(join(full, f)).catch(() => ({ size: 0 }))).size;
      out.push({ path: `models/${name}/`, name, bytes });
    }
  }
  return out;
}

/**
 * Starts the server. `onRequest(method, path, status)` sees every request (tests count
 * model downloads with it); `alsoServe` adds paths (the benchmark serves node_modules for
 * wllama, the tests their pages). Resolves to the listening http.Server.
 */
export function startServer({ port = 8080, host = '127.0.0.1', root = ROOT, onRequest = () => {}, alsoServe = [] } = {}) {
  const served = [...PUBLIC, ...alsoServe];
  const server = createServer(async (req, res) => {
    const send = (status, body, headers = {}) => {
      res.writeHead(status, { ...securityHeaders, ...headers });
      res.end(body);
      onRequest(req.method, req.url, status);
    };
    const securityHeaders = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'no-cache',
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');
    let path;
    try {
      path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch {
      return send(400, 'bad path');
    }
    if (path === '/') path = '/index.html';
    if (path === '/models/') {
      // What this server holds, as JSON: the page lists it in its model picker.
      const body = JSON.stringify(await listModels(join(root, 'models')));
      return send(200, req.method === 'HEAD' ? undefined : body, { 'Content-Type': 'application/json' });
    }
    const rel = normalize(path).replace(/^[/\\]+/, '');
    const file = join(root, rel);
    const isServed = served.some((p) => rel === normalize(p) || rel.startsWith(normalize(p) + sep));
    if (!isServed || !file.startsWith(root + sep)) return send(404, 'not found');
    let info;
    try {
      info = await stat(file);
    } catch {
      return send(404, 'not found');
    }
    if (!info.isFile()) return send(404, 'not found');
    // A validator, so a revalidated file (no-cache) comes back as 304 and the browser keeps its
    // copy, and with it V8's cache of the optimized wasm code (else every visit recompiles).
    const etag = `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
    if (req.headers['if-none-match'] === etag) return send(304, undefined, { ETag: etag });
    const type = TYPES[extname(file)] ?? 'application/octet-stream';
    // One range `bytes=START-[END]` (the page reads a GGUF's head before downloading it); other
    // forms get the whole file.
    const range = req.headers.range?.match(/^bytes=(\d+)-(\d*)$/);
    if (range) {
      const start = Number(range[1]);
      const end = Math.min(range[2] ? Number(range[2]) : info.size - 1, info.size - 1);
      if (start > end) return send(416, undefined, { 'Content-Range': `bytes */${info.size}` });
      res.writeHead(206, {
        ...securityHeaders, 'Content-Type': type, 'Content-Length': end - start + 1,
        'Content-Range': `bytes ${start}-${end}/${info.size}`, 'Accept-Ranges': 'bytes', ETag: etag,
      });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file, { start, end }).pipe(res);
      return onRequest(req.method, req.url, 206);
    }
    res.writeHead(200, { ...securityHeaders, 'Content-Type': type, 'Content-Length': info.size, 'Accept-Ranges': 'bytes', ETag: etag });
    if (req.method === 'HEAD') {
      res.end();
    } else {
      createReadStream(file).pipe(res);
    }
    onRequest(req.method, req.url, 200);
  });
  return new Promise((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolveListen(server));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const port = Number(arg('--port', process.env.PORT ?? 8080));
  const host = arg('--host', '127.0.0.1');
  const server = await startServer({
    port, host,
    onRequest: (method, url, status) => console.log(`${new Date().toISOString()} ${method} ${url} ${status}`),
  });
  const { port: actual } = server.address();
  console.log(`Wick is being served at http://${host === '0.0.0.0' ? 'localhost' : host}:${actual}/ (Ctrl+C to stop)`);
}
