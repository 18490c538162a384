package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	usersdconfig "github.com/acme/usersd/config"

	"github.com/jackc/pgx/v5"
	"github.com/joho/godotenv"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/acme/usersd/auth"
	"github.com/acme/usersd/jobs"
	"github.com/acme/usersd/migrations"
	"github.com/acme/usersd/server"
	"github.com/acme/usersd/store"
	"github.com/acme/usersd/users"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

const usage = "usage: usersd [serve | migrate | healthcheck | version]"

// run is usersd. It returns when ctx is cancelled and shutdown is done, or
// on a start-up error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "usersd", versionString())
		return nil
	case "serve", "migrate", "healthcheck":
	default:
		return errors.New(usage)
	}

	getenv, err := withDotEnv(getenv)
	if err != nil {
		return err
	}
	if cmd == "healthcheck" {
		return healthcheck(ctx, cmp.Or(getenv("BIND"), usersdconfig.Default("BIND")))
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stdout)
	if cmd == "migrate" {
		return migrateOnly(ctx, cfg, log)
	}
	if err := cfg.checkAuth(); err != nil {
		return err
	}
	mailer, err := jobs.NewMailer(cfg.SMTPURL, cfg.MailFrom, log)
	if err != nil {
		return err
	}
	// Every port first, before the database or the jobs are touched: one
	// that is taken stops start-up at once, with one line that names it.
	lns, err := listen(cfg)
	if err != nil {
		return err
	}
	defer lns.close()

	tel, err := newTelemetry(ctx, getenv)
	if err != nil {
		return err
	}
	defer func() {
		// Flush spans still buffered; bounded so a dead collector cannot hang exit.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.shutdown(fctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}()

	a, err := newApp(ctx, cfg, log, tel, mailer)
	if err != nil {
		return err
	}
	defer a.close()

	srv := server.NewHTTPServer(a.handler, log)
	// The server bounds reading every request, body included, by the
	// request timeout itself, so the handler need not set a read deadline
	// per request (see server.withReadDeadline).
	srv.ReadTimeout = cfg.RequestTimeout
	side := sideServers(lns, tel, log)
	dbcfg := a.db.Pool.Config().ConnConfig
	log.Info("usersd listening",
		"addr", "http://"+lns.api.Addr().String(),
		"database", fmt.Sprintf("%s@%s:%d/%s", dbcfg.User, dbcfg.Host, dbcfg.Port, dbcfg.Database),
		"river_workers", cfg.RiverWorkers,
		"version", versionString(),
	)

	serveErr := make(chan error, 1+len(side))
	go func() { serveErr <- srv.Serve(lns.api) }()
	for _, s := range side {
		go func() { serveErr <- s.serve() }()
	}
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return shutdown(cfg, log, a, srv, side)
}

func migrateOnly(ctx context.Context, cfg config, log *slog.Logger) error {
	if err := migrate(ctx, cfg, log); err != nil {
		return err
	}
	log.Info("migrations applied")
	return nil
}

// migrate applies the app's and River's migrations on a small pool of
// its own: MIGRATE_DATABASE_URL when set (a direct connection, since the
// advisory lock that serialises replicas is a session lock, which a
// transaction-pooling PgBouncer would not keep), else DATABASE_URL.
func migrate(ctx context.Context, cfg config, log *slog.Logger) error {
	db, err := store.Open(ctx, store.Config{URL: cmp.Or(cfg.MigrateDatabaseURL, cfg.DatabaseURL), MaxConns: 2, AcquireTimeout: cfg.AcquireTimeout})
	if err != nil {
		return err
	}
	defer db.Close()
	return migrations.Apply(ctx, db.Pool, log)
}

