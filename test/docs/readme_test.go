//go:build docs

// Package docs runs the README's examples (make test-docs): "works as
// written" is a test, not a hope.
//
// It starts usersd as make run does (scripts/run.sh, with the development
// issuer) on free ports and a fresh database, then runs every shell block
// of README.md fenced as "```sh test", in order, in one bash process (so
// variables carry over from block to block), with localhost:8000 and the
// issuer's address rewritten to the free ports. A statement whose last
// line ends in a comment promising an outcome is checked against what it
// printed:
//
//	# 201 ...           an HTTP status: the output's status line says it
//	# {"error":"x",...} JSON: every "key":"value" pair (but "...") is in the output
//	# valid             a word: the output holds it
//
// and every statement must exit 0 (a `|| true` says on purpose that it
// may fail).
package docs

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/acme/usersd/internal/dbtest"
	"github.com/acme/usersd/internal/proctest"
)

// statement is one shell command of a block (lines joined while quotes
// are open or a line ends in a backslash) and what it promises.
type statement struct {
	block, line int // where it starts in README.md (1-based line)
	text        string
	expect      string // the promise of its last line's comment, if any
}

func TestReadmeExamples(t *testing.T) {
	root := proctest.RepoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	stmts := parse(string(readme))
	if len(stmts) < 10 {
		t.Fatalf("README.md has only %d runnable statements (blocks fenced ```sh test): has the marking changed?", len(stmts))
	}

	api, issuer := freeAddr(t), freeAddr(t)
	db := dbtest.Empty(t, "docs")
	env := append(os.Environ(),
		"BIND="+api, "DEV_ISSUER_ADDR="+issuer, "DATABASE_URL="+db.URL, "BIN="+t.TempDir(),
		// The webhook example points a webhook at loopback, which its text
		// says needs this.
		"WEBHOOK_ALLOW_PRIVATE=true",
	)
	run := proctest.Run(t, proctest.Command{Path: filepath.Join(root, "scripts", "run.sh"), Dir: root, Env: env},
		proctest.StopGracefully(30*time.Second))
	for deadline := time.Now().Add(3 * time.Minute); !strings.Contains(run.Output.String(), "usersd is ready"); time.Sleep(100 * time.Millisecond) {
		if run.Exited() || time.Now().After(deadline) {
			t.Fatalf("make run's usersd did not become ready:\n%s", run.Output.Tail(30))
		}
	}

	out := runStatements(t, root, stmts, api, issuer)
	for i, s := range stmts {
		o, ok := out[i]
		if !ok {
			t.Errorf("README.md:%d did not run (an earlier statement stopped the script?):\n%s", s.line, s.text)
			continue
		}
		if o.code != 0 {
			t.Errorf("README.md:%d exited %d:\n%s\noutput:\n%s", s.line, o.code, s.text, o.text)
			continue
		}
		if err := check(s.expect, o.text); err != nil {
			t.Errorf("README.md:%d: %v\n%s\noutput:\n%s", s.line, err, s.text, o.text)
		}
	}
}

var fence = regexp.MustCompile("(?m)^```sh test\n([\\s\\S]*?)^```\n")

// parse splits the runnable blocks into statements.
func parse(readme string) []statement {
	var out []statement
	for bi, m := range fence.FindAllStringSubmatchIndex(readme, -1) {
		body := readme[m[2]:m[3]]
		first := strings.Count(readme[:m[2]], "\n") + 1
		var cur []string
		start := 0
		for i, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
			if len(cur) == 0 {
				if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
					continue
				}
				start = first + i
			}
			cur = append(cur, line)
			text := strings.Join(cur, "\n")
			if open(text) || strings.HasSuffix(strings.TrimSpace(code(line)), "\\") {
				continue
			}
			out = append(out, statement{block: bi, line: start, text: text, expect: promise(line)})
			cur = nil
		}
	}
	return out
}

// open reports whether text ends inside a single- or double-quoted string
// or a $( ) substitution.
func open(text string) bool {
	var quote rune
	depth := 0
	for i, r := range text {
		switch {
		case quote != 0:
			if r == quote && (quote == '\'' || i == 0 || text[i-1] != '\\') {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t'):
			// A comment runs to the end of its line.
			if nl := strings.IndexByte(text[i:], '\n'); nl < 0 {
				return depth > 0
			}
		case r == '(' && i > 0 && text[i-1] == '$':
			depth++
		case r == ')' && depth > 0:
			depth--
		}
	}
	return quote != 0 || depth > 0
}

// code is line without its trailing comment (outside quotes).
func code(line string) string {
	if i := commentAt(line); i >= 0 {
		return line[:i]
	}
	return line
}

func commentAt(line string) int {
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return i
		}
	}
	return -1
}

// promise is the outcome line's comment promises, or "".
func promise(line string) string {
	i := commentAt(line)
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(line[i+1:])
}

var (
	statusPromise = regexp.MustCompile(`^([1-5][0-9][0-9])\b`)
	jsonPair      = regexp.MustCompile(`"([a-z_]+)":("[^"]*"|[0-9]+|true|false)`)
	wordPromise   = regexp.MustCompile(`^(valid)\b`)
	statusLine    = regexp.MustCompile(`(?m)^HTTP/[0-9.]+ ([0-9]{3})`)
)

// check holds output to the promise.
func check(promise, output string) error {
	if m := statusPromise.FindStringSubmatch(promise); m != nil {
		if got := statusLine.FindAllStringSubmatch(output, -1); len(got) > 0 && got[len(got)-1][1] != m[1] {
			return fmt.Errorf("promised status %s, got %s", m[1], got[len(got)-1][1])
		} else if len(got) == 0 && !strings.Contains(promise, "{") {
			return fmt.Errorf("promised status %s, but the output has no status line", m[1])
		}
	}
	for _, p := range jsonPair.FindAllStringSubmatch(promise, -1) {
		if p[2] == `"..."` {
			continue
		}
		if !strings.Contains(output, `"`+p[1]+`":`+p[2]) {
			return fmt.Errorf("promised %s:%s, not in the output", p[1], p[2])
		}
	}
	if m := wordPromise.FindStringSubmatch(promise); m != nil && !strings.Contains(output, m[1]) {
		return fmt.Errorf("promised %q, not in the output", m[1])
	}
	return nil
}

type result struct {
	code int
	text string
}

// runStatements runs every statement in one bash process, each output in a
// file of its own, and returns them by index.
func runStatements(t *testing.T, root string, stmts []statement, api, issuer string) map[int]result {
	t.Helper()
	dir := t.TempDir()
	var script strings.Builder
	script.WriteString("set -u\n")
	for i, s := range stmts {
		text := strings.ReplaceAll(s.text, "localhost:8000", "localhost"+api[strings.LastIndex(api, ":"):])
		fmt.Fprintf(&script, "{\n%s\n} > %s/%d.out 2>&1 < /dev/null\necho $? > %s/%d.code\n", text, dir, i, dir, i)
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DEV_ISSUER_ADDR="+issuer)
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		_ = cmd.Process.Kill()
		t.Error("the README's examples did not finish within 10 minutes")
	}
	out := map[int]result{}
	for i := range stmts {
		code, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.code", i)))
		if err != nil {
			continue
		}
		text, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.out", i)))
		var n int
		fmt.Sscan(string(code), &n)
		out[i] = result{n, string(text)}
	}
	return out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
