// Sign-in for the demo page: the OAuth 2.0 authorization code flow with
// PKCE (RFC 7636, S256) against the issuer that usersd names in
// /config.json, for a public client (no secret). The access token lives in
// sessionStorage (this tab only, gone when it closes), never localStorage.
//
//   startSignIn   discovery document -> verifier, challenge and state from
//                 crypto.getRandomValues -> sessionStorage -> redirect to
//                 the authorization endpoint, redirect_uri = this page
//   takeRedirect  on the way back: read code and state from the address
//                 bar and put the address the sign-in started from back
//                 (history.replaceState), so the code leaves the URL at once
//   finishSignIn  check the state, exchange code + verifier at the token
//                 endpoint, keep the token
//
// The token's payload is decoded for display only (who is signed in, with
// which scopes, until when); usersd checks the signature.

/** What usersd's GET /config.json says. */
export interface WebConfig {
  issuer?: string;
  client_id?: string;
  scope?: string;
  auth_disabled?: boolean;
}

/** The signed-in session, for display. */
export interface Session {
  token: string;
  subject: string;
  scopes: string[];
  expiresAt: number; // ms since the epoch
}

/** A sign-in problem to show the user; message is plain English. */
export class SignInError extends Error {
  override name = "SignInError";
}

const TOKEN_KEY = "usersd.token";
const PENDING_KEY = "usersd.signin";

/** Tokens this close to their expiry count as expired already. */
const EXPIRY_SKEW_MS = 10_000;

/** A sign-in started in this tab, waiting for the issuer to send the user back. */
interface Pending {
  state: string;
  verifier: string;
  issuer: string;
  clientId: string;
  tokenEndpoint: string;
  redirectUri: string;
  returnTo: string; // the page's address before the sign-in (with ?api=...)
}

interface StoredToken {
  accessToken: string;
  issuer: string;
  expiresAt: number;
}

/** Where the issuer sent the user back to, with the code (or an error). */
export interface Redirect {
  code?: string;
  state: string;
  error?: string;
  pending?: Pending;
}

// --- storage ---------------------------------------------------------------

function load<T>(key: string): T | undefined {
  try {
    const raw = sessionStorage.getItem(key);
    return raw === null ? undefined : (JSON.parse(raw) as T);
  } catch {
    return undefined;
  }
}

function save(key: string, value: unknown): void {
  sessionStorage.setItem(key, JSON.stringify(value));
}

function remove(key: string): void {
  try {
    sessionStorage.removeItem(key);
  } catch {
    // storage unavailable: nothing stored either
  }
}

/**
 * currentSession returns the signed-in session for issuer, or undefined
 * when signed out. A token that has expired, or that another issuer
 * issued, is dropped.
 */
export function currentSession(issuer: string): Session | undefined {
  const t = load<StoredToken>(TOKEN_KEY);
  if (t === undefined) return undefined;
  if (typeof t.accessToken !== "string" || t.issuer !== issuer || !(t.expiresAt - EXPIRY_SKEW_MS > Date.now())) {
    remove(TOKEN_KEY);
    return undefined;
  }
  const claims = tokenClaims(t.accessToken);
  return { token: t.accessToken, subject: claims.subject, scopes: claims.scopes, expiresAt: t.expiresAt };
}

/** msUntilExpiry is how long s stays usable (the page treats it as expired a little early). */
export function msUntilExpiry(s: Session): number {
  return s.expiresAt - EXPIRY_SKEW_MS - Date.now();
}

/** signOut forgets the token (the development issuer keeps no session to end). */
export function signOut(): void {
  remove(TOKEN_KEY);
}

// --- the flow --------------------------------------------------------------

/** loadConfig fetches baseUrl/config.json. Network failures reject with fetch's TypeError. */
export async function loadConfig(baseUrl: string): Promise<WebConfig> {
  const res = await fetch(`${baseUrl}/config.json`, { cache: "no-store", credentials: "omit" });
  if (!res.ok) {
    throw new SignInError(
      `The API at ${baseUrl} does not serve /config.json (HTTP ${res.status}), so this page cannot tell where to sign in.`,
    );
  }
  const cfg = (await res.json()) as WebConfig;
  if (!cfg.auth_disabled && (typeof cfg.issuer !== "string" || cfg.issuer === "" || typeof cfg.client_id !== "string")) {
    throw new SignInError(`The API at ${baseUrl} names no issuer in /config.json, so this page cannot sign in.`);
  }
  return cfg;
}

interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  code_challenge_methods_supported?: string[];
}

async function discover(issuer: string): Promise<Discovery> {
  let doc: Partial<Discovery>;
  try {
    const res = await fetch(`${issuer}/.well-known/openid-configuration`, { cache: "no-store", credentials: "omit" });
    if (!res.ok) throw new SignInError(`the issuer answered HTTP ${res.status}`);
    doc = (await res.json()) as Partial<Discovery>;
  } catch (err) {
    const why = err instanceof SignInError ? err.message : "no answer";
    throw new SignInError(`Cannot read the sign-in server's settings at ${issuer} (${why}). Check that it is running.`);
  }
  if (doc.issuer !== issuer || !isHttpUrl(doc.authorization_endpoint) || !isHttpUrl(doc.token_endpoint)) {
    throw new SignInError(`The sign-in server at ${issuer} published an unusable discovery document.`);
  }
  if (doc.code_challenge_methods_supported && !doc.code_challenge_methods_supported.includes("S256")) {
    throw new SignInError(`The sign-in server at ${issuer} does not support PKCE with S256.`);
  }
  return doc as Discovery;
}

/**
 * startSignIn sends the browser to the issuer's sign-in page. It does not
 * return unless it fails (then with a SignInError).
 */