// healthcheck is `usersd healthcheck`, for container HEALTHCHECKs and
// exec probes: it asks the usersd listening on bind for GET /healthz and
// succeeds only on 200.
func healthcheck(ctx context.Context, bind string) error {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return fmt.Errorf("BIND %q: %v", bind, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address: ask on loopback
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %s: %v", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}

// app is usersd wired up, short of the listener: pool (migrated), River,
// store and the HTTP handler.
type app struct {
	svc      *users.Service
	db       *store.DB
	verifier *auth.Verifier // nil when authentication is off
	river    *river.Client[pgx.Tx]
	health   *server.Health
	handler  http.Handler
	closers  []func()
}

// newApp builds usersd from its configuration. It starts River's workers
// (when RIVER_WORKERS > 0) but not the HTTP server.
func newApp(ctx context.Context, cfg config, log *slog.Logger, tel *telemetry, mailer jobs.Mailer) (_ *app, err error) {
	a := &app{}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	a.db, err = store.Open(ctx, store.Config{
		URL: cfg.DatabaseURL, MaxConns: cfg.MaxConns, MinConns: cfg.MinConns, AcquireTimeout: cfg.AcquireTimeout,
		Tracer: tel.sqlTracer(),
	})
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.db.Close)
	if err := tel.recordPoolStats(a.db); err != nil {
		return nil, err
	}
	if err := migrate(ctx, cfg, log); err != nil {
		return nil, err
	}

	// The worker needs the store and the store's create hook needs the
	// River client, which needs the worker: tie the knot here.
	welcome := &jobs.WelcomeWorker{DB: a.db, Mailer: mailer, Log: log}
	webhooks := &jobs.WebhookWorker{Client: jobs.NewWebhookClient(cfg.WebhookAllowPrivate), Log: log}
	retention := &jobs.RetentionWorker{Retention: cfg.EventRetention, Log: log}
	a.river, err = newRiverClient(cfg, a.db, log, tel, welcome, webhooks, retention)
	if err != nil {
		return nil, err
	}
	storeOpts := append(tel.storeOptions(), store.WithGroupCommit(cfg.CreateBatch), store.WithBatchTimeout(cfg.RequestTimeout))
	if len(cfg.ReadDatabaseURLs) > 0 {
		replicas, err := store.OpenReplicas(ctx, a.db, cfg.ReadDatabaseURLs, cfg.ReplicaMaxLag, store.Config{
			MaxConns: cfg.MaxConns, MinConns: cfg.MinConns, AcquireTimeout: cfg.AcquireTimeout, Tracer: tel.sqlTracer(),
		}, log)
		if err != nil {
			return nil, fmt.Errorf("READ_DATABASE_URLS: %w", err)
		}
		a.closers = append(a.closers, replicas.Close)
		if err := tel.recordReplicaStats(replicas); err != nil {
			return nil, err
		}
		storeOpts = append(storeOpts, store.WithReplicas(replicas))
	}
	st := store.NewUsers(a.db, jobs.WelcomeHooks(a.river), storeOpts...)
	welcome.Users = st
	webhooks.Users, retention.Users = st, st
	if cfg.RiverWorkers > 0 {
		// Not ctx: its cancellation would cancel running jobs at the first
		// signal. shutdown stops River in its turn, softly first.
		if err := a.river.Start(context.WithoutCancel(ctx)); err != nil {
			return nil, fmt.Errorf("start river: %w", err)
		}
		dctx, stopDispatch := context.WithCancel(context.WithoutCancel(ctx))
		a.closers = append(a.closers, stopDispatch)
		go (&jobs.WebhookDispatcher{Users: st, River: a.river, Interval: time.Second, Log: log}).Run(dctx)
	}

	mounts := map[string]http.Handler{}
	if cfg.MetricsBind == "" {
		mounts["GET /metrics"] = tel.metrics
	}
	if cfg.RiverUIPassword != "" {
		uiCtx, stopUI := context.WithCancel(context.WithoutCancel(ctx))
		a.closers = append(a.closers, stopUI)
		ui, err := newRiverUI(uiCtx, cfg, a.river, log)
		if err != nil {
			return nil, err
		}
		mounts[riverUIPrefix+"/"] = ui // behind its own basic auth
	}

	a.verifier, err = newVerifier(cfg, log)
	if err != nil {
		return nil, err
	}
	if a.verifier != nil {
		a.closers = append(a.closers, a.verifier.Close)
	}

	a.health = server.NewHealth(a.db.Ping)
	a.svc = users.New(st, users.Options{NoteUser: server.NoteUser, AllowPrivateWebhooks: cfg.WebhookAllowPrivate})
	a.closers = append(a.closers, a.svc.Close)
	a.handler, err = server.New(a.svc, a.health, server.Options{
		Logger: log, RequestTimeout: cfg.RequestTimeout, CORSOrigins: cfg.CORSOrigins, WebDir: cfg.WebDir,
		Mounts: mounts, TracerProvider: tel.tp, MeterProvider: tel.mp,
		Verifier:       a.verifier,
		WebAuth:        server.WebAuth{Issuer: cfg.AuthIssuer, ClientID: cfg.WebClientID, Scope: "openid " + users.ScopeRead + " " + users.ScopeWrite},
		RateLimitRPS:   cfg.RateLimitRPS,
		RateLimitIPRPS: cfg.RateLimitIPRPS,
		TrustedProxies: cfg.TrustedProxies,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// newVerifier starts loading the issuer's keys in the background; nil
// when authentication is off, which is said loudly.
func newVerifier(cfg config, log *slog.Logger) (*auth.Verifier, error) {
	if cfg.AuthDisabled {
		log.Warn("AUTH_DISABLED=true: authentication is OFF; anyone who reaches this port can read and create users")
		if cfg.AuthIssuer != "" {
			log.Warn("AUTH_ISSUER is ignored while AUTH_DISABLED=true", "auth_issuer", cfg.AuthIssuer)
		}
		return nil, nil
	}
	v, err := auth.NewVerifier(auth.Config{Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience, JWKSURL: cfg.AuthJWKSURL, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("AUTH_ISSUER / AUTH_JWKS_URL: %w", err)
	}
	return v, nil
}

// close releases what newApp acquired, last first.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// shutdown runs the order of docs/design.md inside SHUTDOWN_TIMEOUT:
// readiness off, drain, the HTTP servers, River; the pool closes as run
// returns.
func shutdown(cfg config, log *slog.Logger, a *app, srv *http.Server, side []sideServer) error {
	log.Info("shutting down", "drain", cfg.ShutdownDrain, "timeout", cfg.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()

	a.health.SetShuttingDown()
	select {
	case <-time.After(cfg.ShutdownDrain):
	case <-ctx.Done():
	}
	// Watches never end by themselves: end them (their clients reconnect
	// to another replica) so that the server can drain.
	a.svc.Close()

	var errs []error
	if err := srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		_ = srv.Close()
	}
	for _, s := range side {
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
	}

	if cfg.RiverWorkers > 0 {
		// Running jobs get a soft-stop window that leaves a margin of the
		// budget for cancelling them.
		deadline, _ := ctx.Deadline()
		margin := min(time.Until(deadline)/4, 2*time.Second)
		soft, cancelSoft := context.WithDeadline(ctx, deadline.Add(-margin))
		err := a.river.Stop(soft)
		cancelSoft()
		if err != nil {
			log.Warn("jobs still running after the soft stop; cancelling them", "err", err)
			if err := a.river.StopAndCancel(ctx); err != nil {
				errs = append(errs, fmt.Errorf("river stop: %w", err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("shutdown complete")
	return nil
}

// newRiverClient builds the River client on the shared pool. With
// RIVER_WORKERS=0 it only inserts jobs.
func newRiverClient(cfg config, db *store.DB, log *slog.Logger, tel *telemetry, welcome *jobs.WelcomeWorker, webhooks *jobs.WebhookWorker, retention *jobs.RetentionWorker) (*river.Client[pgx.Tx], error) {
	rc := &river.Config{
		Logger:     log,
		Middleware: tel.riverMiddleware(),
		// A job whose outcome could not be recorded (say, PostgreSQL went
		// away) is retried after this, not after River's default hour.
		RescueStuckJobsAfter: 5 * time.Minute,
		// River fetches at most once per cooldown (default 100 ms), up to
		// RIVER_WORKERS jobs each time: 20 ms lifts the ceiling of 10
		// workers from ~100 to ~500 mails a second.
		FetchCooldown: 20 * time.Millisecond,
		// Behind PgBouncer in transaction pooling LISTEN cannot work: poll.
		PollOnly: cfg.RiverPollOnly,
	}
	if cfg.RiverWorkers > 0 {
		workers := river.NewWorkers()
		river.AddWorker(workers, welcome)
		river.AddWorker(workers, webhooks)
		river.AddWorker(workers, retention)
		rc.Workers = workers
		rc.PeriodicJobs = []*river.PeriodicJob{jobs.RetentionJob()}
		rc.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.RiverWorkers}}
	}
	client, err := river.NewClient(riverpgxv5.New(db.Pool), rc)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}
	return client, nil
}

// withDotEnv layers a .env file in the working directory under the real
// environment, which wins. The OpenTelemetry SDK and its exporters read
// OTEL_* variables from the process environment only, so .env's OTEL_*
// variables that the environment does not set are exported into it.
func withDotEnv(getenv func(string) string) (func(string) string, error) {
	vars, err := godotenv.Read(".env")
	if errors.Is(err, os.ErrNotExist) {
		return getenv, nil
	}
	if err != nil {
		return nil, fmt.Errorf(".env: %w", err)
	}
	for k, v := range vars {
		if strings.HasPrefix(k, "OTEL_") && getenv(k) == "" {
			if err := os.Setenv(k, v); err != nil {
				return nil, fmt.Errorf(".env: %s: %w", k, err)
			}
		}
	}
	return func(k string) string { return cmp.Or(getenv(k), vars[k]) }, nil
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			a.Value = slog.StringValue(a.Value.Duration().String())
		}
		return a
	}}
	if cfg.LogFormat == "text" {
		return slog.New(traceHandler{slog.NewTextHandler(w, opts)})
	}
	return slog.New(traceHandler{slog.NewJSONHandler(w, opts)})
}
