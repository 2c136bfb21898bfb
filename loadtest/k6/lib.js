// Shared by the k6 scripts: where Nerve is, the token every request carries, and the
// thresholds of Nerve's goals.
//
//   NERVE_URL         the API, e.g. https://127.0.0.1:8080 (default)
//   NERVE_TOKEN_FILE  a file holding an API token (absolute path; `nerve dev` writes
//                     .nerve/admin.token), or NERVE_TOKEN the token itself
//   SSL_CERT_FILE     the CA that signed the API's certificate (`nerve dev`: .nerve/tls/ca.pem)
//   VUS, DURATION     virtual users (default 50) and how long they run (default 60s)

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

// Closed-loop virtual users for DURATION.
export function scenario() {
  return {
    executor: 'constant-vus',
    vus: Number(__ENV.VUS || 50),
    duration: __ENV.DURATION || '60s',
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
