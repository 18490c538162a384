package main

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/acme/usersd/store"
)

// config is everything usersd reads from the environment.
type config struct {
	DatabaseURL         string
	ReadDatabaseURLs    []string // streaming replicas that serve reads
	ReplicaMaxLag       time.Duration
	MigrateDatabaseURL  string // migrations' direct connection; empty: DatabaseURL
	RiverPollOnly       bool
	CreateBatch         bool // group commit of creates; CREATE_BATCH=off is a diagnostic
	Bind                string
	MaxConns            int32
	MinConns            int32
	AcquireTimeout      time.Duration
	RequestTimeout      time.Duration
	ShutdownDrain       time.Duration
	ShutdownTimeout     time.Duration
	CORSOrigins         []string
	LogLevel            slog.Level
	LogFormat           string
	SMTPURL             string
	MailFrom            string
	RiverWorkers        int
	EventRetention      time.Duration
	WebhookAllowPrivate bool
	RiverUIUser         string
	RiverUIPassword     string
	WebDir              string
	PprofBind           string
	MetricsBind         string

	AuthIssuer     string
	AuthAudience   string
	AuthJWKSURL    string
	AuthDisabled   bool
	WebClientID    string
	RateLimitRPS   int
	RateLimitIPRPS int
	TrustedProxies []netip.Prefix
}

// defaultBind is where usersd listens without BIND.
const defaultBind = "0.0.0.0:8000"

// loadConfig reads the configuration; an error names the variable at fault.
func loadConfig(getenv func(string) string) (config, error) {
	p := parser{getenv: getenv}
	c := config{
		DatabaseURL:         getenv("DATABASE_URL"),
		MigrateDatabaseURL:  getenv("MIGRATE_DATABASE_URL"),
		RiverPollOnly:       p.bool("RIVER_POLL_ONLY"),
		CreateBatch:         p.onOff("CREATE_BATCH", true),
		Bind:                cmp.Or(getenv("BIND"), defaultBind),
		MaxConns:            int32(p.int("DB_MAX_CONNS", 20, 1, 10000)),
		MinConns:            int32(p.int("DB_MIN_CONNS", 2, 0, 10000)),
		AcquireTimeout:      p.duration("DB_ACQUIRE_TIMEOUT", 5*time.Second),
		RequestTimeout:      p.duration("REQUEST_TIMEOUT", 15*time.Second),
		ShutdownDrain:       p.duration("SHUTDOWN_DRAIN", 0),
		ShutdownTimeout:     p.duration("SHUTDOWN_TIMEOUT", 20*time.Second),
		LogFormat:           cmp.Or(getenv("LOG_FORMAT"), "json"),
		SMTPURL:             getenv("SMTP_URL"),
		MailFrom:            cmp.Or(getenv("MAIL_FROM"), "usersd <no-reply@localhost>"),
		RiverWorkers:        p.int("RIVER_WORKERS", 10, 0, 10000),
		EventRetention:      p.duration("EVENT_RETENTION", 168*time.Hour),
		ReplicaMaxLag:       p.duration("REPLICA_MAX_LAG", time.Second),
		WebhookAllowPrivate: p.bool("WEBHOOK_ALLOW_PRIVATE"),
		RiverUIUser:         cmp.Or(getenv("RIVER_UI_USER"), "admin"),
		RiverUIPassword:     getenv("RIVER_UI_PASSWORD"),
		WebDir:              getenv("WEB_DIR"),
		PprofBind:           getenv("PPROF_BIND"),
		MetricsBind:         getenv("METRICS_BIND"),
		AuthIssuer:          getenv("AUTH_ISSUER"),
		AuthAudience:        getenv("AUTH_AUDIENCE"),
		AuthJWKSURL:         getenv("AUTH_JWKS_URL"),
		AuthDisabled:        p.bool("AUTH_DISABLED"),
		WebClientID:         cmp.Or(getenv("WEB_CLIENT_ID"), "usersd-web"),
		RateLimitRPS:        p.int("RATE_LIMIT_RPS", 100, 0, 1_000_000),
		RateLimitIPRPS:      p.int("RATE_LIMIT_IP_RPS", 20, 0, 1_000_000),
	}
	if p.err != nil {
		return c, p.err
	}
	if c.DatabaseURL == "" {
		return c, fmt.Errorf("DATABASE_URL is required (a PostgreSQL URL such as postgres://user@localhost:5432/usersd; `make run` provides a local one)")
	}
	if _, err := store.ParseConfig(c.DatabaseURL); err != nil {
		return c, fmt.Errorf("DATABASE_URL is malformed: %v", err) // pgconn redacts the password
	}
	for u := range strings.SplitSeq(getenv("READ_DATABASE_URLS"), ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if _, err := store.ParseConfig(u); err != nil {
			return c, fmt.Errorf("READ_DATABASE_URLS has a malformed URL: %v", err) // pgconn redacts the password
		}
		c.ReadDatabaseURLs = append(c.ReadDatabaseURLs, u)
	}
	if c.MigrateDatabaseURL != "" {
		if _, err := store.ParseConfig(c.MigrateDatabaseURL); err != nil {
			return c, fmt.Errorf("MIGRATE_DATABASE_URL is malformed: %v", err)
		}
	}
	if _, port, err := net.SplitHostPort(c.Bind); err != nil {
		return c, fmt.Errorf("BIND must be host:port, such as 0.0.0.0:8000: %v", err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return c, fmt.Errorf("BIND has an invalid port %q", port)
	}
	if c.WebDir != "" {
		if fi, err := os.Stat(c.WebDir); err != nil || !fi.IsDir() {
			return c, fmt.Errorf("WEB_DIR %q is not a directory", c.WebDir)
		}
	}
	if c.MinConns > c.MaxConns {
		return c, fmt.Errorf("DB_MIN_CONNS (%d) must not exceed DB_MAX_CONNS (%d)", c.MinConns, c.MaxConns)
	}
	if c.RequestTimeout <= 0 || c.AcquireTimeout <= 0 || c.ShutdownTimeout <= 0 {
		return c, fmt.Errorf("REQUEST_TIMEOUT, DB_ACQUIRE_TIMEOUT and SHUTDOWN_TIMEOUT must be positive")
	}
	if c.EventRetention < time.Minute {
		return c, fmt.Errorf("EVENT_RETENTION must be at least 1m, such as 168h, not %s", c.EventRetention)
	}
	if err := c.LogLevel.UnmarshalText([]byte(cmp.Or(getenv("LOG_LEVEL"), "info"))); err != nil {
		return c, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, not %q", getenv("LOG_LEVEL"))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return c, fmt.Errorf("LOG_FORMAT must be json or text, not %q", c.LogFormat)
	}
	for o := range strings.SplitSeq(getenv("CORS_ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.CORSOrigins = append(c.CORSOrigins, o)
		}
	}
	for s := range strings.SplitSeq(getenv("TRUSTED_PROXIES"), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return c, fmt.Errorf("TRUSTED_PROXIES must list IP addresses or CIDR prefixes, not %q", s)
			}
			pfx = netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, pfx.Masked())
	}
	return c, nil
}

