// Operators browsing: the first page of the node list, then one node's detail, in a closed
// loop with a think time between. Run against a live system: see lib.js for its settings, README.md for the numbers.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { BASE, nodeIds, params, scenario, think, thresholds } from './lib.js';

export const options = {
  scenarios: { browse: scenario() },
  thresholds: {
    ...thresholds,
    'http_req_duration{name:node list}': ['p(99)<100'],
    'http_req_duration{name:node detail}': ['p(99)<100'],
  },
};

export function setup() {
  return { ids: nodeIds(http) };
}

export default function (data) {
  const list = http.get(`${BASE}/api/v1/nodes?limit=50`, params('node list', 'read'));
  check(list, {
    'node list: 200': (r) => r.status === 200,
    'node list: has nodes': (r) => r.status === 200 && r.json('total') > 0,
  });
  const id = data.ids[Math.floor(Math.random() * data.ids.length)];
  const detail = http.get(`${BASE}/api/v1/nodes/${encodeURIComponent(id)}`, params('node detail', 'read'));
  check(detail, {
    'node detail: 200': (r) => r.status === 200,
    'node detail: the node asked for': (r) => r.status === 200 && r.json('id') === id,
  });
  sleep(think());
}
