// Shared by bench/login and bench/storm.

import http from 'node:http';
import net from 'node:net';

/** A free loopback port (for a server started right after). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The p-th percentile (0–100) of xs, nearest rank. */
export const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};

// The benchmarks' browser: one request with the cookie jar `jar` (a Map name → value),
// redirects not followed. At the provider (`atProvider`) it sends no cookies and keeps none, and
// marks the request for the fakes (X-Bench-Browser: answered at once, not counted as hubauth's
// upstream traffic). node:http with one keep-alive agent rather than fetch: a storm of sign-ins
// from this one thread costs a third of the CPU, which the server under test gets instead.
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
export function browse(jar, url, { method = 'GET', headers = {}, body, atProvider = false } = {}) {
  const h = { ...headers };
  if (atProvider) h['x-bench-browser'] = '1';
  else if (jar.size) h.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: h, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        if (!atProvider) {
          for (const c of res.headers['set-cookie'] || []) {
            const [pair, ...attrs] = c.split(';');
            const i = pair.indexOf('=');
            const name = pair.slice(0, i).trim();
            if (attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || pair.slice(i + 1) === '') jar.delete(name);
            else jar.set(name, pair.slice(i + 1));
          }
        }
        const loc = res.headers.location;
        resolve({
          status: res.statusCode,
          location: loc ? new URL(loc, url).toString() : null,
          body: Buffer.concat(chunks).toString('utf8'),
          headers: res.headers,
        });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}