export async function startSignIn(cfg: WebConfig): Promise<void> {
  const issuer = cfg.issuer ?? "";
  if (globalThis.crypto?.subtle === undefined) {
    throw new SignInError("Signing in needs a secure page (https://, or http:// on localhost or 127.0.0.1).");
  }
  const doc = await discover(issuer);
  const verifier = randomString(32);
  const state = randomString(16);
  const redirectUri = location.origin + location.pathname;
  const pending: Pending = {
    state,
    verifier,
    issuer,
    clientId: cfg.client_id ?? "",
    tokenEndpoint: doc.token_endpoint,
    redirectUri,
    returnTo: location.href,
  };
  save(PENDING_KEY, pending);
  const url = new URL(doc.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: pending.clientId,
    redirect_uri: redirectUri,
    scope: cfg.scope ?? "openid",
    state,
    code_challenge: await challengeOf(verifier),
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.toString());
}

/**
 * takeRedirect recognises the issuer sending the user back (?code=&state=
 * or ?error=&state=). It takes the sign-in this tab started out of
 * sessionStorage (one use only) and rewrites the address bar to where the
 * sign-in started, or, without one, to the address without those
 * parameters. Returns undefined on an ordinary page load.
 */
export function takeRedirect(): Redirect | undefined {
  const params = new URLSearchParams(location.search);
  const state = params.get("state");
  const code = params.get("code");
  const error = params.get("error");
  if (state === null || (code === null && error === null)) return undefined;

  const pending = load<Pending>(PENDING_KEY);
  remove(PENDING_KEY);
  let back: URL | undefined;
  try {
    back = pending ? new URL(pending.returnTo) : undefined;
  } catch {
    back = undefined;
  }
  if (back === undefined || back.origin !== location.origin) {
    back = new URL(location.href);
    for (const p of ["code", "state", "error", "error_description", "error_uri", "iss", "session_state"]) {
      back.searchParams.delete(p);
    }
  }
  history.replaceState(null, "", back.toString());
  const r: Redirect = { state };
  if (code !== null) r.code = code;
  if (error !== null) r.error = params.get("error_description") ?? error;
  if (pending !== undefined) r.pending = pending;
  return r;
}

/** finishSignIn checks the redirect against the sign-in that started it and exchanges the code. */
export async function finishSignIn(cfg: WebConfig, r: Redirect): Promise<Session> {
  const p = r.pending;
  if (p === undefined) {
    throw new SignInError("Sign-in could not be finished: this tab did not start it (or it was finished already). Sign in again.");
  }
  if (r.state !== p.state) {
    throw new SignInError("Sign-in could not be finished: the answer does not belong to the sign-in this tab started. Sign in again.");
  }
  if (r.error !== undefined) {
    throw new SignInError(`The sign-in server refused: ${r.error}.`);
  }
  if (p.issuer !== cfg.issuer) {
    throw new SignInError("Sign-in could not be finished: the API now names another issuer. Sign in again.");
  }
  let res: Response;
  try {
    res = await fetch(p.tokenEndpoint, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: r.code ?? "",
        redirect_uri: p.redirectUri,
        client_id: p.clientId,
        code_verifier: p.verifier,
      }),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new SignInError(`Sign-in could not be finished: no answer from the sign-in server at ${p.issuer}.`);
  }
  const body = (await res.json().catch(() => ({}))) as {
    access_token?: unknown;
    token_type?: unknown;
    expires_in?: unknown;
    error?: unknown;
    error_description?: unknown;
  };
  if (!res.ok || typeof body.access_token !== "string" || String(body.token_type).toLowerCase() !== "bearer") {
    const why = typeof body.error_description === "string" ? body.error_description : typeof body.error === "string" ? body.error : `HTTP ${res.status}`;
    throw new SignInError(`Sign-in could not be finished: the sign-in server refused the code (${why}).`);
  }
  const now = Date.now();
  let expiresAt = typeof body.expires_in === "number" ? now + body.expires_in * 1000 : Number.POSITIVE_INFINITY;
  const claims = tokenClaims(body.access_token);
  if (claims.exp !== undefined) expiresAt = Math.min(expiresAt, claims.exp * 1000);
  if (!Number.isFinite(expiresAt)) expiresAt = now + 5 * 60_000; // no lifetime given: assume a short one
  const stored: StoredToken = { accessToken: body.access_token, issuer: p.issuer, expiresAt };
  save(TOKEN_KEY, stored);
  return { token: stored.accessToken, subject: claims.subject, scopes: claims.scopes, expiresAt };
}

// --- helpers ---------------------------------------------------------------

/** The claims the page shows, from a JWT's payload (not verified: display only). */
export function tokenClaims(token: string): { subject: string; scopes: string[]; exp?: number } {
  try {
    const payload = token.split(".")[1] ?? "";
    const b64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const json = new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
    const c = JSON.parse(json) as { sub?: unknown; scope?: unknown; scp?: unknown; exp?: unknown };
    const scopes =
      typeof c.scope === "string"
        ? c.scope.split(" ").filter((s) => s !== "")
        : Array.isArray(c.scp)
          ? c.scp.filter((s): s is string => typeof s === "string")
          : [];
    const out: { subject: string; scopes: string[]; exp?: number } = { subject: typeof c.sub === "string" ? c.sub : "", scopes };
    if (typeof c.exp === "number") out.exp = c.exp;
    return out;
  } catch {
    return { subject: "", scopes: [] };
  }
}

function isHttpUrl(s: unknown): s is string {
  if (typeof s !== "string") return false;
  try {
    const u = new URL(s);
    return u.protocol === "https:" || u.protocol === "http:";
  } catch {
    return false;
  }
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(bytes: number): string {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return base64url(b);
}

async function challengeOf(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}
