// Command cpu tells bench/run.sh whose CPU time a measurement shared the
// machine with: every process other than the bench's own, and each
// PostgreSQL server's, over the same window, from /proc.
//
//	cpu -root PID [-pg NAME=DIR]... -save FILE   (at the start of a window)
//	cpu -root PID [-pg NAME=DIR]... -since FILE  (at its end)
//
// -since prints one line of key=value pairs:
//
//	others=F bench=F kernel=F steal=F NAME_ticks=N...
//
// others is the share of the machine's CPUs (0..1, all of them over the
// window) that went to processes outside the bench: the machine's busy time
// (/proc/stat: user, nice, system, irq, softirq) less the process tree of
// -root (run.sh: usersd, the bare handler, the load generators, pgbench,
// psql), less each -pg server's (the postmaster of DIR/data/postmaster.pid
// and everything under it), less the kernel's own threads (kthreadd's
// tree), which is kernel=F: they write the bench's WAL and data to disk
// too, so they are kept apart instead of counted as someone else's work.
// steal is the time the hypervisor gave to other guests. NAME_ticks is the
// CPU time of server NAME in clock ticks (CLK_TCK).
//
// A tree's CPU time at an instant is the sum over its live processes of
// utime + stime + cutime + cstime: a child that exits is waited for by its
// parent, whose cutime/cstime then carry all of it, so the sum does not
// drop when a backend, an autovacuum worker or a wrk run ends, and the
// difference between two instants is what the tree spent in between, also
// for processes born or gone within the window. A process counts for the
// nearest of the roots above it.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

func main() {
	root := flag.Int("root", 0, "pid whose process tree is the bench's own")
	save := flag.String("save", "", "write the counters to this file")
	since := flag.String("since", "", "print what was spent since the counters in this file")
	var pgs []named
	flag.Func("pg", "NAME=DIR: a PostgreSQL server (DIR/data/postmaster.pid), repeatable", func(s string) error {
		n, d, ok := strings.Cut(s, "=")
		if !ok || n == "" || d == "" {
			return fmt.Errorf("want NAME=DIR, got %q", s)
		}
		pgs = append(pgs, named{n, d})
		return nil
	})
	flag.Parse()
	if *root <= 0 || (*save == "") == (*since == "") {
		fmt.Fprintln(os.Stderr, "usage: cpu -root PID [-pg NAME=DIR]... -save FILE | -since FILE")
		os.Exit(2)
	}
	now, err := snapshot(*root, pgs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu:", err)
		os.Exit(1)
	}
	if *save != "" {
		if err := os.WriteFile(*save, now.encode(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "cpu:", err)
			os.Exit(1)
		}
		return
	}
	b, err := os.ReadFile(*since)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cpu:", err)
		os.Exit(1)
	}
	fmt.Println(report(decode(b), now, pgs))
}

type named struct{ name, dir string }

// counters are clock ticks: the machine's (all, busy, steal) and each
// tree's ("bench", "kernel", "pg:NAME").
type counters map[string]float64

func (c counters) encode() []byte {
	var b bytes.Buffer
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %.1f\n", k, c[k])
	}
	return b.Bytes()
}

func decode(b []byte) counters {
	c := counters{}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			c[k] = f
		}
	}
	return c
}

func report(then, now counters, pgs []named) string {
	d := func(k string) float64 { return max(0, now[k]-then[k]) }
	all := d("all")
	if all <= 0 {
		return "others=0 bench=0 kernel=0 steal=0"
	}
	own := d("bench") + d("kernel")
	var out []string
	for _, p := range pgs {
		k := "pg:" + p.name
		_, a := then[k]
		_, b := now[k]
		if !a || !b { // not running at one end: no number rather than a wrong one
			continue
		}
		own += d(k)
		out = append(out, fmt.Sprintf("%s_ticks=%.0f", p.name, d(k)))
	}
	others := max(0, d("busy")-own) / all
	return strings.Join(append([]string{
		fmt.Sprintf("others=%.3f bench=%.3f kernel=%.3f steal=%.3f", others, d("bench")/all, d("kernel")/all, d("steal")/all),
	}, out...), " ")
}

type proc struct {
	ppid int
	cum  float64 // utime + stime + cutime + cstime
}

// snapshot reads the machine's counters before and after the processes'
// and takes their mean, so that both stand for about the same instant.
func snapshot(root int, pgs []named) (counters, error) {
	all0, busy0, steal0, err := machine()
	if err != nil {
		return nil, err
	}
	procs := processes()
	all1, busy1, steal1, err := machine()
	if err != nil {
		return nil, err
	}
	c := counters{"all": (all0 + all1) / 2, "busy": (busy0 + busy1) / 2, "steal": (steal0 + steal1) / 2}

	roots := map[int]string{root: "bench", 2: "kernel"}
	for _, p := range pgs {
		b, err := os.ReadFile(filepath.Join(p.dir, "data", "postmaster.pid"))
		if err != nil {
			continue // stopped
		}
		first, _, _ := strings.Cut(string(b), "\n")
		if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil {
			if _, alive := procs[pid]; alive {
				roots[pid] = "pg:" + p.name
				c["pg:"+p.name] = 0
			}
		}
	}
	c["bench"], c["kernel"] = 0, 0
	for pid, p := range procs {
		// The nearest root above the process, itself included.
		for q, hops := pid, 0; q > 0 && hops < 64; hops++ {
			if name, ok := roots[q]; ok {
				c[name] += p.cum
				break
			}
			parent, ok := procs[q]
			if !ok {
				break
			}
			q = parent.ppid
		}
	}
	return c, nil
}

// machine reads the "cpu" line of /proc/stat: all ticks, the busy ones
// (user, nice, system, irq, softirq; guest time is inside user and nice)
// and steal.
func machine() (all, busy, steal float64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return 0, 0, 0, err
	}
	fs := strings.Fields(line)
	if len(fs) < 9 || fs[0] != "cpu" {
		return 0, 0, 0, fmt.Errorf("unexpected /proc/stat: %q", line)
	}
	var v [8]float64
	for i := range v {
		v[i], _ = strconv.ParseFloat(fs[i+1], 64)
		all += v[i]
	}
	// user nice system idle iowait irq softirq steal
	return all, v[0] + v[1] + v[2] + v[5] + v[6], v[7], nil
}

// processes reads every process's parent and CPU time; one that exits
// while being read is skipped (its parent's cutime has it, or soon will).
func processes() map[int]proc {
	out := map[int]proc{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// comm, in parentheses, may hold spaces and parentheses itself.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fs := strings.Fields(string(b[i+1:]))
		// fs[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
		if len(fs) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(fs[1])
		var cum float64
		for _, f := range fs[11:15] {
			v, _ := strconv.ParseFloat(f, 64)
			cum += v
		}
		out[pid] = proc{ppid: ppid, cum: cum}
	}
	return out
}
