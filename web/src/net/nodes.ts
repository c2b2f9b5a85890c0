// Which nodes the client talks to. Behind a load balancer the page's origin is all there is;
// when nodes are addressed directly, the cluster lists every node's client URL
// (`GET /v1/nodes`, learned after sign-in and on each reconnect), and `?nodes=http://a:8000,…`
// (kept for the tab) can name others before that, so the client can reconnect to "any node"
// when its own dies.

const STORAGE_KEY = "lark.nodes";
const LEARNED_KEY = "lark.nodes.learned";

function clean(list: string[]): string[] {
  return list.map((entry) => entry.trim().replace(/\/+$/, "")).filter((entry) => /^https?:\/\/[^/]+$/.test(entry));
}

function readExtraNodes(): string[] {
  const fromQuery = new URLSearchParams(location.search).get("nodes");
  if (fromQuery !== null) {
    sessionStorage.setItem(STORAGE_KEY, fromQuery);
  }
  const raw = fromQuery ?? sessionStorage.getItem(STORAGE_KEY) ?? "";
  return clean(raw.split(","));
}

function readLearned(): string[] {
  try {
    return clean(JSON.parse(sessionStorage.getItem(LEARNED_KEY) ?? "[]") as string[]);
  } catch {
    return [];
  }
}

const configured: string[] = Array.from(new Set([location.origin, ...readExtraNodes()]));
let learned: string[] = readLearned();
let bases: string[] = merge();
let current = bases[0];

function merge(): string[] {
  return Array.from(new Set([...configured, ...learned]));
}

/** The cluster's current list (`GET /v1/nodes`): nodes that left it are no longer tried
 *  (unless the page's origin or `?nodes=` names them). */
export function learnNodes(nodes: string[]): void {
  const next = clean(nodes);
  if (next.length === 0) return;
  learned = next;
  sessionStorage.setItem(LEARNED_KEY, JSON.stringify(learned));
  bases = merge();
  if (!bases.includes(current)) current = bases[0];
}

export function currentBase(): string {
  return current;
}

/** Moves to the next node after `failed` stopped answering (no-op if another caller already
 *  moved). Nodes the cluster lists come first: they were members when we last asked. */
export function rotateBase(failed: string): string {
  if (current !== failed || bases.length < 2) return current;
  const order = Array.from(new Set([...learned, ...configured]));
  const index = order.indexOf(failed);
  current = order[(index + 1) % order.length];
  return current;
}

export function baseCount(): number {
  return bases.length;
}

/** For the browser tests and debugging. */
export function knownNodes(): { current: string; configured: string[]; learned: string[] } {
  return { current, configured, learned };
}

export function webSocketUrl(base: string, token: string): string {
  return `${base.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(token)}`;
}