// checkAuth is the authentication set-up that serving requires: an issuer
// and an audience, or AUTH_DISABLED=true on purpose.
func (c config) checkAuth() error {
	switch {
	case c.AuthDisabled:
		return nil
	case c.AuthIssuer == "":
		return fmt.Errorf("AUTH_ISSUER is required: the OpenID issuer URL of your callers' tokens (or AUTH_DISABLED=true to run without authentication)")
	case c.AuthAudience == "":
		return fmt.Errorf("AUTH_AUDIENCE is required with AUTH_ISSUER: the aud value tokens for usersd carry")
	}
	return nil
}

// parser reads typed variables, keeping the first error.
type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) duration(name string, def time.Duration) time.Duration {
	s := p.getenv(name)
	if s == "" || p.err != nil {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		p.err = fmt.Errorf("%s must be a duration such as 5s or 250ms, not %q", name, s)
	}
	return d
}

func (p *parser) bool(name string) bool {
	s := p.getenv(name)
	if s == "" || p.err != nil {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		p.err = fmt.Errorf("%s must be true or false, not %q", name, s)
	}
	return b
}

func (p *parser) onOff(name string, def bool) bool {
	switch s := p.getenv(name); s {
	case "":
		return def
	case "on":
		return true
	case "off":
		return false
	default:
		if p.err == nil {
			p.err = fmt.Errorf("%s must be on or off, not %q", name, s)
		}
		return def
	}
}

func (p *parser) int(name string, def, lo, hi int) int {
	s := p.getenv(name)
	if s == "" || p.err != nil {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		p.err = fmt.Errorf("%s must be a whole number from %d to %d, not %q", name, lo, hi, s)
	}
	return n
}
