// The README's example: how a browser app calls usersd. Kept here so that
// `npm run typecheck` compiles it.

import { Code, ConnectError } from "@connectrpc/connect";

import { createUserClient, formErrorOf } from "./index.js";

const users = createUserClient("https://api.example.com", { protocol: "connect" });

/** Creates a user; returns its id, or the field and message to show. */
export async function signUp(email: string, fullName: string) {
  try {
    const { user } = await users.createUser({ email, fullName });
    return { id: user?.id ?? "" };
  } catch (err) {
    // e.g. { field: "email", message: "A user with this email already exists." }
    const { field, message } = formErrorOf(err);
    return { field, message };
  }
}

/** Walks every user, newest first, 100 per page. */
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
