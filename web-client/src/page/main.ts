// The demo page: sign in, create a user, look one up, edit or delete it,
// list users page by page, over Connect or gRPC-Web, the list kept live by
// the change feed. The API is the page's own origin unless the query says
// otherwise: ?api=http://127.0.0.1:8000
//
// On load the page reads the API's /config.json: with auth_disabled it
// shows no sign-in and calls without a token; otherwise it signs in against
// the issuer named there (auth.ts: code flow with PKCE) and sends the token
// on every call, over both protocols. Every call also sends back the
// Consistency-Token of the page's last write, so that what it reads next
// (from whichever replica) includes that write.

import { Code, ConnectError } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";

import { consistencyInterceptor, createUserClient, type Protocol, type UserClient } from "../client.js";
import { diagnoseNetworkError, formErrorOf, type FormError, type FormField } from "../errors.js";
import { UserEvent_Type, type User, type UserEvent } from "../gen/users/v1/users_pb.js";
import { userUpdate } from "../update.js";
import {
  SignInError,
  currentSession,
  finishSignIn,
  loadConfig,
  msUntilExpiry,
  signOut,
  startSignIn,
  takeRedirect,
  type Session,
  type WebConfig,
} from "./auth.js";

const PAGE_SIZE = 5;

const protocolNames: Record<Protocol, string> = { connect: "Connect", "grpc-web": "gRPC-Web" };

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`page: #${id} is missing`);
  return e as T;
}

const banner = el("banner");
const lastCall = el("last-call");

function showBanner(text: string): void {
  banner.textContent = text;
  banner.hidden = false;
}

function hideBanner(): void {
  banner.hidden = true;
  banner.textContent = "";
}

// Back from the issuer's sign-in page? This puts the address the sign-in
// started from (with its ?api=...) back in the address bar, without the
// code, before anything reads the query.
const redirect = takeRedirect();

/** The API base URL: ?api=... when it is an http(s) URL, else this page's origin. */
function apiBaseUrl(): string {
  const api = new URLSearchParams(location.search).get("api");
  if (api === null || api === "") return location.origin;
  try {
    const u = new URL(api);
    if (u.protocol === "http:" || u.protocol === "https:") {
      return (u.origin + u.pathname).replace(/\/+$/, "");
    }
  } catch {
    // fall through
  }
  showBanner(`Ignoring ?api=${api}: it is not an http:// or https:// URL. Using ${location.origin}.`);
  return location.origin;
}

const baseUrl = apiBaseUrl();
el("api-url").textContent = baseUrl;

const clients = new Map<Protocol, UserClient>();

// One token for both protocols: after an edit over one, a read over the
// other (or the watch moved to it) must not come from a replica that has
// not seen the edit yet.
const consistency = consistencyInterceptor();

function currentProtocol(): Protocol {
  const checked = document.querySelector<HTMLInputElement>('input[name="protocol"]:checked');
  return checked?.value === "grpc-web" ? "grpc-web" : "connect";
}

function clientFor(protocol: Protocol): UserClient {
  let c = clients.get(protocol);
  if (c === undefined) {
    c = createUserClient(baseUrl, { protocol, token: () => session()?.token, consistency });
    clients.set(protocol, c);
  }
  return c;
}

// --- sign-in ------------------------------------------------------------------

/** What /config.json said; undefined until it arrived (or when it could not be read). */
let config: WebConfig | undefined;

const authBox = el("auth");
const authStatus = el("auth-status");
const signInButton = el<HTMLButtonElement>("sign-in");
const signOutButton = el<HTMLButtonElement>("sign-out");
let expiryTimer: ReturnType<typeof setTimeout> | undefined;

/** The signed-in session, undefined when signed out (or sign-in is off). Drops an expired token. */
function session(): Session | undefined {
  if (config === undefined || config.auth_disabled || config.issuer === undefined) return undefined;
  return currentSession(config.issuer);
}

function signedIn(): boolean {
  return session() !== undefined;
}

