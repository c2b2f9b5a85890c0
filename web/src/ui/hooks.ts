import { useEffect, useState, useSyncExternalStore } from "react";

interface Observable {
  subscribe(listener: () => void): () => void;
  version: number;
}

/** Re-renders when the observable's version changes. */
export function useObservable(target: Observable): number {
  return useSyncExternalStore(target.subscribe, () => target.version);
}

export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const update = () => setPath(location.pathname);
    window.addEventListener("popstate", update);
    window.addEventListener("lark:navigate", update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener("lark:navigate", update);
    };
  }, []);
  return path;
}

export function navigate(path: string, replace = false): void {
  if (path === location.pathname) return;
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  window.dispatchEvent(new Event("lark:navigate"));
}

/** Ticks every `ms` while mounted (typing indicators expire locally). */
export function useTick(ms: number): void {
  const [, setTick] = useState(0);
  useEffect(() => {
    const timer = window.setInterval(() => setTick((t) => t + 1), ms);
    return () => window.clearInterval(timer);
  }, [ms]);
}

export function initials(name: string): string {
  return name.slice(0, 1).toUpperCase();
}

export function formatTime(ms: number): string {
  const date = new Date(ms);
  const today = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return date.toDateString() === today.toDateString() ? time : `${date.toLocaleDateString()} ${time}`;
}

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
