package drill

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ScaleOptions configure the scale measurement.
type ScaleOptions struct {
	// EnvFile is the cluster's cluster.env.
	EnvFile string
	// Phase is how long each measured phase lasts.
	Phase time.Duration
	// Workers pre-sign and sign in the notification phase; Connections
	// are wrk's in the GET phase.
	Workers, Connections int
	// Out receives the report.
	Out io.Writer
}

// cpuGroup is a set of processes whose CPU time is summed: each root, its
// living children, and the children it has waited for.
type cpuGroup struct {
	name  string
	roots []int
}

func (g cpuGroup) cpu() time.Duration {
	var t time.Duration
	for _, r := range g.roots {
		s, ok := readStat(r)
		if !ok || s.state == 'Z' || s.state == 'X' {
			// Gone (a stopped replica): it takes no CPU now, and a
			// zombie's times vanish when it is reaped.
			continue
		}
		t += s.cpuTime + s.childTime
		for _, c := range children(r) {
			if cs, ok := readStat(c); ok {
				t += cs.cpuTime
			}
		}
	}
	return t
}

// scaleRow is one measured phase.
type scaleRow struct {
	replicas  int
	op        string
	ops       int
	elapsed   time.Duration
	p99       time.Duration
	cpu       map[string]time.Duration
	loadExtra time.Duration // wrk's own CPU
}

