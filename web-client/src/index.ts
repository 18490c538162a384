// @acme/usersd-web-client: a typed Connect-ES client for usersd.

export {
  bearerToken,
  CONSISTENCY_HEADER,
  consistencyInterceptor,
  createUserClient,
  type ConsistencyInterceptor,
  type Protocol,
  type TokenSource,
  type UserClient,
  type UserClientOptions,
} from "./client.js";
export {
  diagnoseNetworkError,
  formErrorOf,
  isNetworkError,
  isPermissionDenied,
  isStale,
  isUnauthenticated,
  STALE_MESSAGE,
  type FormError,
  type FormField,
} from "./errors.js";
export { userUpdate, type UpdatablePath, type UpdateUserInit, type UserEdit } from "./update.js";
export { BadRequestSchema, FieldViolationSchema, type BadRequest, type FieldViolation } from "./error_details.js";
export * from "./gen/users/v1/users_pb.js";
