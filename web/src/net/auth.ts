// The signed-in session: user, company and token pair, kept in localStorage, refreshed
// before the access token expires. Listeners hear about every change (the socket reconnects
// with the new token; the UI re-renders on sign-in and sign-out).

import type { Company, TokenPair, User } from "../chat/types";

const STORAGE_KEY = "lark.session";
/** Refresh this long before expiry at most (and at least 20% of the lifetime before). */
const MAX_REFRESH_MARGIN_MS = 60_000;

export interface Session {
  user: User;
  company: Company;
  accessToken: string;
  refreshToken: string;
  /** Local clock, ms: when the access token expires (from `expires_in`, so skew does not matter). */
  expiresAt: number;
  /** Local clock, ms: when the pair was issued. */
  issuedAt: number;
}

type Listener = (session: Session | null, reason: "signin" | "refresh" | "signout") => void;

let session: Session | null = load();
const listeners = new Set<Listener>();
let refreshTimer: number | undefined;
export let refreshCount = 0;

function load(): Session | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

function save(): void {
  if (session) localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  else localStorage.removeItem(STORAGE_KEY);
}

export function currentSession(): Session | null {
  return session;
}

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function emit(reason: "signin" | "refresh" | "signout"): void {
  for (const listener of listeners) listener(session, reason);
}

export function signIn(user: User, company: Company, tokens: TokenPair): void {
  session = withTokens({ user, company } as Session, tokens);
  save();
  scheduleRefresh();
  emit("signin");
}

export function signOut(): void {
  session = null;
  save();
  window.clearTimeout(refreshTimer);
  emit("signout");
}

export function updateUser(user: User, company: Company): void {
  if (!session) return;
  session = { ...session, user, company };
  save();
}

function withTokens(base: Session, tokens: TokenPair): Session {
  const now = Date.now();
  return {
    ...base,
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token,
    issuedAt: now,
    expiresAt: now + tokens.expires_in * 1000,
  };
}

/** When to refresh: 20% of the lifetime before expiry, at most a minute before. */
export function refreshDelay(s: Session, now = Date.now()): number {
  const lifetime = s.expiresAt - s.issuedAt;
  const margin = Math.min(MAX_REFRESH_MARGIN_MS, Math.max(lifetime * 0.2, 2_000));
  return Math.max(0, s.expiresAt - margin - now);
}

export function scheduleRefresh(): void {
  window.clearTimeout(refreshTimer);
  if (!session) return;
  refreshTimer = window.setTimeout(() => {
    refreshTokens().catch(() => {
      // Network trouble: try again soon; a 401 has already signed out.
      refreshTimer = window.setTimeout(scheduleRefresh, 3_000);
    });
  }, refreshDelay(session));
}

let inflight: Promise<void> | null = null;
let refresher: ((refreshToken: string) => Promise<TokenPair>) | null = null;

/** Wired by api.ts (which knows how to reach a node) to avoid an import cycle. */
export function setRefresher(fn: (refreshToken: string) => Promise<TokenPair>): void {
  refresher = fn;
}

/** One refresh at a time; concurrent callers share it. */
export function refreshTokens(): Promise<void> {
  if (inflight) return inflight;
  const current = session;
  if (!current || !refresher) return Promise.reject(new Error("not signed in"));
  inflight = refresher(current.refreshToken)
    .then((tokens) => {
      if (session !== current && session?.user.id !== current.user.id) return;
      session = withTokens(session ?? current, tokens);
      save();
      refreshCount += 1;
      scheduleRefresh();
      emit("refresh");
    })
    .catch((error: { status?: number }) => {
      if (error && error.status === 401) signOut();
      throw error;
    })
    .finally(() => {
      inflight = null;
    });
  return inflight;
}

export function accessTokenFresh(now = Date.now()): boolean {
  return !!session && session.expiresAt - now > 5_000;
}
