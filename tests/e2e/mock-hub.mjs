// A stand-in for the Hugging Face hub on another port (another origin than the dev server), for
// the browser tests: `/{org}/{name}/resolve/{revision}/{file}` answers 302 to a CDN-like path
// `/cdn/{org}/{name}/{file}` on the same server, as the hub redirects to its CDN, and every
// answer carries CORS headers (a cross-origin-isolated page may read a cross-origin response
// only with CORS or CORP). No dependencies.
import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, normalize, sep } from 'node:path';

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Accept-Ranges, ETag, Location',
  'Cross-Origin-Resource-Policy': 'cross-origin',
  'Cache-Control': 'no-cache',
};

/**
 * Starts the mock hub. `repos` maps `org/name` to a folder whose files it serves; `revisions`
 * are the revisions that resolve (all to the same files); `throttle` (bytes per second) slows
 * the CDN down so a test can abort mid-file; `declared` maps `org/name/file` to a size the hub
 * announces for a file it never sends (a model too big to load), or to `{ size, head }`, whose
 * `head` (a Buffer) it sends to a ranged GET of the file's start; `cut` maps `org/name/file` to
 * a byte count after which the first whole-file GET of it breaks off (the connection is
 * dropped, as a flaky network does). The CDN answers `Range: bytes=START-[END]` with 206.
 * `requests` records `{ method, url, status, range }`. Resolves to `{ url, requests, close }`.
 * @param {{ repos: Record<string, string>, revisions?: string[], throttle?: number, declared?: Record<string, number | { size: number, head: Buffer }>, cut?: Record<string, number> }} options
 */
export async function startMockHub({ repos, revisions = ['main'], throttle = 0, declared = {}, cut = {} }) {
  const cuts = { ...cut };
  const requests = [];
  const server = createServer(async (req, res) => {
    const send = (status, headers = {}, body = undefined) => {
      res.writeHead(status, { ...CORS, ...headers });
      res.end(body);
      requests.push({ method: req.method, url: req.url, status, range: req.headers.range ?? null });
    };
    if (req.method === 'OPTIONS') return send(204, { 'Access-Control-Allow-Methods': 'GET, HEAD', 'Access-Control-Allow-Headers': '*' });
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405);
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const resolveMatch = path.match(/^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/);
    if (resolveMatch) {
      const [, org, name, revision, file] = resolveMatch;
      if (!repos[`${org}/${name}`] || !revisions.includes(revision)) return send(404, {}, 'Repository or revision not found');
      return send(302, { Location: `/cdn/${org}/${name}/${file}` });
    }
    const cdnMatch = path.match(/^\/cdn\/([^/]+)\/([^/]+)\/(.+)$/);
    if (!cdnMatch) return send(404);
    const [, org, name, file] = cdnMatch;
    const announced = declared[`${org}/${name}/${file}`];
    if (announced !== undefined) {
      // Announces a size and sends nothing but, if it has one, the file's head to a ranged GET:
      // only a HEAD or a GET of the head can be answered honestly.
      const { size, head } = typeof announced === 'number' ? { size: announced } : announced;
      if (req.method === 'HEAD') return send(200, { 'Content-Length': size, 'Content-Type': 'application/octet-stream' });
      const range = req.headers.range?.match(/^bytes=0-(\d+)$/);
      if (head && range) {
        const part = head.subarray(0, Number(range[1]) + 1);
        return send(206, { 'Content-Length': part.length, 'Content-Range': `bytes 0-${part.length - 1}/${size}`, 'Content-Type': 'application/octet-stream' }, part);
      }
      return send(500, {}, 'not sent');
    }
    const root = repos[`${org}/${name}`];
    const full = root && join(root, normalize(file));
    let info;
    try {
      if (!full || !full.startsWith(root + sep)) throw new Error('outside');
      info = await stat(full);
      if (!info.isFile()) throw new Error('not a file');
    } catch {
      return send(404, {}, 'Entry not found');
    }
    const headers = { ...CORS, 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', ETag: `"${info.size}-${info.mtimeMs}"` };
    const range = req.headers.range?.match(/^bytes=(\d+)-(\d*)$/);
    let [start, end] = [0, info.size - 1];
    if (range) {
      [start, end] = [Number(range[1]), Math.min(range[2] ? Number(range[2]) : info.size - 1, info.size - 1)];
      if (start > end) return send(416, { 'Content-Range': `bytes */${info.size}` });
      res.writeHead(206, { ...headers, 'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${info.size}` });
    } else {
      res.writeHead(200, { ...headers, 'Content-Length': info.size });
    }
    requests.push({ method: req.method, url: req.url, status: range ? 206 : 200, range: req.headers.range ?? null });
    if (req.method === 'HEAD') return res.end();
    const key = `${org}/${name}/${file}`;
    const breakAt = !range && req.method === 'GET' && cuts[key];
    if (breakAt) {
      // Sends the first bytes, then drops the connection mid-file.
      delete cuts[key];
      const part = createReadStream(full, { start: 0, end: breakAt - 1 });
      part.on('data', (chunk) => res.write(chunk));
      part.on('end', () => setTimeout(() => res.destroy(), 50));
      return;
    }
    const stream = createReadStream(full, { start, end, highWaterMark: 256 * 1024 });
    stream.on('error', () => res.destroy());
    res.on('close', () => stream.destroy());
    if (!throttle) return stream.pipe(res);
    // Slowed down: one 256 KiB piece at a time at `throttle` bytes per second.
    stream.on('data', (chunk) => {
      stream.pause();
      res.write(chunk);
      setTimeout(() => stream.resume(), (chunk.length / throttle) * 1000);
    });
    stream.on('end', () => res.end());
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    close: () => new Promise((r) => {
      server.closeAllConnections?.();
      server.close(r);
    }),
  };
}