// Scale measures notifications/s and GET/s through the front with 3, 2 and
// then 1 contractd replicas (the others stopped), and each process's CPU
// per operation. It stops replicas of the cluster: run it on a cluster of
// its own (scripts/scale starts one).
func Scale(ctx context.Context, opt ScaleOptions) error {
	env, err := LoadEnv(ctx, opt.EnvFile)
	if err != nil {
		return err
	}
	nodes, err := env.nodes()
	if err != nil {
		return err
	}
	c := newClient(env)
	replicas := strings.Fields(env["CONTRACTD_REPLICAS"])
	pidOf := func(key string) int {
		p, _ := strconv.Atoi(env[key])
		return p
	}
	var cpuGroups []cpuGroup
	for _, n := range replicas {
		cpuGroups = append(cpuGroups, cpuGroup{name: "contractd" + n, roots: []int{pidOf("CONTRACTD" + n + "_PID")}})
	}
	var pgRoots []int
	for _, n := range nodes {
		if pm, err := postmasterPid(n.dataDir); err == nil {
			pgRoots = append(pgRoots, pm)
		}
	}
	leader, _ := c.leader(ctx, nodes)
	leaderPM, _ := postmasterPid(leader.dataDir)
	var standbys []int
	for _, p := range pgRoots {
		if p != leaderPM {
			standbys = append(standbys, p)
		}
	}
	cpuGroups = append(cpuGroups,
		cpuGroup{name: "postgres leader", roots: []int{leaderPM}},
		cpuGroup{name: "postgres standbys", roots: standbys},
		cpuGroup{name: "pgbouncer", roots: []int{pidOf("PGBOUNCER_PID")}},
		cpuGroup{name: "haproxy db", roots: []int{pidOf("HAPROXY_DB_PID")}},
		cpuGroup{name: "haproxy front", roots: []int{pidOf("HAPROXY_APP_PID")}},
		cpuGroup{name: "simulator", roots: []int{pidOf("SIM_PID")}},
		cpuGroup{name: "load generator", roots: []int{os.Getpid()}},
	)
	sample := func() map[string]time.Duration {
		m := map[string]time.Duration{}
		for _, g := range cpuGroups {
			m[g.name] = g.cpu()
		}
		return m
	}
	delta := func(a, b map[string]time.Duration) map[string]time.Duration {
		m := map[string]time.Duration{}
		for k := range b {
			m[k] = b[k] - a[k]
		}
		return m
	}

	fmt.Fprintf(opt.Out, "scale: cluster %s, leader %s; phases of %s (notifications: %d workers pre-signing and signing; GET: wrk, %d connections)\n",
		env["CLUSTER_DIR"], leader.name, opt.Phase, opt.Workers, opt.Connections)
	var rows []scaleRow
	getPrefix := ""
	getN := 0
	for k := len(replicas); k >= 1; k-- {
		// Stop the replicas above k; wait for the front to see k.
		for _, n := range replicas[k:] {
			pid := pidOf("CONTRACTD" + n + "_PID")
			if alive(pid) {
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
			if err := waitFor(ctx, time.Minute, func() bool { return !alive(pid) }); err != nil {
				return fmt.Errorf("contractd%s does not stop: %w", n, err)
			}
		}
		if err := waitFor(ctx, time.Minute, func() bool { return frontReplicas(ctx, c, env) == k }); err != nil {
			return fmt.Errorf("the front does not see %d replicas: %w", k, err)
		}
		fmt.Fprintf(opt.Out, "scale: %d replica(s) behind the front\n", k)

		// Notifications: pre-sign and sign at once (the simulator
		// delivers PAPAY.SIGN to the front).
		prefix := fmt.Sprintf("scale%d-%s", k, strconv.FormatInt(time.Now().UnixNano(), 36))
		ld := newLoad(c, prefix, 0)
		before := sample()
		start := time.Now()
		ld.start(ctx, opt.Workers, 0)
		pause(ctx, opt.Phase)
		ld.halt()
		// CPU and time up to here: reading the simulator's deliveries
		// below costs the simulator and the load generator much.
		elapsed := time.Since(start)
		after := sample()
		// Wait for the notifications of the signings made to be answered.
		signed := ld.signedCodes()
		var lat []time.Duration
		if err := waitFor(ctx, time.Minute, func() bool {
			ds, err := c.deliveries(ctx)
			if err != nil {
				return false
			}
			acked := 0
			lat = lat[:0]
			for _, d := range ds {
				if d.EventType == "PAPAY.SIGN" && strings.HasPrefix(d.OutContractCode, prefix+"-") && d.Done {
					acked++
					for _, a := range d.Attempts {
						if ok2xx(a.Status) {
							lat = append(lat, time.Duration(a.DurationMS*float64(time.Millisecond)))
						}
					}
				}
			}
			return acked >= len(signed)
		}); err != nil {
			return fmt.Errorf("the notifications of %d replicas were not all acknowledged: %w", k, err)
		}
		rows = append(rows, scaleRow{replicas: k, op: "notification (pre-sign + sign)", ops: len(signed), elapsed: elapsed,
			p99: percentile(lat, 0.99), cpu: delta(before, after)})
		var psLat []time.Duration
		for _, r := range ld.rec.all() {
			if r.op == opPreSign && ok2xx(r.status) {
				psLat = append(psLat, r.end.Sub(r.start))
			}
		}
		fmt.Fprintf(opt.Out, "scale: %d replica(s): %d contracts signed in %s; pre-sign p99 %s\n", k, len(signed), elapsed.Round(time.Millisecond),
			percentile(psLat, 0.99).Round(100*time.Microsecond))
		if getPrefix == "" {
			getPrefix, getN = prefix, int(ld.seq.Load())
		}

		// GET: wrk on random contracts of the first phase.
		before = sample()
		r, err := wrkGet(ctx, env, getPrefix, getN, opt.Connections, opt.Phase)
		if err != nil {
			return err
		}
		r.replicas = k
		r.cpu = delta(before, sample())
		r.cpu["load generator"] += r.loadExtra
		rows = append(rows, r)
	}

	w := opt.Out
	fmt.Fprintf(w, "\n==== scale: throughput and CPU per operation through the front ====\n")
	fmt.Fprintf(w, "%-9s %-31s %9s %10s  CPU ms per operation:", "replicas", "operation", "ops/s", "p99")
	for _, g := range cpuGroups {
		fmt.Fprintf(w, " %s |", g.name)
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		fmt.Fprintf(w, "%-9d %-31s %9.1f %10s ", r.replicas, r.op, float64(r.ops)/r.elapsed.Seconds(), r.p99.Round(100*time.Microsecond))
		var total time.Duration
		for _, g := range cpuGroups {
			fmt.Fprintf(w, " %.3f", perOp(r.cpu[g.name], r.ops))
			total += r.cpu[g.name]
		}
		fmt.Fprintf(w, "  (total %.3f)\n", perOp(total, r.ops))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "SCALE replicas=%d op=%q ops=%d seconds=%.2f per_s=%.1f p99_ms=%.2f", r.replicas,
			map[bool]string{true: "get", false: "notification"}[strings.HasPrefix(r.op, "GET")], r.ops, r.elapsed.Seconds(),
			float64(r.ops)/r.elapsed.Seconds(), ms(r.p99))
		for _, g := range cpuGroups {
			fmt.Fprintf(w, " cpu_ms_per_op_%s=%.3f", strings.ReplaceAll(g.name, " ", "_"), perOp(r.cpu[g.name], r.ops))
		}
		fmt.Fprintln(w)
	}
	return nil
}

