// The typed client factory for usersd in browsers (and anywhere fetch exists).

import { ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
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
  /**
   * Read-your-writes (see consistencyInterceptor): by default each client
   * keeps its own Consistency-Token. Pass one consistencyInterceptor() to
   * several clients (e.g. one per protocol) so that a write through one is
   * seen by reads through the others; false sends none.
   */
  consistency?: ConsistencyInterceptor | false;
  /** Interceptors run around every call, after the ones that add the tokens. */
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

/** The header that carries usersd's consistency tokens, both ways. */
export const CONSISTENCY_HEADER = "Consistency-Token";

/**
 * An interceptor that gives its calls read-your-writes (see
 * consistencyInterceptor), and the token it holds.
 */
export interface ConsistencyInterceptor extends Interceptor {
  /** The token the next call sends; undefined until a write has answered. */
  readonly token: string | undefined;
}

/**
 * consistencyInterceptor returns a Connect interceptor that remembers the
 * Consistency-Token of the last answer that carried one and sends it on
 * every later call, unless the call sets that header itself.
 *
 * usersd may answer reads from replicas that lag behind the primary; every
 * write (CreateUser, UpdateUser, DeleteUser, ...) answers with a token
 * naming its commit, and a read that sends it back is answered only from
 * data that includes that write. So the clients sharing one interceptor
 * never read something older than their own last write, on any protocol,
 * unary calls and streams (the change feed) alike.
 *
 * Tokens are opaque, so "last" is the write answered last: after writes in
 * sequence, the newest. Writes that overlap may commit in the other order,
 * and then a read is only sure to see the one answered last; await the
 * writes a read must see before starting the next one.
 *
 * It works with any Connect-ES transport (connect-web, connect-node;
 * Connect, gRPC, gRPC-Web). In a browser calling another origin, usersd's
 * CORS settings expose the header and allow it on requests.
 */
export function consistencyInterceptor(): ConsistencyInterceptor {
  let token: string | undefined;
  // Errors count too: their metadata holds the answer's headers.
  const keep = (header: Headers) => {
    const t = header.get(CONSISTENCY_HEADER);
    if (t !== null && t !== "") token = t;
  };
  const interceptor: Interceptor = (next) => async (req) => {
    if (token !== undefined && !req.header.has(CONSISTENCY_HEADER)) {
      req.header.set(CONSISTENCY_HEADER, token);
    }
    try {
      // For a stream this resolves with the response headers, before its messages.
      const res = await next(req);
      keep(res.header);
      return res;
    } catch (err) {
      if (err instanceof ConnectError) keep(err.metadata);
      throw err;
    }
  };
  return Object.defineProperty(interceptor, "token", { get: () => token, enumerable: true }) as ConsistencyInterceptor;
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
    interceptors: [
      ...(options.token ? [bearerToken(options.token)] : []),
      ...(options.consistency === false ? [] : [options.consistency ?? consistencyInterceptor()]),
      ...(options.interceptors ?? []),
    ],
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
