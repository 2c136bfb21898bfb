// Shared by the k6 scripts: where Nerve is, the token every request carries, and the
// thresholds of Nerve's goals.
//
//   NERVE_URL         the API, e.g. https://127.0.0.1:8080 (default)
//   NERVE_TOKEN_FILE  a file holding an API token (absolute path; `nerve dev` writes
//                     .nerve/admin.token), or NERVE_TOKEN the token itself
//   SSL_CERT_FILE     the CA that signed the API's certificate (`nerve dev`: .nerve/tls/ca.pem)
//   VUS, RAMP, DURATION  virtual users (default 50), started over RAMP (default 10s), then
//                     held for DURATION (default 60s)
//   THINK_MIN_MS, THINK_MAX_MS
//                     each user's pause between iterations, uniform in [min, max] (default
//                     1000–3000 ms, as operators click; 0 and 0: a closed loop at saturation)

export const BASE = (__ENV.NERVE_URL || 'https://127.0.0.1:8080').replace(/\/$/, '');

function token() {
  if (__ENV.NERVE_TOKEN) return __ENV.NERVE_TOKEN.trim();
  if (!__ENV.NERVE_TOKEN_FILE) {
    throw new Error('set NERVE_TOKEN_FILE (an absolute path) or NERVE_TOKEN');
  }
  return open(__ENV.NERVE_TOKEN_FILE).trim();
}

const TOKEN = token();

// Request parameters: the token, and tags that name the request and its kind (`read` or
// `write`), which the thresholds select on.
export function params(name, kind) {
  return {
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    tags: { name, kind },
  };
}

// A user's pause between iterations, in seconds.
export function think() {
  const min = Number(__ENV.THINK_MIN_MS ?? 1000);
  const max = Math.max(min, Number(__ENV.THINK_MAX_MS ?? 3000));
  return (min + Math.random() * (max - min)) / 1000;
}

// VUS users, started over RAMP (default 10s: operators do not all arrive in one instant),
// then held for DURATION.
export function scenario() {
  const vus = Number(__ENV.VUS || 50);
  return {
    executor: 'ramping-vus',
    startVUs: 0,
    stages: [
      { duration: __ENV.RAMP || '10s', target: vus },
      { duration: __ENV.DURATION || '60s', target: vus },
    ],
    gracefulRampDown: '5s',
  };
}

// Nerve's goals: reads answer within 100 ms at the 99th percentile; nothing fails.
export const thresholds = {
  'http_req_duration{kind:read}': ['p(99)<100'],
  http_req_failed: ['rate<0.001'],
  checks: ['rate>0.999'],
};

// Up to 500 node ids from the node list (setup; fails the run on an empty fleet).
export function nodeIds(http) {
  const r = http.get(`${BASE}/api/v1/nodes?limit=500`, params('setup: node ids', 'setup'));
  if (r.status !== 200) throw new Error(`node list: HTTP ${r.status}: ${r.body}`);
  const ids = r.json('nodes').map((n) => n.id);
  if (ids.length === 0) throw new Error('the fleet has no nodes');
  return ids;
}