/** May the page call the API now: signed in, or no sign-in needed. */
function mayCall(): boolean {
  return config !== undefined && (config.auth_disabled === true || signedIn());
}

function renderAuth(): void {
  clearTimeout(expiryTimer);
  if (config === undefined || config.auth_disabled) {
    authBox.hidden = true;
    return;
  }
  authBox.hidden = false;
  const s = session();
  authBox.classList.toggle("signed-in", s !== undefined);
  signInButton.hidden = s !== undefined;
  signOutButton.hidden = s === undefined;
  if (s === undefined) {
    authStatus.textContent = "Signed out: sign in to call the API.";
    return;
  }
  const scopes = s.scopes.filter((x) => x !== "openid");
  authStatus.textContent =
    `Signed in as ${s.subject || "(no subject)"}, scopes: ` +
    (scopes.length > 0 ? scopes.join(" ") : "none (you may create your own user and look it up)") +
    `. Until ${new Date(s.expiresAt).toLocaleTimeString()}.`;
  // Back to signed out when the token expires.
  expiryTimer = setTimeout(onExpired, Math.min(Math.max(msUntilExpiry(s), 0) + 50, 2 ** 31 - 1));
}

function onExpired(): void {
  if (!signedIn()) {
    renderAuth();
    forgetData();
    showBanner("Your sign-in has expired: sign in again to call the API.");
    lastCall.textContent = "Signed out: the sign-in expired.";
  } else {
    renderAuth();
  }
}

/** Removes what the signed-in user fetched: the list and the lookup result. */
function forgetData(): void {
  stopFollowing();
  userRows.replaceChildren();
  listLoaded = false;
  nextToken = "";
  more.hidden = true;
  hideUser();
  lookupStatus.textContent = "";
  createResult.textContent = "";
  clearFieldErrors("email", "full_name", "id", "page_size", "page_token");
  createError.textContent = "";
  listStatus.textContent = mayCall() ? "" : "Sign in to list users.";
}

signInButton.addEventListener("click", () => {
  if (config === undefined) return;
  const cfg = config;
  void busy([signInButton], async () => {
    hideBanner();
    authStatus.textContent = "Going to the sign-in page…";
    try {
      await startSignIn(cfg); // navigates away
    } catch (err) {
      renderAuth();
      showBanner(err instanceof SignInError ? err.message : `Sign-in failed: ${String(err)}`);
    }
  });
});

signOutButton.addEventListener("click", () => {
  signOut();
  hideBanner();
  renderAuth();
  forgetData();
  lastCall.textContent = "Signed out.";
});

/** Reads /config.json, finishes a sign-in coming back from the issuer, and loads the list. */
async function start(): Promise<void> {
  try {
    config = await loadConfig(baseUrl);
  } catch (err) {
    if (err instanceof SignInError) {
      // An API without /config.json: call without a token and see.
      showBanner(err.message);
      config = { auth_disabled: true };
      renderAuth();
      await loadPage(true);
      return;
    }
    lastCall.textContent = "GET /config.json: no answer (network error)";
    showBanner(await networkMessage());
    listStatus.textContent = "";
    return;
  }
  if (redirect !== undefined && !config.auth_disabled) {
    authStatus.textContent = "Finishing sign-in…";
    authBox.hidden = false;
    signInButton.hidden = true;
    try {
      await finishSignIn(config, redirect);
    } catch (err) {
      showBanner(err instanceof SignInError ? err.message : `Sign-in failed: ${String(err)}`);
    }
  }
  renderAuth();
  if (mayCall()) {
    await loadPage(true);
  } else {
    listStatus.textContent = "Sign in to list users.";
  }
}

function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/[A-Z]/g, (m, i: number) => (i > 0 ? "_" : "") + m.toLowerCase());
}

/**
 * call runs one RPC over the selected protocol (with the token, when signed
 * in) and records it in the footer. On failure it shows network problems
 * and sign-in problems (unauthenticated) in the banner, offers the rest to
 * onError, which returns true when it showed the error at its form, shows
 * what onError did not take in the banner too, and returns undefined.
 */
