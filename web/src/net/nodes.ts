// Which nodes the client talks to. Behind a load balancer the page's origin is all there is;
// when nodes are addressed directly, `?nodes=http://a:8000,http://b:8000` (kept for the tab)
// names the others, so the client can reconnect to "any node" when its own dies.

const STORAGE_KEY = "lark.nodes";

function readExtraNodes(): string[] {
  const fromQuery = new URLSearchParams(location.search).get("nodes");
  if (fromQuery !== null) {
    sessionStorage.setItem(STORAGE_KEY, fromQuery);
  }
  const raw = fromQuery ?? sessionStorage.getItem(STORAGE_KEY) ?? "";
  return raw
    .split(",")
    .map((entry) => entry.trim().replace(/\/+$/, ""))
    .filter((entry) => /^https?:\/\//.test(entry));
}

const bases: string[] = Array.from(new Set([location.origin, ...readExtraNodes()]));
let currentIndex = 0;

export function currentBase(): string {
  return bases[currentIndex];
}

/** Moves to the next node after `failed` stopped answering (no-op if another caller already moved). */
export function rotateBase(failed: string): string {
  if (bases[currentIndex] === failed && bases.length > 1) {
    currentIndex = (currentIndex + 1) % bases.length;
  }
  return currentBase();
}

export function baseCount(): number {
  return bases.length;
}

export function webSocketUrl(base: string, token: string): string {
  return `${base.replace(/^http/, "ws")}/ws?token=${encodeURIComponent(token)}`;
}
