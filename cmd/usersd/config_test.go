package main

import (
	"io"
	"strings"
	"testing"
	"time"

	usersdconfig "github.com/acme/usersd/config"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string {
		m := map[string]string{"DATABASE_URL": "postgres://u:secret@localhost:5432/db"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := loadConfig(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Bind != "0.0.0.0:8000" || c.MaxConns != 20 || c.MinConns != 2 || c.AcquireTimeout != 5*time.Second ||
		c.RequestTimeout != 15*time.Second || c.ShutdownDrain != 0 || c.ShutdownTimeout != 20*time.Second ||
		c.RiverWorkers != 10 || c.LogFormat != "json" || len(c.CORSOrigins) != 0 {
		t.Errorf("defaults = %+v", c)
	}
	c, err = loadConfig(env("CORS_ALLOWED_ORIGINS", " http://a.example , http://b.example,", "SHUTDOWN_DRAIN", "250ms"))
	if err != nil || len(c.CORSOrigins) != 2 || c.CORSOrigins[1] != "http://b.example" || c.ShutdownDrain != 250*time.Millisecond {
		t.Errorf("got %+v, %v", c, err)
	}

	bad := []struct {
		env  func(string) string
		name string // the variable the error must name
	}{
		{func(string) string { return "" }, "DATABASE_URL"},
		{env("DATABASE_URL", "postgres://u:secret@host:notaport/db"), "DATABASE_URL"},
		{env("BIND", "8000"), "BIND"},
		{env("BIND", "localhost:99999"), "BIND"},
		{env("REQUEST_TIMEOUT", "15"), "REQUEST_TIMEOUT"},
		{env("SHUTDOWN_TIMEOUT", "-1s"), "SHUTDOWN_TIMEOUT"},
		{env("DB_ACQUIRE_TIMEOUT", "soon"), "DB_ACQUIRE_TIMEOUT"},
		{env("DB_MAX_CONNS", "0"), "DB_MAX_CONNS"},
		{env("DB_MIN_CONNS", "30"), "DB_MIN_CONNS"},
		{env("RIVER_WORKERS", "-1"), "RIVER_WORKERS"},
		{env("LOG_LEVEL", "loud"), "LOG_LEVEL"},
		{env("LOG_FORMAT", "xml"), "LOG_FORMAT"},
		{env("WEB_DIR", "/does/not/exist"), "WEB_DIR"},
		{env("MIGRATE_DATABASE_URL", "postgres://u:secret@host:notaport/db"), "MIGRATE_DATABASE_URL"},
		{env("RIVER_POLL_ONLY", "sometimes"), "RIVER_POLL_ONLY"},
		{env("CREATE_BATCH", "maybe"), "CREATE_BATCH"},
		{env("TRUSTED_PROXIES", "10.0.0.0/8, not-an-ip"), "TRUSTED_PROXIES"},
		{env("RATE_LIMIT_RPS", "-1"), "RATE_LIMIT_RPS"},
	}
	for _, tc := range bad {
		_, err := loadConfig(tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.name)
			continue
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %q must be one line without the password", tc.name, err)
		}
	}
}

func TestRunRejectsBadMailConfig(t *testing.T) {
	t.Parallel()
	for name, kv := range map[string][2]string{
		"SMTP_URL":  {"SMTP_URL", "http://mail.example:25"},
		"MAIL_FROM": {"MAIL_FROM", "not an address"},
	} {
		getenv := func(k string) string {
			switch k {
			case "DATABASE_URL":
				return "postgres://u@127.0.0.1:1/db"
			case "AUTH_DISABLED":
				return "true" // on purpose: the test is about the mail settings
			case "SMTP_URL":
				if kv[0] == "MAIL_FROM" {
					return "smtp://127.0.0.1:2525"
				}
			}
			if k == kv[0] {
				return kv[1]
			}
			return ""
		}
		err := run(t.Context(), []string{"usersd"}, getenv, io.Discard)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v, want one naming %s", name, err, name)
		}
	}
}

// TestRunRequiresAuth: serving without an issuer stops with one line that
// names the variable to set.
func TestRunRequiresAuth(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]map[string]string{
		"AUTH_ISSUER":   {},
		"AUTH_AUDIENCE": {"AUTH_ISSUER": "https://issuer.example"},
		"AUTH_DISABLED": {"AUTH_DISABLED": "yes please"},
	} {
		env["DATABASE_URL"] = "postgres://u@127.0.0.1:1/db"
		err := run(t.Context(), []string{"usersd"}, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line naming %s", name, err, name)
		}
	}
}

func TestFeedConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/db"}
	get := func(extra map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return base[k]
		}
	}
	c, err := loadConfig(get(nil))
	if err != nil || c.EventRetention != 168*time.Hour || c.WebhookAllowPrivate {
		t.Errorf("defaults: retention %s, allow private %v, %v", c.EventRetention, c.WebhookAllowPrivate, err)
	}
	c, err = loadConfig(get(map[string]string{"EVENT_RETENTION": "24h", "WEBHOOK_ALLOW_PRIVATE": "true"}))
	if err != nil || c.EventRetention != 24*time.Hour || !c.WebhookAllowPrivate {
		t.Errorf("set: retention %s, allow private %v, %v", c.EventRetention, c.WebhookAllowPrivate, err)
	}
	for name, v := range map[string]string{"EVENT_RETENTION": "10s", "WEBHOOK_ALLOW_PRIVATE": "perhaps"} {
		if _, err := loadConfig(get(map[string]string{name: v})); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: err = %v, want one naming %s", name, v, err, name)
		}
	}
	if _, err := loadConfig(get(map[string]string{"EVENT_RETENTION": "soon"})); err == nil || !strings.Contains(err.Error(), "EVENT_RETENTION") {
		t.Errorf("EVENT_RETENTION=soon: err = %v", err)
	}
}

// TestConfigReadsEveryVariable holds loadConfig to package config: it
// reads every variable defined there (but the OpenTelemetry ones, which
// the SDK reads), and nothing else; every default parses.
func TestConfigReadsEveryVariable(t *testing.T) {
	t.Parallel()
	asked := map[string]bool{}
	_, err := loadConfig(func(k string) string {
		asked[k] = true
		if k == "DATABASE_URL" {
			return "postgres://u@127.0.0.1:1/db"
		}
		return ""
	})
	if err != nil {
		t.Fatalf("the defaults do not load: %v", err)
	}
	for _, name := range usersdconfig.Names() {
		if !asked[name] && !strings.HasPrefix(name, "OTEL_") {
			t.Errorf("%s is defined in package config but usersd does not read it", name)
		}
		delete(asked, name)
	}
	for name := range asked {
		t.Errorf("usersd reads %s, which package config does not define", name)
	}
}
