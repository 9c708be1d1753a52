// Wick's dev server: serves the app, the wasm package, models/, the examples and the `openai`
// package they import, on localhost with the headers a threaded wasm page needs (COOP/COEP) and
// the right MIME types. No dependencies.
//   node scripts/serve.mjs [--port 8080] [--host 127.0.0.1]
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
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
const PUBLIC = ['index.html', 'www', 'models', 'examples', 'node_modules/openai'];

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
    res.writeHead(200, {
      ...securityHeaders,
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': info.size,
      ETag: etag,
    });
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
