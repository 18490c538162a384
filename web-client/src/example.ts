// The README's example: how a browser app calls usersd. Kept here so that
// `npm run typecheck` compiles it.

import { Code, ConnectError } from "@connectrpc/connect";

import { createUserClient, formErrorOf, isStale, isUnauthenticated, userUpdate, type User } from "./index.js";

/** The access token your sign-in got (see "Tokens" below); undefined when signed out. */
let accessToken: string | undefined;

export function setAccessToken(token: string | undefined): void {
  accessToken = token;
}

// The token source is asked before every call, so a new token is used at
// once; each call carries "Authorization: Bearer <token>" when it returns one.
// Each call also sends back the Consistency-Token of the client's last
// write, so that what it reads includes that write (read replicas lag).
const users = createUserClient("https://api.example.com", {
  protocol: "connect",
  token: () => accessToken,
});

/** Creates a user; returns its id, or the field and message to show. */
export async function signUp(email: string, fullName: string) {
  try {
    const { user } = await users.createUser({ email, fullName });
    return { id: user?.id ?? "" };
  } catch (err) {
    if (isUnauthenticated(err)) {
      // No token, or one usersd no longer accepts (expired): sign in again.
      setAccessToken(undefined);
    }
    // e.g. { field: "email", message: "A user with this email already exists." }
    const { field, message } = formErrorOf(err);
    return { field, message };
  }
}

/** Walks every user, newest first, 100 per page (needs the users:read scope). */
export async function allEmails(): Promise<string[]> {
  const emails: string[] = [];
  let pageToken = "";
  do {
    const page = await users.listUsers({ pageSize: 100, pageToken });
    emails.push(...page.users.map((u) => u.email));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return emails;
}

/** Plain Connect errors work too: code and rawMessage. */
export async function exists(id: string): Promise<boolean> {
  try {
    await users.getUser({ id });
    return true;
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) return false;
    throw err;
  }
}

/** Finds the user with this email, in any letter case (needs users:read). */
export async function findByEmail(email: string): Promise<User | undefined> {
  const { users: found } = await users.listUsers({ email });
  return found[0]; // zero or one user
}

/**
 * Renames a user without overwriting anyone else's change: the etag read
 * with the user goes back with the update (needs users:write, or the user
 * is the caller's own). Returns the user as stored now, or what to show.
 */
export async function rename(user: User, fullName: string) {
  // { user: { id, etag, fullName }, updateMask: { paths: ["full_name"] } },
  // or undefined when the name is already that.
  const request = userUpdate(user, { fullName });
  if (request === undefined) return { user };
  try {
    const { user: updated } = await users.updateUser(request);
    return { user: updated }; // its new etag is the one the next change sends
  } catch (err) {
    if (isStale(err)) {
      // failed_precondition: someone changed the user since it was read, and
      // nothing was written. Show the current version and let them decide.
      const { user: current } = await users.getUser({ id: user.id });
      return { user: current, message: formErrorOf(err).message };
    }
    // e.g. { field: "full_name", message: "Full name is required." }
    return formErrorOf(err);
  }
}

/** Erases a user if it is still the version read; false if it changed or is gone. */
export async function erase(user: User): Promise<boolean> {
  try {
    await users.deleteUser({ id: user.id, etag: user.etag });
    return true;
  } catch (err) {
    if (isStale(err) || ConnectError.from(err).code === Code.NotFound) return false;
    throw err;
  }
}
