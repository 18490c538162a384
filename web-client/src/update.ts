// Building an UpdateUser request from a user as it was loaded and the
// values a form holds now.

import type { MessageInitShape } from "@bufbuild/protobuf";

import type { User, UpdateUserRequestSchema } from "./gen/users/v1/users_pb.js";

/** The paths of UpdateUser's update_mask: the fields a user may change. */
export type UpdatablePath = "email" | "full_name";

/** The values an edit form holds; a field left out is not being edited. */
export interface UserEdit {
  email?: string;
  fullName?: string;
}

/** The request userUpdate builds, ready for UserClient.updateUser. */
export type UpdateUserInit = MessageInitShape<typeof UpdateUserRequestSchema>;

/**
 * userUpdate returns the UpdateUser request that changes loaded into
 * edited, or undefined when nothing changed. Values are compared (and sent)
 * without surrounding space, which usersd removes anyway. The request names
 * the user by loaded.id, sends loaded.etag (so usersd refuses with
 * failed_precondition if someone changed the user since it was loaded)
 * and has an update_mask of exactly the fields that changed, holding only
 * their new values. A field emptied on purpose is a change too: usersd
 * then answers invalid_argument for it ("Email is required.").
 */
export function userUpdate(loaded: Pick<User, "id" | "etag" | "email" | "fullName">, edited: UserEdit): UpdateUserInit | undefined {
  const paths: UpdatablePath[] = [];
  const user: { id: string; etag: string; email?: string; fullName?: string } = { id: loaded.id, etag: loaded.etag };
  const email = edited.email?.trim();
  if (email !== undefined && email !== loaded.email) {
    paths.push("email");
    user.email = email;
  }
  const fullName = edited.fullName?.trim();
  if (fullName !== undefined && fullName !== loaded.fullName) {
    paths.push("full_name");
    user.fullName = fullName;
  }
  if (paths.length === 0) return undefined;
  return { user, updateMask: { paths } };
}
