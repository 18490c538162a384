// Turning a failed call into something a form can show.

import { Code, ConnectError } from "@connectrpc/connect";

import { BadRequestSchema } from "./error_details.js";

/**
 * The request fields usersd names in its BadRequest details: "email" and
 * "full_name" (CreateUser, UpdateUser, the email filter of ListUsers), "id"
 * (GetUser, DeleteUser), "page_size" and "page_token" (ListUsers), and
 * "user", "user.id" and "update_mask" (UpdateUser).
 */
export type FormField = "email" | "full_name" | "id" | "page_size" | "page_token" | "user" | "user.id" | "update_mask";

const fieldLabels: Readonly<Record<FormField, string>> = {
  email: "Email",
  full_name: "Full name",
  id: "Id",
  page_size: "Page size",
  page_token: "Page token",
  user: "User",
  "user.id": "Id",
  update_mask: "Update mask",
};

/** What formErrorOf says for failed_precondition: the etag sent is not the user's current one. */
export const STALE_MESSAGE = "Someone changed this user since you loaded it: reload to see the changes.";

/** The message of usersd's already_exists for a second self sign-up. */
const ACCOUNT_HAS_USER = "this account already has a user";

function isFormField(s: string): s is FormField {
  return Object.hasOwn(fieldLabels, s);
}

/** What a form shows for a failed call. */
export interface FormError {
  /** The Connect code of the failure. */
  code: Code;
  /**
   * The field to show the message next to, when one field is at fault;
   * undefined for errors about the whole call (show those in a banner).
   */
  field?: FormField;
  /** The text to show: short, in English, safe to render as text. */
  message: string;
  /**
   * True when no answer came from the server: it is down or unreachable,
   * or, in a browser calling another origin, CORS blocked the call (the
   * browser reports both as the same network error; see
   * diagnoseNetworkError to tell them apart).
   */
  network: boolean;
}

/**
 * formErrorOf maps an error thrown by a UserClient call to a field and a
 * message. invalid_argument uses the google.rpc.BadRequest detail to find
 * the field (see FormField). already_exists belongs to "email" (CreateUser
 * or UpdateUser with an email another user has, in any case), except the
 * already_exists of a second self sign-up ("This account already has a
 * user."), which is about the account, not the email. not_found (GetUser,
 * UpdateUser, DeleteUser) belongs to "id". failed_precondition (UpdateUser
 * or DeleteUser with an etag that is no longer the user's: someone changed
 * it meanwhile) has no field: it is about the whole user, and the way out
 * is to load it again (STALE_MESSAGE; isStale tells it apart).
 * unauthenticated asks the user to sign in; permission_denied says "Not
 * allowed: " and the server's reason. Neither has a field.
 */