async function call<T>(
  rpc: string,
  fn: (c: UserClient) => Promise<T>,
  onError: (fe: FormError) => boolean,
): Promise<T | undefined> {
  const protocol = currentProtocol();
  const hadToken = signedIn();
  const started = performance.now();
  const took = () => `${Math.round(performance.now() - started)} ms`;
  try {
    const res = await fn(clientFor(protocol));
    lastCall.textContent = `${rpc} over ${protocolNames[protocol]}: ok in ${took()}`;
    hideBanner();
    return res;
  } catch (err) {
    const fe = formErrorOf(err);
    const outcome = fe.network ? "no answer (network error)" : codeName(fe.code);
    lastCall.textContent = `${rpc} over ${protocolNames[protocol]}: ${outcome} after ${took()}`;
    if (fe.network) {
      showBanner(await networkMessage());
    } else if (fe.code === Code.Unauthenticated) {
      if (hadToken) {
        // The server no longer takes this token (expired, or its key was
        // withdrawn): forget it, and say so.
        signOut();
        renderAuth();
        forgetData();
        showBanner(`Your sign-in is no longer accepted: sign in again. (${ConnectError.from(err).rawMessage})`);
      } else if (config !== undefined && !config.auth_disabled) {
        showBanner("You are signed out: sign in to call the API.");
      } else {
        showBanner(fe.message);
      }
    } else if (onError(fe)) {
      hideBanner();
    } else {
      showBanner(fe.message);
    }
    return undefined;
  }
}

async function networkMessage(): Promise<string> {
  const page = location.origin;
  if ((await diagnoseNetworkError(baseUrl, page)) === "cors") {
    return (
      `The API at ${baseUrl} answered, but the browser blocked the call: the server does not allow ` +
      `requests from this page's origin (${page}) under its CORS policy. Add ${page} to usersd's CORS_ALLOWED_ORIGINS.`
    );
  }
  return `Cannot reach the API at ${baseUrl}: the server is down or unreachable. Check that usersd is running and try again.`;
}

const inputs: Partial<Record<FormField, HTMLInputElement>> = {
  email: el<HTMLInputElement>("email"),
  full_name: el<HTMLInputElement>("full-name"),
  id: el<HTMLInputElement>("user-id"),
};

function setFieldError(field: FormField, message: string): void {
  const target = field === "page_size" || field === "page_token" ? el("list-error") : el(`${field}-error`);
  target.textContent = message;
  inputs[field]?.setAttribute("aria-invalid", "true");
}

function clearFieldErrors(...fields: FormField[]): void {
  for (const f of fields) {
    if (f === "page_size" || f === "page_token") {
      el("list-error").textContent = "";
    } else {
      el(`${f}-error`).textContent = "";
    }
    inputs[f]?.removeAttribute("aria-invalid");
  }
}

async function busy<T>(buttons: HTMLButtonElement[], work: () => Promise<T>): Promise<T> {
  for (const b of buttons) b.disabled = true;
  try {
    return await work();
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

/** When u was created, in UTC: "2026-11-23 21:00:06" (with " UTC" when withZone). */
function created(u: User, withZone = true): string {
  return utc(u.createdAt, withZone);
}

function utc(t: User["createdAt"], withZone = true): string {
  if (!t) return "";
  const s = timestampDate(t).toISOString().replace("T", " ").slice(0, 19);
  return withZone ? `${s} UTC` : s;
}

// Create.
const createForm = el<HTMLFormElement>("create-form");
const createResult = el("create-result");
const createError = el("create-error");
createForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  clearFieldErrors("email", "full_name");
  createResult.textContent = "";
  createError.textContent = "";
  const email = inputs.email?.value ?? "";
  const fullName = inputs.full_name?.value ?? "";
  void busy([...createForm.querySelectorAll("button")], async () => {
    const res = await call("CreateUser", (c) => c.createUser({ email, fullName }), (fe) => {
      if (fe.field === "email" || fe.field === "full_name") {
        setFieldError(fe.field, fe.message);
        inputs[fe.field]?.focus();
        return true;
      }
      // "This account already has a user." (self sign-up, second time) and
      // "Not allowed: ..." belong to the form as a whole.
      if (fe.field === undefined && (fe.code === Code.AlreadyExists || fe.code === Code.PermissionDenied)) {
        createError.textContent = fe.message;
        return true;
      }
      return false;
    });
    const u = res?.user;
    if (u === undefined) return;
    createResult.textContent = `Created ${u.fullName} <${u.email}> with id ${u.id}.`;
    createForm.reset();
    el<HTMLInputElement>("user-id").value = u.id;
    if (listLoaded) {
      putRow(u);
      showListStatus();
    }
  });
});

