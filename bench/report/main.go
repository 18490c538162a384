// Command report turns bench/run.sh's results file into the one table of
// `make bench`: usersd against its baselines, the ratios and the targets.
//
//	go run ./bench/report bench/out/results.txt
package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// rec is one line of the results file: a section, then key=value pairs.
type rec struct {
	section string
	kv      map[string]string
}

func (r rec) s(k string) string { return r.kv[k] }

func (r rec) f(k string) float64 {
	v, _ := strconv.ParseFloat(r.kv[k], 64)
	return v
}

var recs []rec

func find(section string, match map[string]string) []rec {
	var out []rec
next:
	for _, r := range recs {
		if r.section != section {
			continue
		}
		for k, v := range match {
			if r.kv[k] != v {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

func one(section string, match map[string]string) (rec, bool) {
	rs := find(section, match)
	if len(rs) == 0 {
		return rec{kv: map[string]string{}}, false
	}
	return rs[len(rs)-1], true
}

// best is the error-free record with the highest rps.
func best(rs []rec) (rec, bool) {
	var b rec
	ok := false
	for _, r := range rs {
		if r.f("errors") > 0 || r.f("ok") == 0 {
			continue
		}
		if !ok || r.f("rps") > b.f("rps") {
			b, ok = r, true
		}
	}
	return b, ok
}

var clkTck = 100.0

// cpuPerReq is the server's CPU time per request in microseconds.
func cpuPerReq(r rec) string {
	if r.f("total") == 0 || r.kv["ticks"] == "" {
		return "-"
	}
	return fmt.Sprintf("%.0f", r.f("ticks")/clkTck*1e6/r.f("total"))
}

// pgPerReq is PostgreSQL's CPU time per request in microseconds: server
// "pg" (the primary) or "pgr" (the replica phase's replica), its postmaster's
// whole process tree over the same window as the request count.
func pgPerReq(r rec, server string) string {
	if r.f("total") == 0 || r.kv[server+"_ticks"] == "" {
		return "-"
	}
	return fmt.Sprintf("%.0f", pgUs(r, server))
}

func pgUs(r rec, server string) float64 {
	if r.f("total") == 0 {
		return 0
	}
	return r.f(server+"_ticks") / clkTck * 1e6 / r.f("total")
}

// noisyShare: a row measured while processes other than the bench's used
// more than this share of the machine's CPUs is marked NOISY: on 2 CPUs
// that is a fifth of one, enough to move a peak by more than the targets'
// margins.
const noisyShare = 0.10

// noise is the largest share of the CPUs that other processes used while
// any of rs was measured, and NOISY past noisyShare.
func noise(rs ...rec) string {
	m, ok := 0.0, false
	for _, r := range rs {
		if v, has := r.kv["others"]; has && v != "" {
			m, ok = max(m, r.f("others")), true
		}
	}
	if !ok {
		return "-"
	}
	s := fmt.Sprintf("%.0f%%", m*100)
	if m > noisyShare {
		s += " NOISY"
	}
	return s
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}

// getTarget is the least R_overhead each GetUser entry point must reach
// against the bare handler of its own protocol: REST is the bare handler's
// own shape, so usersd must come closer there.
var getTarget = map[string]float64{"rest-h1": 0.95, "cjson-h1": 0.90, "cget-h1": 0.90, "grpc-h2c": 0.90, "cproto-h2c": 0.90}

func pgOf(r rec, ok bool) string {
	if !ok {
		return "-"
	}
	return pgPerReq(r, "pg")
}

// noiseSummary: how many of the measured rows other processes disturbed.
func noiseSummary() {
	var shares []float64
	noisy := 0
	for _, r := range recs {
		if r.section == "load" || r.kv["others"] == "" {
			continue
		}
		shares = append(shares, r.f("others"))
		if r.f("others") > noisyShare {
			noisy++
		}
	}
	if len(shares) == 0 {
		return
	}
	mx := slices.Max(shares)
	fmt.Printf("other processes' share of the CPUs during the %d measured runs: median %.0f%%, max %.0f%%; %d NOISY (over %.0f%%)",
		len(shares), median(slices.Clone(shares))*100, mx*100, noisy, noisyShare*100)
	if noisy > 0 {
		fmt.Print(": their numbers are the machine's as much as usersd's; rerun on a quiet machine before comparing with targets")
	}
	fmt.Println()
}

// protocolRows: every GetUser entry point against two bare references,
// the bare handler speaking the same protocol (what usersd's framework
// costs) and the bare REST GET over HTTP/1.1 (what the protocol itself
// costs on top: framing, codecs, HTTP/2).
func protocolRows(p func(...string), names []struct{ entry, label string }) {
	rest, restOK := best(find("get", map[string]string{"entry": "rest-h1", "target": "bare"}))
	if len(find("get", nil)) == 0 {
		return
	}
	matched := map[string]string{
		"rest-h1":    "bare REST GET (itself)",
		"cjson-h1":   "bare Connect-shaped JSON POST",
		"cget-h1":    "bare Connect-shaped GET",
		"grpc-h2c":   "bare gRPC-shaped (h2c)",
		"cproto-h2c": "bare Connect-shaped proto (h2c)",
	}
	p("GetUser: framework and protocol", "protocol-matched reference", "usersd / it (framework)", "it / bare REST (protocol)", "usersd / bare REST (both)", "CPU us/req usersd / it / bare REST", "others")
	ratio := func(a, b rec, aok, bok bool) string {
		if !aok || !bok || b.f("rps") == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", a.f("rps")/b.f("rps"))
	}
	for _, n := range names {
		u, uok := best(find("get", map[string]string{"entry": n.entry, "target": "usersd"}))
		b, bok := best(find("get", map[string]string{"entry": n.entry, "target": "bare"}))
		if !uok && !bok {
			continue
		}
		p(n.label, matched[n.entry], ratio(u, b, uok, bok), ratio(b, rest, bok, restOK), ratio(u, rest, uok, restOK),
			cpuOf(u, uok)+" / "+cpuOf(b, bok)+" / "+cpuOf(rest, restOK), noise(u, b, rest))
	}
	p("  RPS ratios at each one's peak; bare REST GET is the plain HTTP/1.1 handler of the first row: the same query, body and ETag as usersd's GetUser with nothing but net/http and pgxpool;")
	p("  across protocols the RPS ratios also carry the load generators' own cost on the same CPUs (wrk, in C, for HTTP/1.1; ghz and bench/load, in Go, for h2c): the servers' CPU per request")
	p("  is the protocol's cost without it")
	p()
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: report RESULTS")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		r := rec{section: fields[0], kv: map[string]string{}}
		for _, kv := range fields[1:] {
			k, v, _ := strings.Cut(kv, "=")
			r.kv[k] = v
		}
		recs = append(recs, r)
	}
	meta, _ := one("meta", nil)
	if v := meta.f("clk_tck"); v > 0 {
		clkTck = v
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	p := func(cols ...string) { fmt.Fprintln(w, strings.Join(cols, "\t")) }
	fmt.Printf("usersd benchmark  version %s  |  %s CPUs, PostgreSQL %s (fsync/synchronous_commit/full_page_writes off, shared_buffers 256MB, data on %s; all three on for the \"fsync on\" rows)\n",
		meta.s("version"), meta.s("cpus"), meta.s("pg"), meta.s("pgfs"))
	fmt.Printf("%s s per measurement; peak = best error-free RPS over concurrency %s (CreateUser %s; pgbench clients %s), the servers compared back to back at each; usersd LOG_LEVEL=warn (access log off), AUTH_DISABLED=true, CREATE_BATCH=on, rate limits off unless noted\n",
		meta.s("dur"), meta.s("concs"), meta.s("createconcs"), meta.s("pgconcs"))
	fmt.Printf("total run %s s; machine load average (1/5/15 min) %s at start, %s at end: other processes share these CPUs\n",
		meta.s("seconds"), meta.s("loadavg_start"), meta.s("loadavg_end"))
	if loads := find("load", nil); len(loads) > 0 {
		var ls []string
		for _, l := range loads {
			x := l.s("phase") + " " + l.s("avg")
			if l.kv["others"] != "" {
				x += fmt.Sprintf(" (others %.0f%%)", l.f("others")*100)
			}
			ls = append(ls, x)
		}
		fmt.Printf("load average as each phase started, and the share of the CPUs other processes used over 1 s then: %s\n", strings.Join(ls, ", "))
	}
	noiseSummary()
	fmt.Println()

	// GetUser.
	pgGet, havePG := best(find("get", map[string]string{"target": "pgbench"}))
	p("GetUser, 100k users", "tool", "usersd RPS @c", "bare RPS @c (same protocol)", "R_overhead", "target", "usersd CPU us/req", "bare CPU us/req", "R_cpu", "PG CPU us/req usersd / bare", "R_db", "usersd p50 / p99 ms @ half peak", "p99<=5ms", "bare p50 / p99 same rate", "gen lag p99", "others")
	names := []struct{ entry, label string }{
		{"rest-h1", "REST GET /users/{id}     HTTP/1.1"},
		{"cjson-h1", "Connect JSON POST        HTTP/1.1"},
		{"cget-h1", "Connect GET (JSON)       HTTP/1.1"},
		{"grpc-h2c", "gRPC                     h2c"},
		{"cproto-h2c", "Connect proto            h2c"},
	}
	for _, n := range names {
		u, uok := best(find("get", map[string]string{"entry": n.entry, "target": "usersd"}))
		b, bok := best(find("get", map[string]string{"entry": n.entry, "target": "bare"}))
		tool := toolName(u)
		want := getTarget[n.entry]
		ratio, rv := "-", fmt.Sprintf(">=%.2f -", want)
		if uok && bok {
			x := u.f("rps") / b.f("rps")
			ratio, rv = fmt.Sprintf("%.2f", x), fmt.Sprintf(">=%.2f %s", want, verdict(x >= want))
		}
		// R_cpu at the same concurrency: usersd's peak one.
		rcpu := "-"
		if bc, ok := one("get", map[string]string{"entry": n.entry, "target": "bare", "conc": u.s("conc")}); uok && ok &&
			u.f("ticks") > 0 && bc.f("ticks") > 0 && u.f("total") > 0 && bc.f("total") > 0 {
			rcpu = fmt.Sprintf("%.2f", (bc.f("ticks")/bc.f("total"))/(u.f("ticks")/u.f("total")))
		}
		rdb := "-"
		if uok && havePG {
			rdb = fmt.Sprintf("%.2f", u.f("rps")/pgGet.f("rps"))
		}
		lat, lv, blat, lag := "-", "-", "-", "-"
		noisy := []rec{u, b}
		if l, ok := one("latency", map[string]string{"entry": n.entry, "target": "bare"}); ok {
			noisy = append(noisy, l)
			blat = fmt.Sprintf("%.2f / %.2f", l.f("p50"), l.f("p99"))
			if l.f("errors") > 0 {
				blat += fmt.Sprintf(" (%s errors)", l.s("errors"))
			}
		}
		if l, ok := one("latency", map[string]string{"entry": n.entry, "target": "usersd"}); ok {
			noisy = append(noisy, l)
			lag = fmt.Sprintf("%.2f ms", l.f("lag99"))
			lat = fmt.Sprintf("%.2f / %.2f @ %s/s", l.f("p50"), l.f("p99"), l.s("rate"))
			if l.f("errors") > 0 {
				lat += fmt.Sprintf(" (%s errors)", l.s("errors"))
			}
			lv = verdict(l.f("p99") <= 5 && l.f("errors") == 0)
		}
		pgc := "-"
		if uok || bok {
			pgc = pgOf(u, uok) + " / " + pgOf(b, bok)
		}
		p(n.label, tool, rpsAt(u, uok), rpsAt(b, bok), ratio, rv, cpuPerReq(u), cpuPerReq(b), rcpu, pgc, rdb, lat, lv, blat, lag, noise(noisy...))
	}
	if havePG {
		p("pgbench SELECT by id (-M prepared)", "pgbench", "", rpsAt(pgGet, true)+" TPS", "", "", "", "", "", pgPerReq(pgGet, "pg")+" per tx", "= 1", "", "", "", "", noise(pgGet))
	}
	p("  R_overhead = usersd RPS / RPS of the bare handler speaking the same protocol (REST: the bare REST GET; Connect JSON, Connect GET, Connect proto: its Connect-shaped handlers; gRPC: its gRPC-shaped one), at their peaks;")
	p("  R_cpu = bare CPU per request / usersd CPU per request at usersd's peak concurrency (the same ratio without the load generator's share of the CPUs);")
	p("  PG CPU: PostgreSQL's (the postmaster's process tree: backends, walwriter, checkpointer, autovacuum) per request over the same run, each at its peak; pgbench's per transaction;")
	p(fmt.Sprintf("  others: the share of the machine's CPUs that processes outside the bench used during the row's runs (the largest of them); NOISY above %.0f%%", noisyShare*100))
	p()

	protocolRows(p, names)

	profileRows(p, names)

	createRows(p)

	feedRows(p)

	// Access log.
	p("Access log (warn -> info, back to back)", "tool", "RPS off -> on", "change", "", "", "CPU us/req off -> on", "others")
	for _, n := range []struct{ entry, label string }{
		{"rest-h1", "REST GET /users/{id}     HTTP/1.1"},
		{"cproto-h2c", "Connect proto            h2c"},
	} {
		on, ok := one("accesslog", map[string]string{"entry": n.entry, "log": "info"})
		if !ok {
			continue
		}
		off, _ := one("accesslog", map[string]string{"entry": n.entry, "log": "warn"})
		change := "-"
		if off.f("rps") > 0 {
			change = fmt.Sprintf("%+.0f%%", (on.f("rps")/off.f("rps")-1)*100)
		}
		p(n.label, tool(on), fmt.Sprintf("%.0f -> %.0f @%s", off.f("rps"), on.f("rps"), on.s("conc")), change, "", "",
			cpuPerReq(off)+" -> "+cpuPerReq(on), noise(off, on))
	}
	p()

	// Authentication.
	if len(find("auth", nil)) > 0 {
		p("Authentication (AUTH_DISABLED -> token, back to back)", "tool", "RPS off -> on", "ratio", ">=0.90", "", "CPU us/req off -> on", "others")
		for _, n := range []struct{ entry, label string }{
			{"rest-h1", "REST GET /users/{id}     HTTP/1.1"},
			{"grpc-h2c", "gRPC                     h2c"},
			{"cproto-h2c", "Connect proto            h2c"},
		} {
			off, okOff := best(find("auth", map[string]string{"entry": n.entry, "auth": "off"}))
			on, okOn := best(find("auth", map[string]string{"entry": n.entry, "auth": "on"}))
			if !okOff && !okOn {
				continue
			}
			r := on
			if !okOn {
				r = off
			}
			ratio, rv := "-", "-"
			if okOff && okOn {
				x := on.f("rps") / off.f("rps")
				ratio, rv = fmt.Sprintf("%.2f", x), verdict(x >= 0.90)
			}
			rps := func(r rec, ok bool) string {
				if !ok {
					return "-"
				}
				return fmt.Sprintf("%.0f", r.f("rps"))
			}
			cpu := func(r rec, ok bool) string {
				if !ok {
					return "-"
				}
				return cpuPerReq(r)
			}
			p(n.label, tool(r), fmt.Sprintf("%s -> %s @%s", rps(off, okOff), rps(on, okOn), r.s("conc")), ratio, rv, "",
				cpu(off, okOff)+" -> "+cpu(on, okOn), noise(off, on))
		}
		p(fmt.Sprintf("  best of %s runs each, off/on alternating; rate limits off in both: authentication alone (token verified once, then cached)", meta.s("authrounds")))
		p()
	}

	replicaRows(p, meta)

	// Scale.
	s10k, ok1 := one("scale", map[string]string{"entry": "users10k"})
	s1m, ok2 := one("scale", map[string]string{"entry": "users1m"})
	p("Scale", "tool", "measure", "value", "ratio", "target", "others")
	if ok1 && ok2 {
		x := s1m.f("p50") / s10k.f("p50")
		p("GetUser p50, Connect proto", "bench/load", fmt.Sprintf("10k users @ %s/s", s10k.s("rate")), fmt.Sprintf("%.3f ms (p99 %.2f)", s10k.f("p50"), s10k.f("p99")), "", "", noise(s10k))
		p("", "", fmt.Sprintf("1M users @ %s/s", s1m.s("rate")), fmt.Sprintf("%.3f ms (p99 %.2f)", s1m.f("p50"), s1m.f("p99")),
			fmt.Sprintf("%.2f", x), "<=1.20 "+verdict(x <= 1.20), noise(s1m))
	}
	l1p, _ := one("listpeak", map[string]string{"entry": "page1"})
	l1000p, okp := one("listpeak", map[string]string{"entry": "page1000"})
	l1r, _ := one("listrate", map[string]string{"entry": "page1"})
	l1000r, okr := one("listrate", map[string]string{"entry": "page1000"})
	if okp && okr {
		p("ListUsers 50/page, 1M users", "wrk", "page 1 / page 1000 RPS @32", fmt.Sprintf("%.0f / %.0f", l1p.f("rps"), l1000p.f("rps")),
			fmt.Sprintf("%.2f", l1000p.f("rps")/l1p.f("rps")), ">=0.80 "+verdict(l1000p.f("rps")/l1p.f("rps") >= 0.80), noise(l1p, l1000p))
		x := l1000r.f("p50") / l1r.f("p50")
		p("  (REST GET /users)", "bench/load", fmt.Sprintf("page 1 / page 1000 p50 @ %s/s", l1r.s("rate")), fmt.Sprintf("%.2f / %.2f ms", l1r.f("p50"), l1000r.f("p50")),
			fmt.Sprintf("%.2f", x), "<=1.20 "+verdict(x <= 1.20), noise(l1r, l1000r))
	}
	if wk, ok := one("list", nil); ok {
		p("  (walk to page 1000)", "bench/load", "999 sequential ListUsers, Connect JSON", wk.s("seconds")+" s", "", "")
	}
	p()

	// Resources.
	var rss rec
	var phases []string
	for _, r := range find("rss", nil) {
		if r.s("phase") == "" {
			rss = r
		} else {
			phases = append(phases, fmt.Sprintf("%s %.0f", r.s("phase"), r.f("hwm_kb")/1024))
		}
	}
	bin, _ := one("binary", nil)
	p("Resources", "", "value", "", "", "target")
	mib := rss.f("hwm_kb") / 1024
	p("usersd peak RSS (max VmHWM of every usersd run)", "", fmt.Sprintf("%.1f MiB", mib), "", "", "<=64 MiB "+verdict(mib > 0 && mib <= 64))
	if len(phases) > 0 {
		p("  VmHWM after each phase, MiB", "", strings.Join(phases, ", "), "", "", "")
	}
	mb := bin.f("bytes") / 1e6
	p("bin/usersd size (-trimpath -s -w)", "", fmt.Sprintf("%.1f MB (%.1f MiB)", mb, bin.f("bytes")/(1<<20)), "", "", "<=30 MB "+verdict(mb <= 30))
	w.Flush()

	// Errors anywhere are worth a line.
	var bad []string
	for _, r := range recs {
		if r.f("errors") > 0 {
			what := strings.Join(strings.Fields(r.s("entry")+" "+r.s("target")+" "+r.s("mode")), " ")
			bad = append(bad, fmt.Sprintf("%s %s c=%s rate=%s: %s errors", r.section, what, r.s("conc"), r.s("rate"), r.s("errors")))
		}
	}
	if len(bad) > 0 {
		fmt.Println("\nruns with errors (left out of 'best'):")
		for _, b := range bad {
			fmt.Println("  " + b)
		}
	}
}

// layerCols are bench/prof's layers, in the order the profile rows show them.
var layerCols = []struct{ key, label string }{
	{"ours", "ours"}, {"connect", "connect-go"}, {"protobuf", "protobuf"}, {"nethttp", "net/http"},
	{"pgx", "pgx"}, {"otel", "otel+prom"}, {"other", "other"}, {"runtime", "runtime (GC, sched)"},
}

// profileRows: where GetUser's CPU goes, usersd against the bare handler
// under the same load, from the "prof" records of BENCH_PROFILE=1.
func profileRows(p func(...string), names []struct{ entry, label string }) {
	if len(find("prof", nil)) == 0 {
		return
	}
	meta, _ := one("meta", nil)
	hdr := []string{"GetUser CPU per request by layer, us (pprof)", "server", "RPS @c", "CPU (ticks)", "pprof total"}
	for _, l := range layerCols {
		hdr = append(hdr, l.label)
	}
	hdr = append(hdr, "in syscalls", "read / write syscalls", "allocs: ours / connect-go / net/http / all", "PG CPU us/req", "others")
	p(hdr...)
	for _, n := range names {
		u, uok := one("prof", map[string]string{"entry": n.entry, "target": "usersd"})
		b, bok := one("prof", map[string]string{"entry": n.entry, "target": "bare"})
		if !uok && !bok {
			continue
		}
		row := func(label, who string, r rec) {
			cols := []string{label, who, fmt.Sprintf("%.0f @%s", r.f("rps"), r.s("conc")), r.s("cpu_us"), r.s("total")}
			for _, l := range layerCols {
				cols = append(cols, r.s(l.key))
			}
			pg := "-"
			if r.kv["pg_ticks"] != "" && r.f("reqs") > 0 {
				pg = fmt.Sprintf("%.1f", r.f("pg_ticks")/clkTck*1e6/r.f("reqs"))
			}
			cols = append(cols, r.s("syscall"), r.s("syscr")+" / "+r.s("syscw"), allocs(r), pg, noise(r))
			p(cols...)
		}
		label := n.label
		if uok {
			row(label, "usersd", u)
			label = ""
		}
		if bok {
			row(label, "bare", b)
		}
		if uok && bok {
			d := func(k string) string { return fmt.Sprintf("%+.1f", u.f(k)-b.f(k)) }
			cols := []string{"", "usersd - bare", fmt.Sprintf("x%.2f", u.f("rps")/b.f("rps")), d("cpu_us"), d("total")}
			for _, l := range layerCols {
				cols = append(cols, d(l.key))
			}
			cols = append(cols, d("syscall"), fmt.Sprintf("%+.2f / %+.2f", u.f("syscr")-b.f("syscr"), u.f("syscw")-b.f("syscw")),
				fmt.Sprintf("%+.0f / %+.0f / %+.0f / %+.0f", u.f("a_ours")-b.f("a_ours"), u.f("a_connect")-b.f("a_connect"), u.f("a_nethttp")-b.f("a_nethttp"), u.f("a_total")-b.f("a_total")))
			p(cols...)
		}
	}
	p(fmt.Sprintf("  %s s CPU profile of each server under bench/load closed loop at usersd's peak concurrency, one after the other; a sample is charged to the innermost of these layers on its stack,", meta.s("psecs")))
	p("  so malloc, GC assists and syscalls count for the layer that caused them; \"ours\" is usersd's server/ and store/ (the bare handler's own code on its rows); runtime is GC workers and the scheduler.")
	p("  read / write syscalls per request from /proc/PID/io over the same window, PostgreSQL's socket included (one write and one or two reads per query, for both servers);")
	p("  heap allocations per request by the same layers, from the allocation profile of the same window (sampled: small objects are estimates)")
	p()
}

// createRows: CreateUser with group commit against CREATE_BATCH=off and
// pgbench's single-create transaction, peak and at a quiet rate, for each
// fsync setting measured.
func createRows(p func(...string)) {
	if len(find("create", nil)) == 0 {
		return
	}
	entries := []struct{ entry, label string }{
		{"rest-create", "REST POST /users         HTTP/1.1"},
		{"cproto-create", "Connect proto            h2c"},
	}
	fsyncs := []struct{ v, label string }{
		{"off", "fsync off (as above)"},
		{"on", "fsync on (production)"},
	}
	p("CreateUser (+ welcome job), 100k users", "tool", "group commit RPS @c", "CREATE_BATCH=off RPS @c", "pgbench 1-create tx TPS @c", "vs pgbench", "target", "c8 / c32 vs pgbench there", "vs off", "CPU us/req on / off", "client CPU us/req", "others")
	for _, fs := range fsyncs {
		pg, havePG := best(find("create", map[string]string{"target": "pgbench", "fsync": fs.v}))
		if len(find("create", map[string]string{"fsync": fs.v})) == 0 {
			continue
		}
		label := fs.label
		if fs.v == "on" {
			if f, ok := one("pgfsync", nil); ok {
				label += ", data on " + f.s("fs")
			}
		}
		p(label)
		for _, n := range entries {
			on, okOn := best(find("create", map[string]string{"entry": n.entry, "target": "usersd", "fsync": fs.v}))
			off, okOff := best(find("create", map[string]string{"entry": n.entry, "target": "nobatch", "fsync": fs.v}))
			vsPG, v, vsOff := "-", "-", "-"
			if okOn && havePG {
				x := on.f("rps") / pg.f("rps")
				vsPG = fmt.Sprintf("%.2f", x)
				if fs.v == "on" {
					v = ">=1.0 " + verdict(x >= 1.0)
				}
			} else if fs.v == "on" {
				v = ">=1.0 MISS"
			}
			// The same comparison at each concurrency both swept.
			var at []string
			for _, c := range []string{"8", "32"} {
				u, uok := best(find("create", map[string]string{"entry": n.entry, "target": "usersd", "fsync": fs.v, "conc": c}))
				g, gok := best(find("create", map[string]string{"target": "pgbench", "fsync": fs.v, "conc": c}))
				if uok && gok && g.f("rps") > 0 {
					at = append(at, fmt.Sprintf("%.2f", u.f("rps")/g.f("rps")))
				} else {
					at = append(at, "-")
				}
			}
			if okOn && okOff {
				vsOff = fmt.Sprintf("%.2f", on.f("rps")/off.f("rps"))
			}
			cpu := "-"
			if okOn || okOff {
				cpu = cpuOf(on, okOn) + " / " + cpuOf(off, okOff)
			}
			ccpu := "-" // wrk does not say
			if okOn && on.f("ccpu") > 0 {
				ccpu = fmt.Sprintf("%.0f", on.f("ccpu"))
			}
			p("  "+n.label, toolName(on), rpsAt(on, okOn), rpsAt(off, okOff), rpsAt(pg, havePG), vsPG, v, strings.Join(at, " / "), vsOff, cpu, ccpu, noise(on, off, pg))
		}
		if rv, ok := one("river", map[string]string{"fsync": fs.v}); ok {
			p("  River welcome jobs worked after the REST sweep", "", rv.s("completed_per_s")+" jobs/s", "backlog "+rv.s("backlog"), "", "", "", "", "", "(2 usersd x RIVER_WORKERS=10)")
		}
		if ds := find("drain", map[string]string{"fsync": fs.v}); len(ds) > 0 {
			var parts []string
			for _, d := range ds {
				parts = append(parts, fmt.Sprintf("%s %s (after %s s)", d.s("entry"), d.s("backlog"), d.s("waited_s")))
			}
			p("  welcome backlog as each group started: " + strings.Join(parts, ", "))
		}
	}
	p("  target (fsync on, as in production): group commit's best >= pgbench's best; the fsync off rows have none (a commit costs little there, so batching gains little);")
	p("  CREATE_BATCH=off is a diagnostic (every create its own transaction), a second usersd running next to the first; CPU per request includes the River workers of the same process;")
	p("  client CPU: bench/load's own (Go's HTTP/2 client and connect-go's) per create, on the same CPUs; wrk's and pgbench's C clients take far less")
	p()

	pgCreateRows(p, entries, fsyncs)

	if len(find("quiet", nil)) == 0 {
		return
	}
	meta, _ := one("meta", nil)
	rate := find("quiet", nil)[0].s("rate")
	p(fmt.Sprintf("CreateUser at %s/s, open loop", rate), "tool", "group commit p50 / p99 ms", "CREATE_BATCH=off p50 / p99 ms", "p50 on / off", "<=1.10", "others")
	for _, fs := range fsyncs {
		if len(find("quiet", map[string]string{"fsync": fs.v})) == 0 {
			continue
		}
		p(fs.label)
		for _, n := range entries {
			ons := find("quiet", map[string]string{"entry": n.entry, "target": "usersd", "fsync": fs.v})
			offs := find("quiet", map[string]string{"entry": n.entry, "target": "nobatch", "fsync": fs.v})
			on, okOn := medianLatency(ons)
			off, okOff := medianLatency(offs)
			ratio, v := "-", "-"
			if okOn && okOff && off.p50 > 0 {
				x := on.p50 / off.p50
				ratio, v = fmt.Sprintf("%.2f", x), verdict(x <= 1.10 && on.errors == 0)
			}
			p("  "+n.label, "bench/load", on.String(okOn), off.String(okOff), ratio, v, noise(append(ons, offs...)...))
		}
	}
	p(fmt.Sprintf("  median of %s rounds of %s s each (p50 and p99 each the median round's), group commit and CREATE_BATCH=off alternating (ABBA), measured first in each fsync setting while the server is otherwise quiet", meta.s("quietrounds"), meta.s("quietdur")))
	p()
}

// pgCreateRows: PostgreSQL's CPU per create, group commit against
// CREATE_BATCH=off and against pgbench's single-create transaction at the
// same concurrency: what batching saves the database, which is what
// limits how far usersd scales out in front of one primary.
//
// Each run's window also holds some of the welcome jobs its creates
// queued, worked by River, and a different share for each (a fast run
// leaves more for after its window). pgbench's transaction does not work
// jobs either, so the compared figure is the create alone: the run's
// PostgreSQL CPU less its jobs at what a job cost PostgreSQL while River
// alone ran (the "river" record).
func pgCreateRows(p func(...string), entries []struct{ entry, label string }, fsyncs []struct{ v, label string }) {
	if len(find("create", map[string]string{"target": "pgbench"})) == 0 {
		return
	}
	p("PostgreSQL CPU per create, us: create alone (as measured)", "c", "group commit", "CREATE_BATCH=off", "pgbench 1-create tx", "group commit / pgbench", "target", "welcome jobs worked per create (same order)", "others")
	for _, fs := range fsyncs {
		if len(find("create", map[string]string{"fsync": fs.v})) == 0 {
			continue
		}
		perJob := 0.0 // PostgreSQL's us per welcome job
		rv, okRv := one("river", map[string]string{"fsync": fs.v})
		if okRv && rv.f("jobs") > 0 && rv.kv["pg_ticks"] != "" {
			perJob = rv.f("pg_ticks") / clkTck * 1e6 / rv.f("jobs")
		}
		label := fs.label
		if perJob > 0 {
			label += fmt.Sprintf(": a welcome job costs PostgreSQL %.0f us (River alone, %s jobs)", perJob, rv.s("jobs"))
		}
		p(label)
		// net is the create alone, when the cost of a job is known.
		net := func(r rec) (float64, bool) {
			if r.kv["pg_ticks"] == "" || r.f("total") == 0 {
				return 0, false
			}
			us := pgUs(r, "pg")
			if perJob > 0 && r.kv["jobs"] != "" {
				us -= r.f("jobs") / r.f("total") * perJob
			}
			return us, true
		}
		cell := func(r rec, ok bool) string {
			if !ok {
				return "-"
			}
			x, has := net(r)
			if !has {
				return "-"
			}
			if perJob > 0 && r.kv["jobs"] != "" {
				return fmt.Sprintf("%.0f (%.0f)", x, pgUs(r, "pg"))
			}
			return fmt.Sprintf("%.0f", x)
		}
		jobs := func(r rec, ok bool) string {
			if !ok || r.kv["jobs"] == "" || r.f("total") == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", r.f("jobs")/r.f("total"))
		}
		for _, n := range entries {
			label := "  " + n.label
			for _, c := range []string{"8", "32"} {
				on, okOn := one("create", map[string]string{"entry": n.entry, "target": "usersd", "fsync": fs.v, "conc": c})
				off, okOff := one("create", map[string]string{"entry": n.entry, "target": "nobatch", "fsync": fs.v, "conc": c})
				pg, okPG := one("create", map[string]string{"target": "pgbench", "fsync": fs.v, "conc": c})
				if !okOn && !okPG {
					continue
				}
				want := 1.0 // at c8 a batch holds a few creates at most: no worse than pgbench
				if c == "32" {
					want = 0.5
				}
				ratio, v := "-", ""
				a, aok := net(on)
				b, bok := net(pg)
				if okOn && okPG && aok && bok && b > 0 {
					x := a / b
					ratio = fmt.Sprintf("%.2f", x)
					if fs.v == "on" {
						v = fmt.Sprintf("<=%.1fx %s", want, verdict(x <= want && on.f("errors") == 0))
					}
				} else if fs.v == "on" {
					v = fmt.Sprintf("<=%.1fx MISS", want)
				}
				p(label, c, cell(on, okOn), cell(off, okOff), cell(pg, okPG), ratio, v,
					jobs(on, okOn)+" / "+jobs(off, okOff)+" / "+jobs(pg, okPG), noise(on, off, pg))
				label = ""
			}
		}
	}
	p("  the postmaster's whole process tree from /proc (backends, walwriter, checkpointer, autovacuum) over each run, per create or per transaction, as measured in parentheses;")
	p("  each run starts with no welcome job queued, and River works some of its jobs within it (the last column); the first figure takes those out at the cost of a job measured")
	p("  while River alone worked the REST sweep's backlog, leaving the create (pgbench: its transaction) alone, which the ratio and targets compare (fsync on: <= 0.5x pgbench at c32, <= 1.0x at c8)")
	p()
}

// replicaRows: GetUser with every read on the primary against reads on a
// streaming replica (phase replica), and read-after-write through a
// replica that applies WAL late, with the Consistency-Token and without.
func replicaRows(p func(...string), meta rec) {
	if len(find("replica", nil)) > 0 {
		p("GetUser from a streaming replica (back to back)", "tool", "RPS primary only -> with replica @c", "ratio", "usersd CPU us/req", "PG primary CPU us/req", "PG replica CPU us/req", "reads the replica served (/metrics)", ">=95%", "others")
		var how string
		for _, n := range []struct{ entry, label, short string }{
			{"rest-h1", "REST GET /users/{id}     HTTP/1.1", "REST"},
			{"cproto-h2c", "Connect proto            h2c", "Connect proto"},
		} {
			a, aok := best(find("replica", map[string]string{"entry": n.entry, "target": "primary"}))
			b, bok := best(find("replica", map[string]string{"entry": n.entry, "target": "replica"}))
			if !aok && !bok {
				continue
			}
			rps := func(r rec, ok bool) string {
				if !ok {
					return "-"
				}
				return fmt.Sprintf("%.0f", r.f("rps"))
			}
			conc := a.s("conc")
			if !aok {
				conc = b.s("conc")
			}
			ratio := "-"
			if aok && bok {
				ratio = fmt.Sprintf("%.2f", b.f("rps")/a.f("rps"))
			}
			pgr := func(r rec, ok bool) string {
				if !ok {
					return "-"
				}
				return pgPerReq(r, "pgr")
			}
			served, check := "-", "MISS"
			if bok {
				all := b.f("reads_primary") + b.f("reads_replica")
				if all > 0 {
					share := b.f("reads_replica") / all
					served = fmt.Sprintf("%.0f of %.0f (%.1f%%)", b.f("reads_replica"), all, share*100)
					check = verdict(share >= 0.95)
				}
			}
			p(n.label, toolName(b), fmt.Sprintf("%s -> %s @%s", rps(a, aok), rps(b, bok), conc), ratio,
				cpuOf(a, aok)+" -> "+cpuOf(b, bok), pgOf(a, aok)+" -> "+pgOf(b, bok), pgr(a, aok)+" -> "+pgr(b, bok), served, check, noise(a, b))
			if how == "" && aok && bok && pgUs(b, "pgr") > 0 {
				how = fmt.Sprintf("  how to read it: all of this shares the machine's %s CPUs, so RPS cannot grow here; per read the primary's PostgreSQL went from %.0f to %.0f us of CPU and the replica's took %.0f us (%s),",
					meta.s("cpus"), pgUs(a, "pg"), pgUs(b, "pg"), pgUs(b, "pgr"), n.short)
				how += fmt.Sprintf("\n  so a replica on a machine of its own serves about %.0f reads/s per CPU it has, and the primary keeps its CPU for writes; usersd's own %s us per read is spent wherever usersd runs",
					math.Round(1e6/pgUs(b, "pgr")/100)*100, cpuPerReq(b))
			}
		}
		p(fmt.Sprintf("  best of %s rounds each, alternating (ABBA), at phase 2's peak concurrency (else the largest swept); \"with replica\" is a second usersd with READ_DATABASE_URLS", meta.s("replicarounds")))
		p("  naming a streaming replica (pg_basebackup -R, no apply delay) of the same PostgreSQL, REPLICA_MAX_LAG=1s; PG CPU: each server's postmaster tree over the run, per request")
		if how != "" {
			for l := range strings.SplitSeq(how, "\n") {
				p(l)
			}
		}
		p()
	}

	if len(find("raw", nil)) == 0 {
		return
	}
	r0 := find("raw", nil)[0]
	p(fmt.Sprintf("Read-after-write, REST: POST /users, then GET it; replica applying %s late, %s pairs/s open loop", r0.s("delay"), r0.s("rate")),
		"pairs", "pair p50 / p99 ms", "create / GET p50 ms", "stale reads (GET 404)", "target", "reads on replica / primary (/metrics)", "others")
	for _, m := range []struct{ mode, label string }{
		{"token", "  Consistency-Token sent back"},
		{"none", "  without it"},
	} {
		rs := find("raw", map[string]string{"mode": m.mode})
		if len(rs) == 0 {
			continue
		}
		var pairs, stale, errs, rr, rp float64
		var p50s, p99s, c50s, g50s []float64
		for _, r := range rs {
			pairs += r.f("pairs")
			stale += r.f("stale")
			errs += r.f("errors")
			rr += r.f("reads_replica")
			rp += r.f("reads_primary")
			p50s, p99s = append(p50s, r.f("p50")), append(p99s, r.f("p99"))
			c50s, g50s = append(c50s, r.f("create_p50")), append(g50s, r.f("get_p50"))
		}
		st := fmt.Sprintf("%.0f", stale)
		if pairs > 0 {
			st += fmt.Sprintf(" (%.0f%%)", stale/pairs*100)
		}
		if errs > 0 {
			st += fmt.Sprintf(", %.0f errors", errs)
		}
		target := "(some expected: the replica is behind)"
		if m.mode == "token" {
			target = "=0 " + verdict(pairs > 0 && stale == 0 && errs == 0)
		}
		p(m.label, fmt.Sprintf("%.0f", pairs), fmt.Sprintf("%.1f / %.1f", median(p50s), median(p99s)), fmt.Sprintf("%.1f / %.1f", median(c50s), median(g50s)),
			st, target, fmt.Sprintf("%.0f / %.0f", rr, rp), noise(rs...))
	}
	p(fmt.Sprintf("  %s rounds of %s s each, the two alternating (ABBA); latencies the median round's, counts summed; the pair's latency runs from its scheduled start to the GET's answer;", meta.s("replicarounds"), meta.s("dur")))
	p("  with the token usersd sends the GET to a database that has replayed the create (the primary, until the replica's next check shows it there); without it, to the replica while it is")
	p("  less than REPLICA_MAX_LAG (1s) behind; PostgreSQL's synchronous_commit is off in these rows, so the replica also sees each commit up to a WAL writer cycle (200 ms) late")
	p()
}

// feedRows: the change feed (phase feed): one pager's throughput, watch
// latency, memory per idle watcher, and CreateUser against the release
// before the feed.
func feedRows(p func(...string)) {
	if len(find("feedpage", nil))+len(find("feedwatch", nil))+len(find("feedmem", nil))+len(find("feedcreate", nil)) == 0 {
		return
	}
	meta, _ := one("meta", nil)

	if len(find("feedpage", nil)) > 0 {
		p("Change feed: one pager, page_size 1000", "tool", "events/s", "events read / pages", "page p50 / p99 ms", "bytes/event (on the wire)", "server CPU us/event", "client CPU us/event", "others")
		for _, n := range []struct{ entry, label string }{
			{"cproto-h2c", "  ListUserEvents, Connect proto (gzip)  h2c"},
			{"cproto-h2c-identity", "  ListUserEvents, Connect proto         h2c"},
			{"rest-h1", "  GET /user-events                     HTTP/1.1"},
		} {
			r, ok := bestBy(find("feedpage", map[string]string{"entry": n.entry}), "eps")
			if !ok {
				p(n.label, "bench/load", "- (failed)")
				continue
			}
			cpu := "-"
			if r.kv["ticks"] != "" {
				cpu = fmt.Sprintf("%.1f", r.f("ticks")/clkTck*1e6/r.f("events"))
			}
			p(n.label, "bench/load", fmt.Sprintf("%.0f", r.f("eps")), fmt.Sprintf("%s / %s", r.s("events"), r.s("pages")),
				fmt.Sprintf("%.1f / %.1f", r.f("p50"), r.f("p99")), fmt.Sprintf("%.0f (%.0f)", r.f("bytes")/r.f("events"), r.f("wire")/r.f("events")), cpu, fmt.Sprintf("%.1f", r.f("ccpu")), noise(r))
		}
		p("  the whole feed from after=\"0\", each page asked for once the one before has arrived; best of 2 reads each (ABBA); the events were written in SQL")
		p("  (bench/sql/events.sql: one \"created\" event per seeded user, 100 to a transaction); bytes: the message or body, and what the connection carried;")
		p("  gzip: connect-go's client accepts it by default and usersd compresses responses of 1 KiB and more; server CPU: usersd's own, PostgreSQL's not included")
		p()
	}

	if ws := find("feedwatch", nil); len(ws) > 0 {
		w0 := ws[0]
		p(fmt.Sprintf("Watch latency at %s changes/s for %s s, write response -> watcher", w0.s("rate"), w0.s("seconds")), "watchers", "p50 / p99 / max ms", "p99<1s", "received / expected", "before the response", "others")
		for _, n := range []struct{ target, kind, label string }{
			{"same", "cproto", "  same usersd as the writes  Connect proto  h2c"},
			{"same", "sse", "  same usersd as the writes  SSE            HTTP/1.1"},
			{"other", "cproto", "  another usersd (polls)     Connect proto  h2c"},
			{"other", "sse", "  another usersd (polls)     SSE            HTTP/1.1"},
		} {
			r, ok := one("feedwatch", map[string]string{"target": n.target, "kind": n.kind})
			if !ok {
				continue
			}
			recv := fmt.Sprintf("%.0f / %.0f", r.f("samples"), r.f("expected"))
			if r.f("missing") > 0 {
				recv += " (" + r.s("missing") + " missing)"
			}
			p(n.label, r.s("watchers"), fmt.Sprintf("%.1f / %.1f / %.1f", r.f("p50"), r.f("p99"), r.f("max")),
				verdict(r.f("samples") > 0 && r.f("p99") < 1000 && r.f("missing") == 0 && r.f("errors") == 0), recv, r.s("early"), noise(r))
		}
		p(fmt.Sprintf("  %s changes (creates and updates in turn, Connect proto, open loop) through the first usersd; write p50 / p99 %.1f / %.1f ms, %s failed, generator lag p99 %.1f ms;",
			w0.s("writes"), w0.f("wp50"), w0.f("wp99"), w0.s("werrors"), w0.f("lag99")))
		p("  each watcher on its own connection, from now on (after=\"\"); the first usersd's hub polls at once after its own writes, the other's every 200 ms;")
		p("  \"before the response\": events that reached a watcher before the write's response reached the writer, counted as 0 ms")
		p()
	}

	if m, ok := one("feedmem", nil); ok {
		p("Idle watchers on one fresh usersd", "watchers", "VmRSS growth", "per watcher", "Go heap + stacks growth", "total<64MiB", "others")
		if m.f("errors") > 0 || m.kv["base_kb"] == "" {
			p("  (failed: see the log)", "", "", "", "", "MISS")
		} else {
			mib := func(kb float64) string { return fmt.Sprintf("%.1f MiB", kb/1024) }
			per := func(kb, n float64) string {
				if n == 0 {
					return "-"
				}
				return fmt.Sprintf("%.1f KiB", kb/n)
			}
			gmib := func(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
			ds, dsse, dall := m.f("streams_kb")-m.f("base_kb"), m.f("all_kb")-m.f("streams_kb"), m.f("all_kb")-m.f("base_kb")
			p(fmt.Sprintf("  Connect proto streams, h2c (%s connections)", m.s("conns")), m.s("streams"), mib(ds), per(ds, m.f("streams")), gmib(m.f("streams_go")-m.f("base_go")), "")
			p("  SSE, HTTP/1.1 (a connection each)", m.s("sse"), mib(dsse), per(dsse, m.f("sse")), gmib(m.f("all_go")-m.f("streams_go")), "")
			n := m.f("streams") + m.f("sse")
			p("  all", fmt.Sprintf("%.0f", n), mib(dall), per(dall, n), gmib(m.f("all_go")-m.f("base_go")), "<64 MiB "+verdict(dall/1024 < 64), noise(m))
		}
		p(fmt.Sprintf("  VmRSS from /proc (median of 3 readings) after a GC forced through pprof and 3 s for the scavenger; %.1f MiB with no watcher; Go heap + stacks: HeapInuse + StackInuse", m.f("base_kb")/1024))
		p()
	}

	if len(find("feedcreate", nil)) > 0 {
		with := "this tree"
		if w := meta.s("feedwith"); w != "" && w != "tree" {
			with = w
		}
		p(fmt.Sprintf("CreateUser with the feed (%s) vs the previous release (%s), 100k users", with, meta.s("feedprev")), "tool", "with feed RPS @c", "previous RPS @c", "ratio", ">=0.85", "CPU us/req feed / prev (both usersd)", "PG CPU us/req feed / prev", "client CPU us/req", "others")
		for _, n := range []struct{ entry, label string }{
			{"rest-create", "  REST POST /users         HTTP/1.1"},
			{"cproto-create", "  Connect proto            h2c"},
		} {
			f, okF := best(find("feedcreate", map[string]string{"entry": n.entry, "target": "feed"}))
			pr, okP := best(find("feedcreate", map[string]string{"entry": n.entry, "target": "prev"}))
			ratio, v := "-", "MISS"
			if okF && okP {
				x := f.f("rps") / pr.f("rps")
				ratio, v = fmt.Sprintf("%.2f", x), verdict(x >= 0.85)
			}
			ccpu := "-"
			if okF && f.f("ccpu") > 0 {
				ccpu = fmt.Sprintf("%.0f", f.f("ccpu"))
			}
			cpu := bothCPU(f, okF) + " / " + bothCPU(pr, okP)
			if okF && okP {
				cpu += fmt.Sprintf(" (%+.0f%%)", (bothCPUus(f)/bothCPUus(pr)-1)*100)
			}
			p(n.label, toolName(f), rpsAt(f, okF), rpsAt(pr, okP), ratio, v, cpu, pgOf(f, okF)+" / "+pgOf(pr, okP), ccpu, noise(f, pr))
		}
		p(fmt.Sprintf("  peak (closed loop, %s s runs) over concurrency %s, %s rounds, the two back to back at each in turns (ABBA), each run from an empty welcome backlog, group commit on in both;",
			meta.s("feeddur"), meta.s("createconcs"), meta.s("feedrounds")))
		p("  every change between the two is in the ratio, not only the event row (BENCH_FEED_WITH=<the feed's commit> leaves out the later ones); a build from a commit migrates")
		p("  a scratch database of its own and serves the bench one (the previous release ignores user_events);")
		p("  CPU: both usersd processes over each run, per create (either one's River works a welcome job), at each one's peak")
		p()
	}
}

// bothCPUus is a feedcreate record's CPU per request of both usersd.
func bothCPUus(r rec) float64 {
	if r.f("total") == 0 {
		return 0
	}
	return (r.f("ticks") + r.f("ticks_other")) / clkTck * 1e6 / r.f("total")
}

func bothCPU(r rec, ok bool) string {
	if !ok || r.f("total") == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", bothCPUus(r))
}

// bestBy is the error-free record with the highest value of key.
func bestBy(rs []rec, key string) (rec, bool) {
	var b rec
	ok := false
	for _, r := range rs {
		if r.f("errors") > 0 || r.f(key) == 0 {
			continue
		}
		if !ok || r.f(key) > b.f(key) {
			b, ok = r, true
		}
	}
	return b, ok
}

// allocs is a prof record's heap allocations per request: ours, connect-go,
// net/http and all.
func allocs(r rec) string {
	if r.s("a_total") == "" {
		return "-"
	}
	return fmt.Sprintf("%.0f / %.0f / %.0f / %.0f", r.f("a_ours"), r.f("a_connect"), r.f("a_nethttp"), r.f("a_total"))
}

func cpuOf(r rec, ok bool) string {
	if !ok {
		return "-"
	}
	return cpuPerReq(r)
}

type latency struct {
	p50, p99 float64
	errors   float64
}

func (l latency) String(ok bool) string {
	if !ok {
		return "-"
	}
	s := fmt.Sprintf("%.2f / %.2f", l.p50, l.p99)
	if l.errors > 0 {
		s += fmt.Sprintf(" (%.0f errors)", l.errors)
	}
	return s
}

// medianLatency is the median over rounds of p50 and of p99 (one round
// thrown off by the machine moves neither), with every round's errors.
func medianLatency(rs []rec) (latency, bool) {
	var l latency
	var p50s, p99s []float64
	for _, r := range rs {
		p50s = append(p50s, r.f("p50"))
		p99s = append(p99s, r.f("p99"))
		l.errors += r.f("errors")
	}
	l.p50, l.p99 = median(p50s), median(p99s)
	return l, len(rs) > 0
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func tool(r rec) string {
	if t := r.s("tool"); t != "closed" {
		return t
	}
	return "bench/load"
}

func rpsAt(r rec, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.0f @%s", r.f("rps"), r.s("conc"))
}

// toolName is the load tool of a row as the report names it: bench/load's
// closed-loop mode shows as bench/load.
func toolName(r rec) string {
	if t := r.s("tool"); t != "closed" {
		return t
	}
	return "bench/load"
}