export function formErrorOf(err: unknown): FormError {
  const ce = ConnectError.from(err);
  switch (ce.code) {
    case Code.InvalidArgument: {
      const violation = ce
        .findDetails(BadRequestSchema)
        .flatMap((d) => d.fieldViolations)
        .find((v) => isFormField(v.field));
      if (violation && isFormField(violation.field)) {
        const field = violation.field;
        const what = violation.description.trim() || "is invalid";
        return { code: ce.code, field, message: sentence(`${fieldLabels[field]} ${what}`), network: false };
      }
      return { code: ce.code, message: sentence(ce.rawMessage || "the request is invalid"), network: false };
    }
    case Code.AlreadyExists:
      if (ce.rawMessage === ACCOUNT_HAS_USER) {
        // Self sign-up: this token's subject already created its one user.
        return { code: ce.code, message: "This account already has a user.", network: false };
      }
      return { code: ce.code, field: "email", message: "A user with this email already exists.", network: false };
    case Code.NotFound:
      return { code: ce.code, field: "id", message: "No user has this id.", network: false };
    case Code.FailedPrecondition:
      // The etag sent (UpdateUser's user.etag, DeleteUser's etag) is not the
      // stored user's any more: nothing was written.
      return { code: ce.code, message: STALE_MESSAGE, network: false };
    case Code.DeadlineExceeded:
      return { code: ce.code, message: "The server took too long to answer. Try again.", network: false };
    case Code.ResourceExhausted: {
      const retryAfter = ce.metadata.get("Retry-After");
      if (retryAfter !== null || /too many requests/i.test(ce.rawMessage)) {
        const wait = retryAfter !== null && /^\d+$/.test(retryAfter) ? ` in ${retryAfter} s` : " in a moment";
        return { code: ce.code, message: `Too many requests. Try again${wait}.`, network: false };
      }
      return { code: ce.code, message: "The request is too large.", network: false };
    }
    case Code.Unauthenticated:
      return { code: ce.code, message: "Sign in first: the server needs a valid sign-in for this call.", network: false };
    case Code.PermissionDenied: {
      const why = ce.rawMessage.replace(/^permission denied:\s*/i, "").trim();
      return { code: ce.code, message: sentence(why === "" ? "Not allowed" : `Not allowed: ${why}`), network: false };
    }
  }
  if (isNetworkError(ce)) {
    return { code: ce.code, message: "Cannot reach the server. Check your connection and try again.", network: true };
  }
  if (ce.code === Code.Unavailable) {
    return { code: ce.code, message: "The service is temporarily unavailable. Try again in a moment.", network: false };
  }
  return { code: ce.code, message: "Something went wrong on the server. Try again later.", network: false };
}

/**
 * isUnauthenticated reports whether usersd refused the call for want of a
 * valid token (none, expired, or not for usersd): sign in (again).
 */
export function isUnauthenticated(err: unknown): boolean {
  return ConnectError.from(err).code === Code.Unauthenticated;
}

/**
 * isPermissionDenied reports whether usersd refused the call because the
 * token, though valid, lacks the scope for it (and the call is not on the
 * caller's own user).
 */
export function isPermissionDenied(err: unknown): boolean {
  return ConnectError.from(err).code === Code.PermissionDenied;
}

/**
 * isStale reports whether usersd refused an UpdateUser or DeleteUser
 * because the etag sent is not the user's current one (failed_precondition:
 * someone changed the user since it was read; nothing was written). Read
 * the user again for its current values and etag.
 */
export function isStale(err: unknown): boolean {
  return ConnectError.from(err).code === Code.FailedPrecondition;
}

/**
 * isNetworkError reports whether the call failed without any answer from
 * the server. fetch rejects with a TypeError then ("Failed to fetch" in
 * Chromium), which Connect wraps as code unknown; Node's HTTP/2 transports
 * report refused connections as unavailable with a system error code.
 */
export function isNetworkError(err: unknown): boolean {
  const ce = ConnectError.from(err);
  const cause: unknown = ce.cause;
  if (ce.code === Code.Unknown && cause instanceof Error && cause.name === "TypeError") {
    return true;
  }
  if (ce.code === Code.Unavailable && cause instanceof Error && "code" in cause) {
    const sys = (cause as { code?: unknown }).code;
    return typeof sys === "string" && /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT)$/.test(sys);
  }
  return false;
}

/**
 * diagnoseNetworkError tells, in a browser, why a call to baseUrl got no
 * answer: "cors" when the server is up but does not allow this page's
 * origin, "unreachable" when nothing answers at all. It sends one no-cors
 * GET to baseUrl/livez: such a request succeeds (with an opaque response)
 * whenever the server answers, CORS or not.
 */
export async function diagnoseNetworkError(
  baseUrl: string,
  pageOrigin: string = globalThis.location?.origin ?? "",
): Promise<"cors" | "unreachable"> {
  const target = new URL(baseUrl);
  if (target.origin === pageOrigin) {
    return "unreachable";
  }
  try {
    await fetch(new URL("/livez", target), { mode: "no-cors", cache: "no-store", signal: AbortSignal.timeout(5000) });
    return "cors";
  } catch {
    return "unreachable";
  }
}

function sentence(s: string): string {
  const t = s.trim();
  if (t === "") return t;
  const capital = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(capital) ? capital : capital + ".";
}