// Look up.
const lookupForm = el<HTMLFormElement>("lookup-form");
const lookupStatus = el("lookup-status");
lookupForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  clearFieldErrors("id");
  hideUser();
  lookupStatus.textContent = "";
  const id = (inputs.id?.value ?? "").trim();
  void busy([...lookupForm.querySelectorAll("button")], async () => {
    const res = await call("GetUser", (c) => c.getUser({ id }), (fe) => {
      if (fe.field !== "id" && fe.code !== Code.PermissionDenied) return false;
      setFieldError("id", fe.message);
      return true;
    });
    const u = res?.user;
    if (u === undefined) return;
    showUser(u);
  });
});

// The user found (or opened from the list): shown, edited in place, deleted.
//
// shown is the user as the page last loaded it: its etag goes with every
// update and delete, so that usersd refuses them (failed_precondition) when
// someone changed the user meanwhile, instead of overwriting that change.
let shown: User | undefined;

const lookupResult = el("lookup-result");
const editForm = el<HTMLFormElement>("edit-form");
const editInputs = { email: el<HTMLInputElement>("edit-email"), full_name: el<HTMLInputElement>("edit-full-name") };
const viewActions = el("view-actions");
const editActions = el("edit-actions");
const editButton = el<HTMLButtonElement>("edit-user");
const deleteButton = el<HTMLButtonElement>("delete-user");
const saveButton = el<HTMLButtonElement>("save-user");
const cancelButton = el<HTMLButtonElement>("cancel-edit");
const confirmBox = el("delete-confirm");
const deleteYes = el<HTMLButtonElement>("delete-yes");
const deleteNo = el<HTMLButtonElement>("delete-no");
const userError = el("user-error");
const reloadUser = el<HTMLButtonElement>("reload-user");

type Mode = "view" | "edit" | "confirm";

function setMode(mode: Mode): void {
  const editing = mode === "edit";
  el("found-name").hidden = editing;
  el("found-email").hidden = editing;
  el("edit-full-name-field").hidden = !editing;
  el("edit-email-field").hidden = !editing;
  editActions.hidden = !editing;
  viewActions.hidden = mode !== "view";
  confirmBox.hidden = mode !== "confirm";
  lookupResult.dataset["mode"] = mode;
}

function clearUserErrors(): void {
  for (const f of ["email", "full_name"] as const) {
    el(`edit-${f}-error`).textContent = "";
    editInputs[f].removeAttribute("aria-invalid");
  }
  userError.textContent = "";
  reloadUser.hidden = true;
}

/** Shows u in the card, not editing: the page's current version of that user. */
function showUser(u: User): void {
  shown = u;
  el("found-name").textContent = u.fullName;
  el("found-email").textContent = u.email;
  el("found-id").textContent = u.id;
  el("found-created").textContent = created(u);
  el("found-updated").textContent = utc(u.updatedAt);
  clearUserErrors();
  setMode("view");
  lookupResult.hidden = false;
}

function hideUser(): void {
  shown = undefined;
  clearUserErrors();
  setMode("view");
  lookupResult.hidden = true;
}

