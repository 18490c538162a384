// The README's example: how a browser app calls usersd. Kept here so that
// `npm run typecheck` compiles it.

import { Code, ConnectError } from "@connectrpc/connect";

import { createUserClient, formErrorOf, isUnauthenticated } from "./index.js";

/** The access token your sign-in got (see "Tokens" below); undefined when signed out. */
let accessToken: string | undefined;

export function setAccessToken(token: string | undefined): void {
  accessToken = token;
}

// The token source is asked before every call, so a new token is used at
// once; each call carries "Authorization: Bearer <token>" when it returns one.
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
