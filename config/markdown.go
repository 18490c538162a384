package config

import (
	"fmt"
	"strings"
)

// Markdown is docs/configuration.md: every variable, by group, with its
// default and meaning. make generate writes it; make checkgenerate fails
// when the committed file differs.
func Markdown() string {
	var b strings.Builder
	b.WriteString(`# Configuration

Every environment variable usersd reads, with its default and meaning; a ` + "`.env`" + ` file in the working
directory is read too (the real environment wins). Generated from package config by ` + "`make generate`" + `: do not edit.

Bad configuration (a malformed URL, address, duration or number) stops start-up with one line naming
the variable. Variables marked *secret* hold credentials: keep them out of ConfigMaps and logs (the
Kubernetes manifests take them from the Secret ` + "`usersd-secrets`" + `).
`)
	for _, group := range []string{Database, Serving, Auth, Jobs, Observing, Development} {
		fmt.Fprintf(&b, "\n## %s\n\n| variable | default | meaning |\n|---|---|---|\n", group)
		for _, v := range Variables {
			if v.Group != group {
				continue
			}
			def := "`" + v.Default + "`"
			switch {
			case v.Default == "" && v.Unset != "":
				def = v.Unset
			case v.Default == "":
				def = "empty"
			}
			meaning := v.Meaning
			if v.Secret {
				meaning = "*secret*: " + meaning
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, strings.ReplaceAll(def, "|", "\\|"), strings.ReplaceAll(meaning, "|", "\\|"))
		}
	}
	b.WriteString(`
## Commands

` + "`usersd`" + ` migrates and serves; ` + "`usersd migrate`" + ` applies pending migrations and exits; ` + "`usersd healthcheck`" + `
asks the local ` + "`/healthz`" + ` (on ` + "`BIND`" + `'s port; ` + "`0.0.0.0`" + ` and ` + "`::`" + ` mean loopback) and exits 0 when it answers
200, else 1 with one line (for container health checks: the image has no curl); ` + "`usersd version`" + ` prints
the version.
`)
	return b.String()
}