/** The user is gone (deleted here or elsewhere): off the card and the list, with a word why. */
function userGone(id: string, message: string): void {
  if (shown?.id === id) hideUser();
  rowOf(id)?.remove();
  if (listLoaded) showListStatus();
  lookupStatus.textContent = message;
  inputs.id?.focus();
}

/**
 * userFailed shows a failed update or delete of the shown user: a bad or
 * taken value at its input, a stale etag with the way to reload the user,
 * the rest (not allowed, ...) under the card. False for what belongs in the
 * banner (network, server errors, and anything about a user the card no
 * longer shows).
 */
function userFailed(fe: FormError, u: User): boolean {
  if (shown?.id !== u.id) return false;
  if ((fe.field === "email" || fe.field === "full_name") && lookupResult.dataset["mode"] === "edit") {
    el(`edit-${fe.field}-error`).textContent = fe.message;
    editInputs[fe.field].setAttribute("aria-invalid", "true");
    editInputs[fe.field].focus();
    return true;
  }
  if (fe.code === Code.FailedPrecondition) {
    // Someone changed the user since the page loaded it: nothing was
    // written. Offer to load the current version.
    userError.textContent = fe.message;
    reloadUser.hidden = false;
    reloadUser.focus();
    return true;
  }
  if (fe.code === Code.NotFound) {
    userGone(u.id, `${u.fullName} <${u.email}> no longer exists: someone deleted it.`);
    return true;
  }
  if (fe.field !== undefined || fe.code === Code.PermissionDenied) {
    userError.textContent = fe.message;
    return true;
  }
  return false;
}

function rowOf(id: string): HTMLTableRowElement | null {
  return userRows.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
}

/** Replaces the list row of u, when the list shows it. */
function updateRow(u: User): void {
  rowOf(u.id)?.replaceWith(row(u));
}

/**
 * Shows a new user at the head of the list, or replaces its row: the
 * change feed may announce a user this page just created before the
 * create returns.
 */
function putRow(u: User): void {
  const old = rowOf(u.id);
  if (old === null) userRows.prepend(row(u));
  else old.replaceWith(row(u));
}

editButton.addEventListener("click", () => {
  if (shown === undefined) return;
  clearUserErrors();
  lookupStatus.textContent = "";
  editInputs.full_name.value = shown.fullName;
  editInputs.email.value = shown.email;
  setMode("edit");
  editInputs.full_name.focus();
});

function cancelEdit(): void {
  clearUserErrors();
  setMode("view");
  editButton.focus();
}

cancelButton.addEventListener("click", cancelEdit);

editForm.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && lookupResult.dataset["mode"] === "edit" && !saveButton.disabled) {
    ev.preventDefault();
    cancelEdit();
  }
});

editForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const u = shown;
  if (u === undefined || lookupResult.dataset["mode"] !== "edit") return;
  clearUserErrors();
  lookupStatus.textContent = "";
  // Only what changed goes in the mask, with the etag the page loaded.
  const req = userUpdate(u, { email: editInputs.email.value, fullName: editInputs.full_name.value });
  if (req === undefined) {
    setMode("view");
    lookupStatus.textContent = "Nothing changed.";
    editButton.focus();
    return;
  }
  const what = (req.updateMask?.paths ?? []).map((p) => (p === "full_name" ? "name" : p)).join(" and ");
  void busy([saveButton, cancelButton], async () => {
    const res = await call("UpdateUser", (c) => c.updateUser(req), (fe) => userFailed(fe, u));
    const updated = res?.user;
    if (updated === undefined) return;
    updateRow(updated);
    if (shown !== u) return; // the card moved on to another user meanwhile
    showUser(updated);
    lookupStatus.textContent = `Saved the new ${what} of ${updated.fullName} <${updated.email}>.`;
    editButton.focus();
  });
});

