// HTTP under /v1: JSON in and out, the bearer token, one refresh-and-retry on 401, and a move
// to another node when the current one does not answer at all.

import { accessTokenFresh, currentSession, refreshTokens, setRefresher } from "./auth";
import { baseCount, currentBase, rotateBase } from "./nodes";
import type { TokenPair } from "../chat/types";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds, from `Retry-After` (429 `rate_limited`). */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }
}

interface Options {
  body?: unknown;
  form?: FormData;
  /** Default true: send the access token. */
  auth?: boolean;
  /** Return the Response itself (downloads). */
  raw?: boolean;
  method?: string;
}

async function fetchAnyNode(path: string, init: RequestInit): Promise<Response> {
  let lastError: unknown;
  for (let attempt = 0; attempt < Math.max(1, baseCount()); attempt++) {
    const base = currentBase();
    try {
      return await fetch(base + path, init);
    } catch (error) {
      lastError = error; // connection refused or reset: that node is gone, try the next
      rotateBase(base);
    }
  }
  throw new ApiError(0, "network", `no node answers (${String(lastError)})`);
}

export async function api<T>(method: string, path: string, options: Options = {}): Promise<T> {
  const auth = options.auth !== false;
  if (auth && !accessTokenFresh()) await refreshTokens().catch(() => undefined);
  for (let attempt = 0; ; attempt++) {
    const headers: Record<string, string> = {};
    const session = currentSession();
    if (auth && session) headers.authorization = `Bearer ${session.accessToken}`;
    let body: BodyInit | undefined;
    if (options.form) body = options.form;
    else if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const response = await fetchAnyNode(path, { method, headers, body });
    if (response.status === 401 && auth && attempt === 0) {
      await refreshTokens();
      continue;
    }
    if (!response.ok) {
      let code = "http_" + response.status;
      let message = response.statusText;
      try {
        const error = await response.json();
        code = error.code ?? code;
        message = error.message ?? message;
      } catch {
        // not JSON
      }
      const retryAfter = Number(response.headers.get("retry-after") ?? NaN);
      throw new ApiError(response.status, code, message, Number.isFinite(retryAfter) ? retryAfter : null);
    }
    if (options.raw) return response as unknown as T;
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

export const get = <T>(path: string) => api<T>("GET", path);
export const post = <T>(path: string, body?: unknown) => api<T>("POST", path, { body });

setRefresher(async (refreshToken: string) => {
  const answer = await api<{ tokens: TokenPair }>("POST", "/v1/auth/refresh", {
    auth: false,
    body: { refresh_token: refreshToken },
  });
  return answer.tokens;
});