func perOp(d time.Duration, ops int) float64 {
	if ops == 0 {
		return 0
	}
	return float64(d.Microseconds()) / 1000 / float64(ops)
}

// frontReplicas counts the contractd servers HAProxy's front has UP.
func frontReplicas(ctx context.Context, c *client, env Env) int {
	st, b, err := c.do(ctx, http.MethodGet, "http://127.0.0.1:"+env["HAPROXY_APP_STATS_PORT"]+"/;csv", "", nil)
	if err != nil || st != http.StatusOK {
		return -1
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 17 && f[0] == "contractd" && f[1] != "BACKEND" && f[1] != "FRONTEND" && f[17] == "UP" {
			n++
		}
	}
	return n
}

// wrkGet runs wrk against GET /v1/contracts/{prefix-1..n} through the front.
func wrkGet(ctx context.Context, env Env, prefix string, n, conns int, dur time.Duration) (scaleRow, error) {
	dir, err := os.MkdirTemp("", "drill-wrk-*")
	if err != nil {
		return scaleRow{}, fmt.Errorf("wrk: %w", err)
	}
	defer os.RemoveAll(dir)
	script := fmt.Sprintf(`
local headers = {["Authorization"] = "Bearer %s"}
math.randomseed(%d)
request = function() return wrk.format("GET", "/v1/contracts/%s-" .. math.random(1, %d), headers) end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %%d %%d %%d %%d %%d\n", summary.requests, summary.duration,
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
`, env["APP_TOKEN"], time.Now().UnixNano()%1_000_000, prefix, n)
	file := filepath.Join(dir, "get.lua")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		return scaleRow{}, fmt.Errorf("wrk: %w", err)
	}
	cmd := exec.CommandContext(ctx, "wrk", "-t2", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(int(dur.Seconds()))+"s",
		"--timeout", "30s", "-s", file, env["FRONT_URL"])
	out, err := cmd.Output()
	if err != nil {
		return scaleRow{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	i := strings.Index(string(out), "WRK ")
	if i < 0 {
		return scaleRow{}, fmt.Errorf("wrk printed no result:\n%s", out)
	}
	var reqs, durUS, p99, bad, sockErrs int64
	if _, err := fmt.Sscanf(string(out[i:]), "WRK %d %d %d %d %d", &reqs, &durUS, &p99, &bad, &sockErrs); err != nil {
		return scaleRow{}, fmt.Errorf("wrk's result: %w\n%s", err, out)
	}
	if bad > 0 || sockErrs > 0 {
		return scaleRow{}, fmt.Errorf("wrk: %d answers were not 2xx and %d requests failed on the socket:\n%s", bad, sockErrs, out)
	}
	return scaleRow{op: "GET /v1/contracts/{code}", ops: int(reqs), elapsed: time.Duration(durUS) * time.Microsecond,
		p99: time.Duration(p99) * time.Microsecond, loadExtra: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}, nil
}
