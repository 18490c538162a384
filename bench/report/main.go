// Command report turns bench/run.sh's results file into the one table of
// `make bench`: usersd against its baselines, the ratios and the targets.
//
//	go run ./bench/report bench/out/results.txt
package main

import (
	"bufio"
	"fmt"
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

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
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
			ls = append(ls, l.s("phase")+" "+l.s("avg"))
		}
		fmt.Printf("load average as each phase started: %s\n", strings.Join(ls, ", "))
	}
	fmt.Println()

	// GetUser.
	pgGet, havePG := best(find("get", map[string]string{"target": "pgbench"}))
	p("GetUser, 100k users", "tool", "usersd RPS @c", "bare RPS @c", "R_overhead", ">=0.90", "usersd CPU us/req", "bare CPU us/req", "R_cpu", "R_db", "usersd p50 / p99 ms @ half peak", "p99<=5ms", "bare p50 / p99 same rate", "gen lag p99")
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
		ratio, rv := "-", "-"
		if uok && bok {
			x := u.f("rps") / b.f("rps")
			ratio, rv = fmt.Sprintf("%.2f", x), verdict(x >= 0.90)
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
		if l, ok := one("latency", map[string]string{"entry": n.entry, "target": "bare"}); ok {
			blat = fmt.Sprintf("%.2f / %.2f", l.f("p50"), l.f("p99"))
			if l.f("errors") > 0 {
				blat += fmt.Sprintf(" (%s errors)", l.s("errors"))
			}
		}
		if l, ok := one("latency", map[string]string{"entry": n.entry, "target": "usersd"}); ok {
			lag = fmt.Sprintf("%.2f ms", l.f("lag99"))
			lat = fmt.Sprintf("%.2f / %.2f @ %s/s", l.f("p50"), l.f("p99"), l.s("rate"))
			if l.f("errors") > 0 {
				lat += fmt.Sprintf(" (%s errors)", l.s("errors"))
			}
			lv = verdict(l.f("p99") <= 5 && l.f("errors") == 0)
		}
		p(n.label, tool, rpsAt(u, uok), rpsAt(b, bok), ratio, rv, cpuPerReq(u), cpuPerReq(b), rcpu, rdb, lat, lv, blat, lag)
	}
	if havePG {
		p("pgbench SELECT by id (-M prepared)", "pgbench", "", rpsAt(pgGet, true)+" TPS", "", "", "", "", "", "= 1", "", "")
	}
	p("  R_overhead = usersd RPS / bare RPS at their peaks; R_cpu = bare CPU per request / usersd CPU per request at usersd's peak concurrency (the same ratio without the load generator's share of the CPUs)")
	p()

	profileRows(p, names)

	createRows(p)

	feedRows(p)

	// Access log.
	p("Access log (warn -> info, back to back)", "tool", "RPS off -> on", "change", "", "", "CPU us/req off -> on")
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
			cpuPerReq(off)+" -> "+cpuPerReq(on))
	}
	p()

	// Authentication.
	if len(find("auth", nil)) > 0 {
		p("Authentication (AUTH_DISABLED -> token, back to back)", "tool", "RPS off -> on", "ratio", ">=0.90", "", "CPU us/req off -> on")
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
				cpu(off, okOff)+" -> "+cpu(on, okOn))
		}
		p(fmt.Sprintf("  best of %s runs each, off/on alternating; rate limits off in both: authentication alone (token verified once, then cached)", meta.s("authrounds")))
		p()
	}

	// Scale.
	s10k, ok1 := one("scale", map[string]string{"entry": "users10k"})
	s1m, ok2 := one("scale", map[string]string{"entry": "users1m"})
	p("Scale", "tool", "measure", "value", "ratio", "target")
	if ok1 && ok2 {
		x := s1m.f("p50") / s10k.f("p50")
		p("GetUser p50, Connect proto", "bench/load", fmt.Sprintf("10k users @ %s/s", s10k.s("rate")), fmt.Sprintf("%.3f ms (p99 %.2f)", s10k.f("p50"), s10k.f("p99")), "", "")
		p("", "", fmt.Sprintf("1M users @ %s/s", s1m.s("rate")), fmt.Sprintf("%.3f ms (p99 %.2f)", s1m.f("p50"), s1m.f("p99")),
			fmt.Sprintf("%.2f", x), "<=1.20 "+verdict(x <= 1.20))
	}
	l1p, _ := one("listpeak", map[string]string{"entry": "page1"})
	l1000p, okp := one("listpeak", map[string]string{"entry": "page1000"})
	l1r, _ := one("listrate", map[string]string{"entry": "page1"})
	l1000r, okr := one("listrate", map[string]string{"entry": "page1000"})
	if okp && okr {
		p("ListUsers 50/page, 1M users", "wrk", "page 1 / page 1000 RPS @32", fmt.Sprintf("%.0f / %.0f", l1p.f("rps"), l1000p.f("rps")),
			fmt.Sprintf("%.2f", l1000p.f("rps")/l1p.f("rps")), ">=0.80 "+verdict(l1000p.f("rps")/l1p.f("rps") >= 0.80))
		x := l1000r.f("p50") / l1r.f("p50")
		p("  (REST GET /users)", "bench/load", fmt.Sprintf("page 1 / page 1000 p50 @ %s/s", l1r.s("rate")), fmt.Sprintf("%.2f / %.2f ms", l1r.f("p50"), l1000r.f("p50")),
			fmt.Sprintf("%.2f", x), "<=1.20 "+verdict(x <= 1.20))
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
			bad = append(bad, fmt.Sprintf("%s %s %s c=%s rate=%s: %s errors", r.section, r.s("entry"), r.s("target"), r.s("conc"), r.s("rate"), r.s("errors")))
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
	hdr = append(hdr, "in syscalls", "read / write syscalls", "allocs: ours / connect-go / net/http / all")
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
			cols = append(cols, r.s("syscall"), r.s("syscr")+" / "+r.s("syscw"), allocs(r))
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
	p("CreateUser (+ welcome job), 100k users", "tool", "group commit RPS @c", "CREATE_BATCH=off RPS @c", "pgbench 1-create tx TPS @c", "vs pgbench", ">=1.5", "vs off", "CPU us/req on / off", "client CPU us/req")
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
				vsPG, v = fmt.Sprintf("%.2f", x), verdict(x >= 1.5)
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
			p("  "+n.label, toolName(on), rpsAt(on, okOn), rpsAt(off, okOff), rpsAt(pg, havePG), vsPG, v, vsOff, cpu, ccpu)
		}
		if rv, ok := one("river", map[string]string{"fsync": fs.v}); ok {
			p("  River welcome jobs worked after the REST sweep", "", rv.s("completed_per_s")+" jobs/s", "backlog "+rv.s("backlog"), "", "", "", "", "(2 usersd x RIVER_WORKERS=10)")
		}
		if ds := find("drain", map[string]string{"fsync": fs.v}); len(ds) > 0 {
			var parts []string
			for _, d := range ds {
				parts = append(parts, fmt.Sprintf("%s %s (after %s s)", d.s("entry"), d.s("backlog"), d.s("waited_s")))
			}
			p("  welcome backlog as each group started: " + strings.Join(parts, ", "))
		}
	}
	p("  CREATE_BATCH=off is a diagnostic (every create its own transaction), a second usersd running next to the first; CPU per request includes the River workers of the same process;")
	p("  client CPU: bench/load's own (Go's HTTP/2 client and connect-go's) per create, on the same CPUs; wrk's and pgbench's C clients take far less")
	p()

	if len(find("quiet", nil)) == 0 {
		return
	}
	meta, _ := one("meta", nil)
	rate := find("quiet", nil)[0].s("rate")
	p(fmt.Sprintf("CreateUser at %s/s, open loop", rate), "tool", "group commit p50 / p99 ms", "CREATE_BATCH=off p50 / p99 ms", "p50 on / off", "<=1.10", "", "", "")
	for _, fs := range fsyncs {
		if len(find("quiet", map[string]string{"fsync": fs.v})) == 0 {
			continue
		}
		p(fs.label)
		for _, n := range entries {
			on, okOn := medianLatency(find("quiet", map[string]string{"entry": n.entry, "target": "usersd", "fsync": fs.v}))
			off, okOff := medianLatency(find("quiet", map[string]string{"entry": n.entry, "target": "nobatch", "fsync": fs.v}))
			ratio, v := "-", "-"
			if okOn && okOff && off.p50 > 0 {
				x := on.p50 / off.p50
				ratio, v = fmt.Sprintf("%.2f", x), verdict(x <= 1.10 && on.errors == 0)
			}
			p("  "+n.label, "bench/load", on.String(okOn), off.String(okOff), ratio, v, "", "", "")
		}
	}
	p(fmt.Sprintf("  median of %s rounds of %s s each (p50 and p99 each the median round's), group commit and CREATE_BATCH=off alternating (ABBA), measured first in each fsync setting while the server is otherwise quiet", meta.s("quietrounds"), meta.s("quietdur")))
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
		p("Change feed: one pager, page_size 1000", "tool", "events/s", "events read / pages", "page p50 / p99 ms", "bytes/event (on the wire)", "server CPU us/event", "client CPU us/event")
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
				fmt.Sprintf("%.1f / %.1f", r.f("p50"), r.f("p99")), fmt.Sprintf("%.0f (%.0f)", r.f("bytes")/r.f("events"), r.f("wire")/r.f("events")), cpu, fmt.Sprintf("%.1f", r.f("ccpu")))
		}
		p("  the whole feed from after=\"0\", each page asked for once the one before has arrived; best of 2 reads each (ABBA); the events were written in SQL")
		p("  (bench/sql/events.sql: one \"created\" event per seeded user, 100 to a transaction); bytes: the message or body, and what the connection carried;")
		p("  gzip: connect-go's client accepts it by default and usersd compresses responses of 1 KiB and more; server CPU: usersd's own, PostgreSQL's not included")
		p()
	}

	if ws := find("feedwatch", nil); len(ws) > 0 {
		w0 := ws[0]
		p(fmt.Sprintf("Watch latency at %s changes/s for %s s, write response -> watcher", w0.s("rate"), w0.s("seconds")), "watchers", "p50 / p99 / max ms", "p99<1s", "received / expected", "before the response")
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
				verdict(r.f("samples") > 0 && r.f("p99") < 1000 && r.f("missing") == 0 && r.f("errors") == 0), recv, r.s("early"))
		}
		p(fmt.Sprintf("  %s changes (creates and updates in turn, Connect proto, open loop) through the first usersd; write p50 / p99 %.1f / %.1f ms, %s failed, generator lag p99 %.1f ms;",
			w0.s("writes"), w0.f("wp50"), w0.f("wp99"), w0.s("werrors"), w0.f("lag99")))
		p("  each watcher on its own connection, from now on (after=\"\"); the first usersd's hub polls at once after its own writes, the other's every 200 ms;")
		p("  \"before the response\": events that reached a watcher before the write's response reached the writer, counted as 0 ms")
		p()
	}

	if m, ok := one("feedmem", nil); ok {
		p("Idle watchers on one fresh usersd", "watchers", "VmRSS growth", "per watcher", "Go heap + stacks growth", "total<64MiB")
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
			p("  all", fmt.Sprintf("%.0f", n), mib(dall), per(dall, n), gmib(m.f("all_go")-m.f("base_go")), "<64 MiB "+verdict(dall/1024 < 64))
		}
		p(fmt.Sprintf("  VmRSS from /proc (median of 3 readings) after a GC forced through pprof and 3 s for the scavenger; %.1f MiB with no watcher; Go heap + stacks: HeapInuse + StackInuse", m.f("base_kb")/1024))
		p()
	}

	if len(find("feedcreate", nil)) > 0 {
		with := "this tree"
		if w := meta.s("feedwith"); w != "" && w != "tree" {
			with = w
		}
		p(fmt.Sprintf("CreateUser with the feed (%s) vs the previous release (%s), 100k users", with, meta.s("feedprev")), "tool", "with feed RPS @c", "previous RPS @c", "ratio", ">=0.85", "CPU us/req feed / prev (both usersd)", "client CPU us/req")
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
			p(n.label, toolName(f), rpsAt(f, okF), rpsAt(pr, okP), ratio, v, cpu, ccpu)
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
