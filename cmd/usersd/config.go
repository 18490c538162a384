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

	usersdconfig "github.com/acme/usersd/config"

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

// loadConfig reads the configuration; an error names the variable at
// fault. Names and defaults come from package config, the one definition
// of every variable (TestConfigReadsEveryVariable holds this to it).
func loadConfig(getenv func(string) string) (config, error) {
	p := parser{getenv: getenv}
	c := config{
		DatabaseURL:         p.str("DATABASE_URL"),
		MigrateDatabaseURL:  p.str("MIGRATE_DATABASE_URL"),
		RiverPollOnly:       p.bool("RIVER_POLL_ONLY"),
		CreateBatch:         p.onOff("CREATE_BATCH"),
		Bind:                p.str("BIND"),
		MaxConns:            int32(p.int("DB_MAX_CONNS", 1, 10000)),
		MinConns:            int32(p.int("DB_MIN_CONNS", 0, 10000)),
		AcquireTimeout:      p.duration("DB_ACQUIRE_TIMEOUT"),
		RequestTimeout:      p.duration("REQUEST_TIMEOUT"),
		ShutdownDrain:       p.duration("SHUTDOWN_DRAIN"),
		ShutdownTimeout:     p.duration("SHUTDOWN_TIMEOUT"),
		LogFormat:           p.str("LOG_FORMAT"),
		SMTPURL:             p.str("SMTP_URL"),
		MailFrom:            p.str("MAIL_FROM"),
		RiverWorkers:        p.int("RIVER_WORKERS", 0, 10000),
		EventRetention:      p.duration("EVENT_RETENTION"),
		ReplicaMaxLag:       p.duration("REPLICA_MAX_LAG"),
		WebhookAllowPrivate: p.bool("WEBHOOK_ALLOW_PRIVATE"),
		RiverUIUser:         p.str("RIVER_UI_USER"),
		RiverUIPassword:     p.str("RIVER_UI_PASSWORD"),
		WebDir:              p.str("WEB_DIR"),
		PprofBind:           p.str("PPROF_BIND"),
		MetricsBind:         p.str("METRICS_BIND"),
		AuthIssuer:          p.str("AUTH_ISSUER"),
		AuthAudience:        p.str("AUTH_AUDIENCE"),
		AuthJWKSURL:         p.str("AUTH_JWKS_URL"),
		AuthDisabled:        p.bool("AUTH_DISABLED"),
		WebClientID:         p.str("WEB_CLIENT_ID"),
		RateLimitRPS:        p.int("RATE_LIMIT_RPS", 0, 1_000_000),
		RateLimitIPRPS:      p.int("RATE_LIMIT_IP_RPS", 0, 1_000_000),
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
	for u := range strings.SplitSeq(p.str("READ_DATABASE_URLS"), ",") {
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
	if err := c.LogLevel.UnmarshalText([]byte(p.str("LOG_LEVEL"))); err != nil {
		return c, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, not %q", getenv("LOG_LEVEL"))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return c, fmt.Errorf("LOG_FORMAT must be json or text, not %q", c.LogFormat)
	}
	for o := range strings.SplitSeq(p.str("CORS_ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.CORSOrigins = append(c.CORSOrigins, o)
		}
	}
	for s := range strings.SplitSeq(p.str("TRUSTED_PROXIES"), ",") {
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

// parser reads typed variables, keeping the first error. An unset (or
// empty) variable has its default from package config.
type parser struct {
	getenv func(string) string
	err    error
}

// str is the variable's value, or its default.
func (p *parser) str(name string) string { return cmp.Or(p.getenv(name), usersdconfig.Default(name)) }

// value is the variable's value and whether it was set, or its default.
func (p *parser) value(name string) (string, bool) {
	if s := p.getenv(name); s != "" {
		return s, true
	}
	return usersdconfig.Default(name), false
}

func (p *parser) duration(name string) time.Duration {
	s, set := p.value(name)
	d, err := time.ParseDuration(s)
	if (err != nil || d < 0) && p.err == nil {
		p.err = fmt.Errorf("%s must be a duration such as 5s or 250ms, not %q", name, s)
		if !set {
			panic(p.err) // a default in package config is wrong
		}
	}
	return d
}

func (p *parser) bool(name string) bool {
	s, set := p.value(name)
	b, err := strconv.ParseBool(s)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("%s must be true or false, not %q", name, s)
		if !set {
			panic(p.err)
		}
	}
	return b
}

func (p *parser) onOff(name string) bool {
	switch s, set := p.value(name); s {
	case "on":
		return true
	case "off":
		return false
	default:
		if p.err == nil {
			p.err = fmt.Errorf("%s must be on or off, not %q", name, s)
			if !set {
				panic(p.err)
			}
		}
		return false
	}
}

func (p *parser) int(name string, lo, hi int) int {
	s, set := p.value(name)
	n, err := strconv.Atoi(s)
	if (err != nil || n < lo || n > hi) && p.err == nil {
		p.err = fmt.Errorf("%s must be a whole number from %d to %d, not %q", name, lo, hi, s)
		if !set {
			panic(p.err)
		}
	}
	return n
}
