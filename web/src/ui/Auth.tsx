import { useEffect, useState, type FormEvent } from "react";
import { ApiError, api } from "../net/api";
import { signIn } from "../net/auth";
import type { Company, TokenPair, User } from "../chat/types";

export function AuthScreen() {
  const [mode, setMode] = useState<"login" | "signup">(location.pathname === "/signup" ? "signup" : "login");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  /** Date.now() until which the server refuses attempts from this address (429). */
  const [blockedUntil, setBlockedUntil] = useState(0);
  const [, tick] = useState(0);
  useEffect(() => {
    if (blockedUntil <= Date.now()) return;
    const timer = window.setInterval(() => {
      tick((n) => n + 1);
      if (Date.now() >= blockedUntil) {
        window.clearInterval(timer);
        setError("");
      }
    }, 1_000);
    return () => window.clearInterval(timer);
  }, [blockedUntil]);
  const waitSeconds = Math.max(0, Math.ceil((blockedUntil - Date.now()) / 1_000));

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const value = (name: string) => String(form.get(name) ?? "").trim();
    setBusy(true);
    setError("");
    try {
      if (mode === "signup") {
        const answer = await api<{ company: Company; user: User; tokens: TokenPair }>("POST", "/v1/companies", {
          auth: false,
          body: {
            name: value("company_name"),
            slug: value("slug"),
            admin: { username: value("username"), password: String(form.get("password")), display_name: value("display_name") || undefined },
          },
        });
        signIn(answer.user, answer.company, answer.tokens);
      } else {
        const answer = await api<{ user: User; tokens: TokenPair }>("POST", "/v1/auth/login", {
          auth: false,
          body: { company: value("slug"), username: value("username"), password: String(form.get("password")) },
        });
        const me = await fetchMe(answer.tokens.access_token);
        signIn(answer.user, me.company, answer.tokens);
      }
    } catch (caught) {
      if (caught instanceof ApiError && caught.code === "rate_limited") {
        // Not retried: the user decides when to try again, once the server allows it.
        const seconds = caught.retryAfter ?? 60;
        setBlockedUntil(Date.now() + seconds * 1_000);
        setError(
          mode === "signup"
            ? "Too many sign-ups from this network. Please wait before trying again."
            : "Too many sign-in attempts from this network. Please wait before trying again.",
        );
      } else setError(caught instanceof ApiError ? caught.message : String(caught));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="auth">
      <form className="auth-card" onSubmit={submit} aria-labelledby="auth-title">
        <h1 id="auth-title">lark</h1>
        <div className="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={mode === "login"} onClick={() => setMode("login")}>
            Sign in
          </button>
          <button type="button" role="tab" aria-selected={mode === "signup"} onClick={() => setMode("signup")}>
            Create a company
          </button>
        </div>
        {mode === "signup" && (
          <label>
            Company name
            <input name="company_name" required maxLength={100} autoComplete="organization" />
          </label>
        )}
        <label>
          Company id
          <input name="slug" required pattern="[a-z0-9\-]{2,40}" title="2–40 of a-z, 0-9, -" autoCapitalize="none" />
        </label>
        <label>
          Username
          <input name="username" required maxLength={40} autoComplete="username" autoCapitalize="none" />
        </label>
        {mode === "signup" && (
          <label>
            Display name <span className="hint">(optional)</span>
            <input name="display_name" maxLength={100} autoComplete="name" />
          </label>
        )}
        <label>
          Password
          <input name="password" type="password" required minLength={8} autoComplete={mode === "signup" ? "new-password" : "current-password"} />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
            {waitSeconds > 0 && ` You can try again in ${waitSeconds} s.`}
          </p>
        )}
        <button className="primary" type="submit" disabled={busy || waitSeconds > 0}>
          {mode === "signup" ? "Create company" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

async function fetchMe(token: string): Promise<{ user: User; company: Company }> {
  const response = await fetch("/v1/me", { headers: { authorization: `Bearer ${token}` } });
  return response.json();
}
