// The typed client factory for usersd in browsers (and anywhere fetch exists).

import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

import { UserService } from "./gen/users/v1/users_pb.js";

/** The wire protocols a browser can speak to usersd. */
export type Protocol = "connect" | "grpc-web";

/**
 * A source of access tokens, asked before every call: the token to send,
 * or undefined to send none (signed out). It may be async, e.g. to refresh
 * a token that is about to expire.
 */
export type TokenSource = () => string | undefined | Promise<string | undefined>;

export interface UserClientOptions {
  /** "connect" (the default) or "grpc-web". */
  protocol?: Protocol;
  /**
   * Send protobuf binary instead of JSON. Defaults to false for Connect
   * (JSON is readable in the browser's network panel) and to true for
   * gRPC-Web (whose JSON flavour few servers other than Connect's accept).
   */
  binary?: boolean;
  /**
   * The access token for usersd, asked before every call and sent as
   * `Authorization: Bearer <token>` (on Connect and gRPC-Web alike). When
   * it is missing or returns undefined, calls go without a token, which
   * usersd answers with unauthenticated unless its authentication is off.
   */
  token?: TokenSource;
  /** Deadline of each call in milliseconds, sent to the server too. Default 10 s. */
  timeoutMs?: number;
  /** Interceptors run around every call, after the one that adds the token. */
  interceptors?: Interceptor[];
  /** The fetch to use; defaults to globalThis.fetch. */
  fetch?: typeof globalThis.fetch;
}

/** A client for users.v1.UserService: createUser, getUser, listUsers, updateUser, deleteUser. */
export type UserClient = Client<typeof UserService>;

/**
 * bearerToken is a Connect interceptor that sets `Authorization: Bearer
 * <token>` on every request whose token source returns a token. It works
 * with any Connect-ES transport (connect-web, connect-node; Connect, gRPC,
 * gRPC-Web).
 */
export function bearerToken(token: TokenSource): Interceptor {
  return (next) => async (req) => {
    const t = await token();
    if (t !== undefined && t !== "") {
      req.header.set("Authorization", `Bearer ${t}`);
    }
    return next(req);
  };
}

/**
 * createUserClient returns a client for the usersd at baseUrl, e.g.
 * "https://api.example.com" or the page's own origin.
 */
export function createUserClient(baseUrl: string, options: UserClientOptions = {}): UserClient {
  const protocol = options.protocol ?? "connect";
  const common = {
    baseUrl: baseUrl.replace(/\/+$/, ""),
    defaultTimeoutMs: options.timeoutMs ?? 10_000,
    interceptors: [...(options.token ? [bearerToken(options.token)] : []), ...(options.interceptors ?? [])],
    ...(options.fetch ? { fetch: options.fetch } : {}),
  };
  switch (protocol) {
    case "connect":
      return createClient(UserService, createConnectTransport({ ...common, useBinaryFormat: options.binary ?? false }));
    case "grpc-web":
      return createClient(UserService, createGrpcWebTransport({ ...common, useBinaryFormat: options.binary ?? true }));
    default:
      throw new Error(`createUserClient: unknown protocol ${String(protocol satisfies never)}`);
  }
}