reloadUser.addEventListener("click", () => {
  const u = shown;
  if (u === undefined) return;
  void busy([reloadUser, saveButton, cancelButton, editButton, deleteButton], async () => {
    const res = await call("GetUser", (c) => c.getUser({ id: u.id }), (fe) => userFailed(fe, u));
    const fresh = res?.user;
    if (fresh === undefined) return;
    updateRow(fresh);
    if (shown !== u) return;
    showUser(fresh);
    lookupStatus.textContent = "Reloaded: these are the user's current values. Edit again to change them.";
    editButton.focus();
  });
});

deleteButton.addEventListener("click", () => {
  if (shown === undefined) return;
  clearUserErrors();
  lookupStatus.textContent = "";
  el("delete-question").textContent = `Delete ${shown.email}?`;
  setMode("confirm");
  deleteNo.focus();
});

function cancelDelete(): void {
  setMode("view");
  deleteButton.focus();
}

deleteNo.addEventListener("click", cancelDelete);

confirmBox.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && !deleteNo.disabled) {
    ev.preventDefault();
    cancelDelete();
  }
});

deleteYes.addEventListener("click", () => {
  const u = shown;
  if (u === undefined) return;
  void busy([deleteYes, deleteNo], async () => {
    const res = await call("DeleteUser", (c) => c.deleteUser({ id: u.id, etag: u.etag }), (fe) => userFailed(fe, u));
    if (res !== undefined) {
      userGone(u.id, `Deleted ${u.fullName} <${u.email}>.`);
    } else if (shown === u) {
      // Not deleted: back to the user, and to the way out when there is one.
      setMode("view");
      (reloadUser.hidden ? deleteButton : reloadUser).focus();
    }
  });
});

// List, newest first, PAGE_SIZE at a time.
const userRows = el<HTMLTableSectionElement>("users");
const more = el<HTMLButtonElement>("more");
const reload = el<HTMLButtonElement>("list-reload");
const listStatus = el("list-status");
let nextToken = "";
let listLoaded = false;

function row(u: User): HTMLTableRowElement {
  const tr = document.createElement("tr");
  tr.dataset["id"] = u.id;
  for (const [text, cls] of [[u.fullName, ""], [u.email, ""], [created(u, false), ""], [u.id, "mono"]] as const) {
    const td = document.createElement("td");
    td.textContent = text;
    td.title = text;
    if (cls) td.className = cls;
    tr.append(td);
  }
  // Open shows the listed user in the card above, to edit or delete it
  // (with the etag the list loaded).
  const open = document.createElement("button");
  open.type = "button";
  open.className = "secondary small";
  open.textContent = "Open";
  open.setAttribute("aria-label", `Open ${u.email}`);
  open.addEventListener("click", () => {
    clearFieldErrors("id");
    lookupStatus.textContent = "";
    showUser(u);
    editButton.focus();
  });
  const actions = document.createElement("td");
  actions.className = "row-actions";
  actions.append(open);
  tr.append(actions);
  tr.addEventListener("click", () => {
    el<HTMLInputElement>("user-id").value = u.id;
  });
  return tr;
}

async function loadPage(first: boolean): Promise<void> {
  clearFieldErrors("page_size", "page_token");
  await busy([more, reload], async () => {
    // Where the feed ends before the first page is read: following from
    // there replays, rather than misses, what changes while it loads.
    const end = first ? await feedEnd() : undefined;
    const res = await call("ListUsers", (c) => c.listUsers({ pageSize: PAGE_SIZE, pageToken: first ? "" : nextToken }), (fe) => {
      if (fe.field !== undefined) {
        setFieldError(fe.field, fe.message);
        return true;
      }
      if (fe.code === Code.PermissionDenied) {
        // "Not allowed: this call needs the users:read scope." shows at the list.
        el("list-error").textContent = fe.message;
        return true;
      }
      return false;
    });
    if (res === undefined) return;
    if (first) userRows.replaceChildren();
    userRows.append(...res.users.map(row));
    listLoaded = true;
    nextToken = res.nextPageToken;
    more.hidden = nextToken === "";
    showListStatus();
    if (first) follow(end ?? "");
  });
}

