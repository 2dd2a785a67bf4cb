// Shared plumbing for the in-process Node fakes of upstream providers (e2e/fakes/github.mjs,
// e2e/fakes/canvas.mjs): a loopback HTTP server, body/form parsing, `Link` pagination in each
// provider's style, PKCE S256, random tokens and a request log (secrets redacted).
//
// The fakes mirror the Rust fakes in tests/integration/fakes/ (same shapes, same refusals), so the
// end-to-end tests exercise hubauth's connectors against the documented provider behaviour.
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';

export function s256(verifier) {
  return createHash('sha256').update(verifier).digest('base64url');
}

export function randomToken(prefix = '') {
  return `${prefix}${randomBytes(20).toString('hex')}`;
}

export function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
    req.on('error', reject);
  });
}

export function sendJson(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
}

export function sendHtml(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html><body>${html}</body></html>`);
}

export function redirect(res, location) {
  res.writeHead(302, { location });
  res.end();
}

const SECRET_KEYS = new Set(['code', 'code_verifier', 'client_secret', 'refresh_token', 'access_token']);

function redact(params) {
  const out = {};
  for (const [k, v] of params) out[k] = SECRET_KEYS.has(k) ? `<redacted ${v.length} chars>` : v;
  return out;
}

function describeAuth(h) {
  if (!h) return null;
  const [scheme] = h.split(' ');
  return scheme;
}

/**
 * `items` paginated as the provider does: `per_page` (default `defaultPerPage`, at most
 * `maxPerPage`) and `page`. Returns { slice, link } with `link` the `Link` header value (or null).
 *
 * style 'github': prev/next/last/first, `, ` between entries, `per_page` and `page` appended.
 * style 'canvas': current/next/prev/first/last, `,` between entries, `page` first (Canvas's links
 * are opaque to clients; hubauth must follow them as given).
 */
export function paginate(items, { base, pathname, query, defaultPerPage, maxPerPage, style }) {
  const perPageAsked = Number.parseInt(query.get('per_page') ?? '', 10);
  const perPage = Math.min(Math.max(Number.isFinite(perPageAsked) ? perPageAsked : defaultPerPage, 1), maxPerPage);
  const pageAsked = Number.parseInt(query.get('page') ?? '', 10);
  const page = Math.max(Number.isFinite(pageAsked) ? pageAsked : 1, 1);
  const last = Math.max(Math.ceil(items.length / perPage), 1);
  const slice = items.slice((page - 1) * perPage, page * perPage);
  const linkTo = (p) => {
    const pairs = [...query].filter(([k]) => k !== 'page' && k !== 'per_page');
    if (style === 'github') pairs.push(['per_page', String(perPage)], ['page', String(p)]);
    else { pairs.unshift(['page', String(p)]); pairs.push(['per_page', String(perPage)]); }
    return `${base}${pathname}?${new URLSearchParams(pairs)}`;
  };
  const rels = [];
  if (style === 'github') {
    if (page > 1) rels.push([linkTo(page - 1), 'prev']);
    if (page < last) rels.push([linkTo(page + 1), 'next'], [linkTo(last), 'last']);
    if (page > 1) rels.push([linkTo(1), 'first']);
  } else {
    rels.push([linkTo(page), 'current']);
    if (page < last) rels.push([linkTo(page + 1), 'next']);
    if (page > 1) rels.push([linkTo(page - 1), 'prev']);
    rels.push([linkTo(1), 'first'], [linkTo(last), 'last']);
  }
  const link = rels.length ? rels.map(([u, r]) => `<${u}>; rel="${r}"`).join(style === 'github' ? ', ' : ',') : null;
  return { slice, link, page, perPage, last };
}

/**
 * Start an HTTP server on 127.0.0.1:0 with `handler(req, res, ctx)`; ctx = { url, query, form,
 * body, entry } where `entry` is this request's log record (the handler may add `status`).
 * Returns { base, port, requests(since = 0), mark(), clearRequests(), close() }: `mark()` is the
 * number of requests so far, so `requests(mark)` is what came after it.
 */
export async function startFakeServer(name, handler) {
  const requests = [];
  const sockets = new Set();
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://fake.invalid');
    const body = req.method === 'POST' ? await readBody(req) : '';
    const form = new URLSearchParams(req.method === 'POST' && /x-www-form-urlencoded/i.test(req.headers['content-type'] || '') ? body : '');
    const entry = {
      at: new Date().toISOString(),
      method: req.method,
      path: url.pathname,
      query: redact(url.searchParams),
      form: req.method === 'POST' ? redact(form) : undefined,
      authorization: describeAuth(req.headers.authorization),
      accept: req.headers.accept || null,
      apiVersion: req.headers['x-github-api-version'] || null,
      status: null,
    };
    requests.push(entry);
    res.on('finish', () => { entry.status = res.statusCode; });
    try {
      await handler(req, res, { url, query: url.searchParams, form, body, entry });
    } catch (e) {
      console.error(`[fake ${name}] ${req.method} ${req.url}: ${e.stack}`);
      if (!res.headersSent) sendJson(res, 500, { message: `fake ${name} crashed: ${e.message}` });
      else res.end();
    }
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    base: `http://127.0.0.1:${port}`,
    port,
    requests: (since = 0) => requests.slice(since),
    mark: () => requests.length,
    clearRequests: () => { requests.length = 0; },
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    }),
  };
}
