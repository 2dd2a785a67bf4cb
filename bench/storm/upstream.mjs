// The storm's fake upstream (an OpenID provider, bench/login/fakes.mjs) in a process of its own,
// so the driver's event loop never delays its answers. Started by storm.mjs with fork(): sends
// { issuer } once listening; on { stats: true } answers how late its answers left (against the
// RTT it aims for) and how many requests it served, and starts counting afresh.
import { recorder, startOidc } from '../login/fakes.mjs';

const RTT = Number(process.env.RTT_MS || 50);
export const CLIENT_ID = 'hubauth-storm';
export const CLIENT_SECRET = 'upstream-secret-0123456789';

// Person n of the storm: a distinct upstream account each, as in a class signing in at once.
const person = (n) => {
  const i = String(n ?? 'x');
  const claims = {
    preferred_username: `storm${i}`,
    name: `Storm User ${i}`,
    email: `storm${i}@bench-uni.example`,
    email_verified: true,
  };
  return { sub: `storm-sub-${i}`, idTokenClaims: claims, userinfoClaims: { ...claims, groups: ['hub-users', 'students-2025'] } };
};

const { issuer } = await startOidc({
  group: 'storm',
  rttMs: RTT,
  clients: new Map([[CLIENT_ID, { secret: CLIENT_SECRET, auth: 'basic' }]]),
  user: person,
  signAlg: 'ES256',
});

process.on('message', (m) => {
  if (m && m.stats) {
    const late = recorder.requests.filter((r) => r.end !== null).map((r) => r.end - r.start - RTT).sort((a, b) => a - b);
    const at = (p) => (late.length ? late[Math.min(late.length - 1, Math.ceil(p * late.length) - 1)] : 0);
    const paths = {};
    for (const r of recorder.requests) paths[`${r.method} ${r.path}`] = (paths[`${r.method} ${r.path}`] || 0) + 1;
    process.send({
      stats: {
        requests: recorder.requests.length,
        paths,
        newConnections: recorder.requests.filter((r) => r.newConnection).length,
        late: { p50: at(0.5), p99: at(0.99), max: late.length ? late[late.length - 1] : 0 },
        unknown: recorder.unknown.slice(0, 5),
      },
    });
    recorder.reset();
    recorder.unknown = [];
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ issuer });