function showListStatus(): void {
  const n = userRows.rows.length;
  listStatus.textContent =
    n === 0 ? "No users yet." : `${n} user${n === 1 ? "" : "s"} shown, ${PAGE_SIZE} per page${nextToken ? "" : " (end of list)"}.`;
}

// The live list: while it is loaded, the page follows the change feed
// (WatchUserEvents) over the selected protocol and applies each event to
// the rows it shows. The card above keeps the version it loaded, and its
// etag, on purpose: an edit there still fails on someone else's change.

const live = el("live");
/** The running watch; undefined when not following. */
let feed: AbortController | undefined;
/** The id of the last event applied: where a reconnect continues. */
let cursor = "";

function setLive(state: "off" | "connecting" | "live"): void {
  live.hidden = state === "off";
  live.dataset["state"] = state;
  live.textContent = state === "live" ? "Live" : "Connecting…";
}

/** The feed's current end, or undefined when it cannot be read (then the list says why). */
async function feedEnd(): Promise<string | undefined> {
  try {
    return (await clientFor(currentProtocol()).listUserEvents({ after: "" })).nextAfter;
  } catch {
    return undefined;
  }
}

function stopFollowing(): void {
  feed?.abort();
  feed = undefined;
  setLive("off");
}

/**
 * follow watches the feed after the cursor after ("" for from now on)
 * until stopped, applying each event; when the stream fails or ends it
 * reconnects after the last event applied, after a back-off.
 */
function follow(after: string): void {
  stopFollowing();
  const ctl = new AbortController();
  feed = ctl;
  cursor = after;
  setLive("connecting");
  void (async () => {
    let failures = 0;
    while (!ctl.signal.aborted) {
      try {
        const events = clientFor(currentProtocol()).watchUserEvents(
          { after: cursor },
          {
            signal: ctl.signal,
            timeoutMs: 0, // no deadline: a watch stays open
            // usersd sends the headers once the watch has caught up.
            onHeader: () => {
              failures = 0;
              setLive("live");
            },
          },
        );
        for await (const ev of events) {
          if (ctl.signal.aborted) return; // a newer watch owns the list and the cursor
          applyEvent(ev);
          cursor = ev.id;
        }
      } catch (err) {
        if (ctl.signal.aborted) return;
        const code = ConnectError.from(err).code;
        if (code === Code.OutOfRange) {
          // The cursor is older than the oldest event kept: what changed
          // since is lost. Start afresh: the list, then the feed from now.
          stopFollowing();
          void loadPage(true);
          return;
        }
        if (code === Code.Unauthenticated || code === Code.PermissionDenied || code === Code.Unimplemented) {
          // Retrying cannot help; the next Reload tries again.
          stopFollowing();
          return;
        }
      }
      if (ctl.signal.aborted) return;
      setLive("connecting");
      // From half a second, doubling up to 15 s, jittered so that pages
      // that lost the same server do not all come back at once.
      const delay = Math.min(500 * 2 ** failures, 15_000) * (0.5 + Math.random() / 2);
      failures++;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  })();
}

function applyEvent(ev: UserEvent): void {
  // A user erased since has no user in its earlier events: its deletion
  // follows.
  if (ev.type === UserEvent_Type.DELETED) {
    rowOf(ev.userId)?.remove();
  } else if (ev.user !== undefined) {
    // An update of a user on a page not loaded yet shows when it is.
    if (ev.type === UserEvent_Type.CREATED) putRow(ev.user);
    else updateRow(ev.user);
    rowOf(ev.userId)?.classList.add("changed");
  }
  showListStatus();
}

// A switch of protocol moves the watch to it, from where it was.
for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="protocol"]')) {
  radio.addEventListener("change", () => {
    if (feed !== undefined) follow(cursor);
  });
}

more.addEventListener("click", () => void loadPage(false));
reload.addEventListener("click", () => void loadPage(true));

void start();
