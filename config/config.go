// Package config is the one definition of the environment variables
// usersd reads: their names, defaults and meaning. cmd/usersd takes its
// defaults from it (and a test holds its reads to it), docs/configuration.md
// is generated from it (make generate), and the Kubernetes check compares
// the manifests with it. It imports nothing, so every tool can use it.
package config

import "strings"

// Variable is one environment variable.
type Variable struct {
	Name string
	// Default is the value an unset variable has, as it would be written;
	// "" means empty, whose meaning Unset says.
	Default string
	// Unset says what an empty or unset variable means, when that is not
	// just Default.
	Unset   string
	Meaning string
	// Secret marks a credential (or a URL that may hold one): it comes
	// from a secret store (the Kubernetes Secret), never from a ConfigMap.
	Secret bool
	// Group is the heading the variable is listed under.
	Group string
}

// Groups, in the order the documentation lists them.
const (
	Database    = "Database"
	Serving     = "Serving"
	Auth        = "Authentication and limits"
	Jobs        = "Jobs, mail and the change feed"
	Observing   = "Logs, metrics and profiling"
	Development = "The web page"
)

// Variables are every variable usersd reads, OTEL_* standing for the
// standard OpenTelemetry variables.
var Variables = []Variable{
	{Name: "DATABASE_URL", Group: Database, Unset: "none: required (`make run` provides one)", Secret: true,
		Meaning: "pgx connection string of the primary; through PgBouncer in transaction pooling add `default_query_exec_mode=exec` (PgBouncer does not keep prepared statements across transactions)"},
	{Name: "READ_DATABASE_URLS", Group: Database, Unset: "every read on `DATABASE_URL`", Secret: true,
		Meaning: "comma-separated URLs of streaming replicas (hot standbys) of the primary that serve reads (docs/operations.md, Read replicas)"},
	{Name: "REPLICA_MAX_LAG", Group: Database, Default: "1s",
		Meaning: "a replica further behind the primary's writes than this serves no reads without a consistency token"},
	{Name: "MIGRATE_DATABASE_URL", Group: Database, Unset: "`DATABASE_URL`", Secret: true,
		Meaning: "a direct PostgreSQL URL for the migrations (the app's and River's, under a session advisory lock that transaction pooling would lose); set it when `DATABASE_URL` goes through PgBouncer"},
	{Name: "DB_MAX_CONNS", Group: Database, Default: "20", Meaning: "pool size: most connections, per database (the primary, and each replica)"},
	{Name: "DB_MIN_CONNS", Group: Database, Default: "2", Meaning: "pool size: connections kept open"},
	{Name: "DB_ACQUIRE_TIMEOUT", Group: Database, Default: "5s", Meaning: "longest wait for a pooled connection before `unavailable`"},
	{Name: "CREATE_BATCH", Group: Database, Default: "on",
		Meaning: "`off` gives every CreateUser its own transaction instead of group commit (a diagnostic, for comparing; docs/performance.md)"},

	{Name: "BIND", Group: Serving, Default: "0.0.0.0:8000", Meaning: "listen address (HTTP/1.1 and cleartext HTTP/2)"},
	{Name: "REQUEST_TIMEOUT", Group: Serving, Default: "15s", Meaning: "server-side deadline of one request, unless the client asked for less"},
	{Name: "SHUTDOWN_DRAIN", Group: Serving, Default: "0s", Meaning: "how long readiness reports 503 before the listener closes (set >0 behind a load balancer)"},
	{Name: "SHUTDOWN_TIMEOUT", Group: Serving, Default: "20s", Meaning: "upper bound on the whole shutdown after SIGTERM"},
	{Name: "CORS_ALLOWED_ORIGINS", Group: Serving, Unset: "no cross-origin access", Meaning: "comma-separated origins allowed to call from a browser; `*` for development only"},
	{Name: "TRUSTED_PROXIES", Group: Serving, Unset: "none", Meaning: "comma-separated IPs or CIDRs of proxies whose `X-Forwarded-For` names the client"},

	{Name: "AUTH_ISSUER", Group: Auth, Unset: "none: required unless `AUTH_DISABLED=true` (`make run` starts a development issuer)",
		Meaning: "OpenID issuer URL; tokens' `iss` must equal it, and `jwks_uri` is discovered from it"},
	{Name: "AUTH_AUDIENCE", Group: Auth, Unset: "none: required with `AUTH_ISSUER`", Meaning: "the `aud` every token must carry"},
	{Name: "AUTH_JWKS_URL", Group: Auth, Unset: "discovered from `AUTH_ISSUER`", Meaning: "explicit JWKS URL; wins over discovery"},
	{Name: "AUTH_DISABLED", Group: Auth, Default: "false", Meaning: "`true` serves without authentication (a warning is logged)"},
	{Name: "RATE_LIMIT_RPS", Group: Auth, Default: "100", Meaning: "requests a second per principal (token subject), burst twice that; `0` turns it off"},
	{Name: "RATE_LIMIT_IP_RPS", Group: Auth, Default: "20", Meaning: "requests a second per client IP for requests without a valid token, burst twice that; `0` turns it off"},

	{Name: "RIVER_WORKERS", Group: Jobs, Default: "10", Meaning: "concurrent job workers (welcome mail, webhook deliveries, retention); `0` runs an API-only replica that inserts jobs but works none"},
	{Name: "RIVER_POLL_ONLY", Group: Jobs, Default: "false",
		Meaning: "`true` runs River without LISTEN/NOTIFY (needed through PgBouncer's transaction pooling): new jobs are found by polling, within about a second"},
	{Name: "RIVER_UI_USER", Group: Jobs, Default: "admin", Meaning: "user name of River UI's basic auth"},
	{Name: "RIVER_UI_PASSWORD", Group: Jobs, Unset: "River UI off", Secret: true, Meaning: "turns on River UI at `/riverui/` behind basic auth"},
	{Name: "SMTP_URL", Group: Jobs, Unset: "the development mailer, which sends nothing (required in production)", Secret: true,
		Meaning: "`smtp://user:pass@host:587` (STARTTLS when offered) or `smtps://user:pass@host:465`"},
	{Name: "MAIL_FROM", Group: Jobs, Default: "usersd <no-reply@localhost>", Meaning: "sender of the welcome mail"},
	{Name: "EVENT_RETENTION", Group: Jobs, Default: "168h",
		Meaning: "how long the change feed keeps events; older ones are deleted (at start-up and every minute), and a cursor older than what is kept answers `out_of_range` / 410"},
	{Name: "WEBHOOK_ALLOW_PRIVATE", Group: Jobs, Default: "false",
		Meaning: "`true` lets webhooks reach loopback, private and link-local addresses (development and tests only: off, a webhook cannot be pointed at your internal network)"},

	{Name: "LOG_LEVEL", Group: Observing, Default: "info", Meaning: "slog level: `debug`, `info`, `warn` or `error`"},
	{Name: "LOG_FORMAT", Group: Observing, Default: "json", Meaning: "`json` or `text`"},
	{Name: "METRICS_BIND", Group: Observing, Unset: "`/metrics` on `BIND`", Meaning: "serve `/metrics` on this separate address instead"},
	{Name: "PPROF_BIND", Group: Observing, Unset: "off", Meaning: "serve `net/http/pprof` on this separate address (for profiling only)"},
	{Name: "OTEL_*", Group: Observing, Unset: "traces off", Meaning: "the standard OpenTelemetry variables (`OTEL_TRACES_EXPORTER=otlp`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...); docs/operations.md"},

	{Name: "WEB_DIR", Group: Development, Unset: "no page", Meaning: "directory of the built demo page, served at `/` (`make run` sets it)"},
	{Name: "WEB_CLIENT_ID", Group: Development, Default: "usersd-web", Meaning: "the OAuth client id the demo page signs in with"},
}

// Lookup returns the variable named name; it panics for a name not in
// Variables, which is a mistake in usersd's code.
func Lookup(name string) Variable {
	for _, v := range Variables {
		if v.Name == name || strings.HasSuffix(v.Name, "*") && strings.HasPrefix(name, strings.TrimSuffix(v.Name, "*")) {
			return v
		}
	}
	panic("config: " + name + " is not in config.Variables")
}

// Default is the default value of variable name (see Lookup).
func Default(name string) string { return Lookup(name).Default }

// Names are the variables' names, OTEL_* included as written.
func Names() []string {
	out := make([]string, len(Variables))
	for i, v := range Variables {
		out[i] = v.Name
	}
	return out
}
