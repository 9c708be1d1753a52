// Wick's dev server: serves the app, the wasm package, models/, the examples and the `openai`
// package they import, on localhost with the headers a threaded wasm page needs (COOP/COEP),
// the app's Content-Security-Policy and the right MIME types. No dependencies.
//   node scripts/serve.mjs [--port 8080] [--host 127.0.0.1] [--allow-host NAME]
// It serves only files whose real path (symlinks resolved) lies inside the checkout or the model
// cache (models/ links into it; more roots: WICK_SERVE_ROOTS, separated by ':'), and answers
// only requests addressed to localhost (a DNS-rebinding page cannot read it).
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { open, readdir, realpath, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** The per-user model cache that scripts/fetch-models.sh links models/ into. */
export const MODEL_CACHE = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'wick', 'models');

/**
 * The app's Content-Security-Policy: the one index.html carries as a <meta> (for static hosts),
 * plus `frame-ancestors`, which only a header can carry. One source, so the two never differ.
 */
export function appPolicy(root = ROOT) {
  let html = '';
  try {
    html = readFileSync(join(root, 'index.html'), 'utf8');
  } catch {
    return null;
  }
  const meta = html.match(/<meta\s+http-equiv="Content-Security-Policy"\s+content="([^"]+)"/i);
  return meta ? `${meta[1].replace(/;\s*$/, '')}; frame-ancestors 'none'` : null;
}

/** Whether a Host header names this machine: localhost, a *.localhost name, or a loopback address. */
function isLocalHost(host, allowed) {
  if (typeof host !== 'string') return false;
  const name = host.replace(/:\d+$/, '').toLowerCase();
  return name === 'localhost' || name.endsWith('.localhost') || /^127(\.\d{1,3}){3}$/.test(name) ||
    name === '[::1]' || allowed.includes(name);
}

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
export function startServer({
  port = 8080, host = '127.0.0.1', root = ROOT, onRequest = () => {}, alsoServe = [], roots = [], allowHosts = [],
} = {}) {
  const served = [...PUBLIC, ...alsoServe];
  const policy = appPolicy(root);
  const extraRoots = (process.env.WICK_SERVE_ROOTS ?? '').split(':').filter(Boolean);
  // Real paths of the roots, resolved once (a root that does not exist holds nothing).
  const realRoots = Promise.all([root, MODEL_CACHE, ...roots, ...extraRoots].map((r) => realpath(r).catch(() => null)))
    .then((all) => all.filter(Boolean));
  const allowed = allowHosts.map((h) => h.toLowerCase());
  const server = createServer((req, res) => {
    // A response stream that breaks (the browser went away) must not take the server down.
    res.on('error', () => {});
    respond(req, res).catch(() => {
      if (!res.headersSent) {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('internal error');
      } else {
        res.destroy();
      }
      onRequest(req.method, req.url, 500);
    });
  });
  const respond = async (req, res) => {
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
    if (!isLocalHost(req.headers.host, allowed)) return send(421, 'this server answers only requests to localhost');
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
    // The real path, symlinks resolved, must lie inside a root; the file is opened once, so
    // what is checked is what is sent.
    let fh;
    let info;
    try {
      const real = await realpath(file);
      if (!(await realRoots).some((r) => real === r || real.startsWith(r + sep))) return send(404, 'not found');
      // Only a regular file is opened (opening a FIFO would wait for a writer).
      if (!(await stat(real)).isFile()) return send(404, 'not found');
      fh = await open(real, 'r');
      info = await fh.stat();
    } catch {
      await fh?.close();
      return send(404, 'not found');
    }
    if (!info.isFile()) {
      await fh.close();
      return send(404, 'not found');
    }
    // Sends the file's bytes from `start` to `end`; a read or write that fails ends the response.
    const stream = (start, end) => pipeline(fh.createReadStream({ start, end }), res, (err) => {
      if (err) res.destroy();
    });
    // A validator, so a revalidated file (no-cache) comes back as 304 and the browser keeps its
    // copy, and with it V8's cache of the optimized wasm code (else every visit recompiles).
    const etag = `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
    if (req.headers['if-none-match'] === etag) {
      await fh.close();
      return send(304, undefined, { ETag: etag });
    }
    const type = TYPES[extname(file)] ?? 'application/octet-stream';
    // The app's page gets its policy as a header as well (with frame-ancestors).
    if (rel === 'index.html' && policy) securityHeaders['Content-Security-Policy'] = policy;
    // One range `bytes=START-[END]` (the page reads a GGUF's head before downloading it); other
    // forms get the whole file.
    const range = req.headers.range?.match(/^bytes=(\d+)-(\d*)$/);
    if (range) {
      const start = Number(range[1]);
      const end = Math.min(range[2] ? Number(range[2]) : info.size - 1, info.size - 1);
      if (start > end) {
        await fh.close();
        return send(416, undefined, { 'Content-Range': `bytes */${info.size}` });
      }
      res.writeHead(206, {
        ...securityHeaders, 'Content-Type': type, 'Content-Length': end - start + 1,
        'Content-Range': `bytes ${start}-${end}/${info.size}`, 'Accept-Ranges': 'bytes', ETag: etag,
      });
      if (req.method === 'HEAD') {
        await fh.close();
        res.end();
      } else {
        stream(start, end);
      }
      return onRequest(req.method, req.url, 206);
    }
    res.writeHead(200, { ...securityHeaders, 'Content-Type': type, 'Content-Length': info.size, 'Accept-Ranges': 'bytes', ETag: etag });
    if (req.method === 'HEAD' || info.size === 0) {
      await fh.close();
      res.end();
    } else {
      stream(0, info.size - 1);
    }
    onRequest(req.method, req.url, 200);
  };
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
  const allowHosts = process.argv.flatMap((a, i) => (a === '--allow-host' ? [process.argv[i + 1]] : []));
  const server = await startServer({
    port, host, allowHosts,
    onRequest: (method, url, status) => console.log(`${new Date().toISOString()} ${method} ${url} ${status}`),
  });
  const { port: actual } = server.address();
  console.log(`Wick is being served at http://${host === '0.0.0.0' ? 'localhost' : host}:${actual}/ (Ctrl+C to stop)`);
}
