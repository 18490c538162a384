package k8scheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// ReadmeVariables returns the variables of the configuration table in
// README.md (its "## Configuration" section): every `NAME` in the first
// column, so "`DB_MAX_CONNS` / `DB_MIN_CONNS`" gives two. A wildcard such as
// `OTEL_*` comes back as written.
func ReadmeVariables(readme string) ([]string, error) {
	var vars []string
	inSection, inTable := false, false
lines:
	for line := range strings.SplitSeq(readme, "\n") {
		if strings.HasPrefix(line, "## ") {
			if inSection {
				break lines
			}
			inSection = strings.TrimSpace(line) == "## Configuration"
			continue
		}
		if !inSection {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break lines // the first table of the section only
			}
			continue
		}
		if !inTable {
			inTable = true // the header row
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.Trim(cells[1], " -:") == "" {
			continue // the separator row
		}
		for _, m := range varName.FindAllStringSubmatch(cells[1], -1) {
			vars = append(vars, m[1])
		}
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("no configuration table under \"## Configuration\"")
	}
	return vars, nil
}

var varName = regexp.MustCompile("`([A-Z][A-Z0-9_]*\\*?)`")

// sourceVar matches the ways cmd/usersd reads a variable: getenv("X"),
// os.Getenv("X") and the typed parser, p.duration("X", ...).
var sourceVar = regexp.MustCompile(`(?:\b[gG]etenv\(|\bp\.[a-zA-Z]+\()"([A-Z][A-Z0-9_]*)"`)

// SourceVariables returns the variables the Go files of dir (not its tests)
// read, so that a variable added to the code but not to the README is
// caught too.
func SourceVariables(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var vars []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range sourceVar.FindAllStringSubmatch(string(b), -1) {
			vars = append(vars, m[1])
		}
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("no getenv calls found in %s", dir)
	}
	slices.Sort(vars)
	return slices.Compact(vars), nil
}
