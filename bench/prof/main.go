// Command prof splits a CPU profile into the layers of the stack that spent
// it, per request, for the GetUser profile rows of `make bench`
// (BENCH_PROFILE=1): usersd's own code (or the bare handler's), connect-go,
// protobuf, net/http, pgx, telemetry, and the runtime's own work.
//
//	prof -reqs N FILE.pprof
//	prof -reqs N -sample alloc_objects -prefix a_ FILE.pprof
//
// prints one line of key=value pairs, microseconds of CPU per request:
//
//	ours connect protobuf nethttp pgx otel other runtime syscall total
//
// or, with -sample alloc_objects on an allocation profile, heap
// allocations per request (syscall is then always 0), each key prefixed
// with -prefix.
//
// Each sample goes to the innermost frame of its stack that belongs to a
// layer: time in the runtime (malloc, GC assists, stack growth) and in
// small libraries (uuid, time, strconv, bufio, encoding/json) is charged
// to the layer that called it. net/http's mux routing called from
// usersd's guard is charged to net/http, as is net/http's HTTP/2 frame
// writing, which runs on its own goroutines. Samples with no layer on
// their stack (GC workers, the scheduler, idle spinning) are runtime.
// syscall is the part of all of these spent in system calls (the leaf
// frame is a syscall), whoever made them.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// layers, matched by function name prefix; the first match wins.
var layers = []struct{ name, prefix string }{
	{"ours", "github.com/acme/usersd/"},
	{"ours", "main."}, // the bare handler's own code
	{"connect", "connectrpc.com/"},
	{"protobuf", "google.golang.org/protobuf/"},
	{"nethttp", "net/http."},
	{"nethttp", "net/textproto."},
	{"nethttp", "golang.org/x/net/http2"},
	{"pgx", "github.com/jackc/"},
	{"otel", "go.opentelemetry.io/"},
	{"otel", "github.com/prometheus/"},
	{"other", "github.com/riverqueue/"},
	{"other", "log/slog."},
}

var order = []string{"ours", "connect", "protobuf", "nethttp", "pgx", "otel", "other", "runtime", "syscall", "total"}

func layerOf(fn string) string {
	for _, l := range layers {
		if strings.HasPrefix(fn, l.prefix) {
			return l.name
		}
	}
	return ""
}

func isSyscall(fn string) bool {
	return strings.HasPrefix(fn, "internal/runtime/syscall") || strings.HasPrefix(fn, "syscall.RawSyscall") ||
		strings.HasPrefix(fn, "syscall.Syscall") || fn == "runtime/internal/syscall.Syscall6"
}

func main() {
	reqs := flag.Float64("reqs", 0, "requests served while the profile ran")
	sample := flag.String("sample", "", "sample index of an allocation profile (alloc_objects); default: CPU time")
	prefix := flag.String("prefix", "", "prefix of every key printed")
	flag.Parse()
	if flag.NArg() != 1 || *reqs <= 0 {
		fmt.Fprintln(os.Stderr, "usage: prof -reqs N FILE.pprof")
		os.Exit(2)
	}
	args := []string{"tool", "pprof", "-traces"}
	scale := 1e6 // CPU: microseconds per request
	if *sample != "" {
		args = append(args, "-sample_index="+*sample)
		scale = 1
	}
	out, err := exec.Command("go", append(args, flag.Arg(0))...).Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "prof: go tool pprof -traces:", err)
		os.Exit(1)
	}
	sum := map[string]float64{}
	var cur float64 // the value of the stack being read
	var frames []string
	flush := func() {
		if cur == 0 {
			return
		}
		layer := "runtime"
		for _, f := range frames { // innermost first
			if l := layerOf(f); l != "" {
				layer = l
				break
			}
		}
		sum[layer] += cur
		sum["total"] += cur
		if len(frames) > 0 && isSyscall(frames[0]) {
			sum["syscall"] += cur
		}
		cur, frames = 0, frames[:0]
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----") {
			flush()
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "bytes:" { // an allocation profile's size class line
			continue
		}
		// A stack starts with its value: "  10ms   fn" (a count in an
		// allocation profile); then one frame a line.
		if v, ok := value(fields[0], *sample != ""); ok && len(fields) >= 2 {
			flush()
			cur = v
			frames = append(frames, fields[1])
			continue
		}
		if cur > 0 {
			frames = append(frames, fields[0])
		}
	}
	flush()
	var b strings.Builder
	for i, k := range order {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s%s=%.1f", *prefix, k, sum[k]/(*reqs)*scale)
	}
	fmt.Println(b.String())
}

// value parses a sample value: a count, or a duration ("10ms", "1.20s",
// "500us") in seconds.
func value(s string, count bool) (float64, bool) {
	if count {
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"ms", 1e-3}, {"us", 1e-6}, {"µs", 1e-6}, {"ns", 1e-9}, {"s", 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			return v * u.scale, err == nil
		}
	}
	return 0, false
}
