package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
	"github.com/jackc/pgx/v5"
)

// clusterScript runs `bash scripts/cluster args...` with its state in dir
// and waits for it (at most limit, which only catches a stall). Output goes
// to files, not pipes: a process the script leaves running cannot keep the
// wait from returning.
func clusterScript(t *testing.T, dir string, limit time.Duration, args ...string) (string, error) {
	t.Helper()
	out, err := os.CreateTemp(filepath.Dir(dir), "cluster-"+args[0]+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"scripts/cluster"}, args...)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CONTRACTD_CLUSTER_DIR="+dir)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	b, _ := os.ReadFile(out.Name())
	return string(b), runErr
}

// clusterEnv reads the cluster.env that `scripts/cluster up` wrote, as bash
// reads it (the values are shell-quoted).
func clusterEnv(t *testing.T, dir string) map[string]string {
	t.Helper()
	cmd := exec.Command("bash", "-c", `set -a; . "$0"; env -0`, filepath.Join(dir, "cluster.env"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("sourcing cluster.env: %v", err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// `scripts/cluster up` starts the production-shaped cluster (etcd, three
// Patroni nodes, HAProxy for Postgres, pgbouncer in transaction mode, the
// simulator, three contractd replicas and HAProxy in front of them); through
// the front port a contract is pre-signed, the simulated user signs, and
// WeChat's notification, sent to the front port, makes it signed; an
// operator signs in to the console and the session works on the replicas
// behind the front. `scripts/cluster down` then leaves no process alive and
// no port listening.
func TestClusterScriptSignsThroughTheFrontAndDownLeavesNothing(t *testing.T) {
	// Not parallel: three Postgres servers and the rest on a 2-core machine
	// start more surely without this package's parallel tests beside them.
	parent := t.TempDir()
	// Patroni and pgbouncer run as the postgres user when the tests run as
	// root: it must be able to reach the state directory.
	for _, d := range []string{filepath.Dir(parent), parent} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(parent, "cluster")
	downDone := false
	t.Cleanup(func() {
		if downDone {
			return
		}
		if out, err := clusterScript(t, dir, 3*time.Minute, "down"); err != nil {
			t.Errorf("scripts/cluster down (cleanup): %v\n%s", err, out)
		}
	})

	if out, err := clusterScript(t, dir, 5*time.Minute, "up"); err != nil {
		t.Fatalf("scripts/cluster up: %v\n%s", err, out)
	}
	env := clusterEnv(t, dir)
	for _, k := range []string{"FRONT_URL", "SIM_URL", "APP_TOKEN", "OPS_TOKEN", "ALL_PIDS", "ALL_PORTS", "HAPROXY_APP_LOG",
		"ETCD_PID", "NODE1_PATRONI_PID", "NODE3_DATA_DIR", "CONTRACTD3_PID", "PGBOUNCER_PORT", "HAPROXY_RW_PORT", "HAPROXY_RO_PORT"} {
		if env[k] == "" {
			t.Fatalf("cluster.env has no %s", k)
		}
	}
	front := env["FRONT_URL"]

	// Every process it started, and their children (Postgres under Patroni).
	var started []int
	for _, f := range strings.Fields(env["ALL_PIDS"]) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("ALL_PIDS %q", env["ALL_PIDS"])
		}
		if !procAlive(pid) {
			t.Fatalf("process %d of cluster.env is not alive after up", pid)
		}
		started = append(started, pid)
		started = append(started, procDescendants(t, pid)...)
	}
	var ports []int
	for _, f := range strings.Fields(env["ALL_PORTS"]) {
		p, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("ALL_PORTS %q", env["ALL_PORTS"])
		}
		ports = append(ports, p)
	}

	// The replicas read the console's pages on a standby
	// (CONTRACTD_DB_READ_URL, which must answer when they start): up
	// waits until every standby has replayed the migrated database.
	t.Run("every node holds the migrated database after up", func(t *testing.T) {
		var versions []int64
		for _, n := range []string{"1", "2", "3"} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			conn, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:"+env["NODE"+n+"_PG_PORT"]+"/"+env["DB_NAME"]+"?sslmode=disable")
			if err != nil {
				cancel()
				t.Fatalf("node%s: %v", n, err)
			}
			var v int64
			err = conn.QueryRow(ctx, `SELECT max(version_id) FROM goose_db_version`).Scan(&v)
			conn.Close(ctx)
			cancel()
			if err != nil {
				t.Fatalf("node%s: %v", n, err)
			}
			versions = append(versions, v)
		}
		if versions[0] < 1 || versions[1] != versions[0] || versions[2] != versions[0] {
			t.Errorf("migration versions on node1..node3: %v, want the same on each", versions)
		}
	})

	t.Run("status shows the leader and two replicas", func(t *testing.T) {
		out, err := clusterScript(t, dir, time.Minute, "status")
		if err != nil {
			t.Fatalf("scripts/cluster status: %v\n%s", err, out)
		}
		if strings.Count(out, "| Leader ") != 1 || strings.Count(out, "| Replica ") != 2 || strings.Contains(out, " no ") || strings.Contains(out, "(no)") {
			t.Errorf("status does not show one leader, two replicas and every process alive:\n%s", out)
		}
	})

	t.Run("a contract signed through the front", func(t *testing.T) {
		const code = "cluster-1"
		r := call(t, front, request{Method: http.MethodPost, Path: "/v1/contracts/pre-sign", Token: env["APP_TOKEN"],
			Body: map[string]any{"channel": "app", "out_contract_code": code, "plan_id": 123, "user_display_name": "Zhang San"}})
		if r.Status != http.StatusCreated {
			t.Fatalf("pre-sign through the front: %d %s", r.Status, r.Body)
		}
		// The simulated WeChat user signs; WeChat then posts PAPAY.SIGN to
		// the notify target, the front port.
		body, _ := json.Marshal(map[string]string{"out_contract_code": code})
		resp, err := http.Post(env["SIM_URL"]+"/sim/sign", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("simulator sign: %d", resp.StatusCode)
		}
		var state string
		deadline := time.Now().Add(time.Minute)
		for state != "signed" {
			if time.Now().After(deadline) {
				t.Fatalf("contract %s is %q a minute after the user signed", code, state)
			}
			time.Sleep(100 * time.Millisecond)
			r := call(t, front, request{Method: http.MethodGet, Path: "/v1/contracts/" + code, Token: env["APP_TOKEN"]})
			if r.Status != http.StatusOK {
				t.Fatalf("GET the contract through the front: %d %s", r.Status, r.Body)
			}
			var c struct {
				State string `json:"state"`
			}
			r.JSON(t, &c)
			state = c.State
		}
		// The notification went to the front port and was acknowledged.
		resp, err = http.Get(env["SIM_URL"] + "/sim/deliveries")
		if err != nil {
			t.Fatal(err)
		}
		var deliveries []wechatpaysim.Delivery
		err = json.NewDecoder(resp.Body).Decode(&deliveries)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var through []wechatpaysim.Delivery
		for _, d := range deliveries {
			if d.OutContractCode == code && d.EventType == "PAPAY.SIGN" {
				through = append(through, d)
			}
		}
		if len(through) != 1 || through[0].URL != front+"/v1/notifications/wechatpay" || !through[0].Done {
			t.Fatalf("deliveries of %s: %+v, want one PAPAY.SIGN acknowledged at %s/v1/notifications/wechatpay", code, through, front)
		}
		// HAProxy's log names the replica that took it.
		log, err := os.ReadFile(env["HAPROXY_APP_LOG"])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), `"POST /v1/notifications/wechatpay HTTP/1.1"`) {
			t.Errorf("HAProxy's front log shows no notification:\n%s", log)
		}
	})

	t.Run("an operator signs in to the console through the front", func(t *testing.T) {
		c := newConsoleClient(t, front)
		r := c.signIn(env["OPS_TOKEN"])
		if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/ops/" {
			t.Fatalf("sign-in through the front: %d %s", r.Status, r.Header.Get("Location"))
		}
		// The front balances round robin over three replicas: the session,
		// kept in Postgres, serves each.
		for i := range 3 {
			p := c.do(http.MethodGet, "/ops/", nil)
			if p.Status != http.StatusOK || !strings.Contains(p.Body, "Signed in as") {
				t.Fatalf("console page %d after sign-in: %d %.300s", i+1, p.Status, p.Body)
			}
		}
	})

	// Postgres' pids as they are now (Patroni may have restarted one).
	for _, k := range []string{"NODE1_DATA_DIR", "NODE2_DATA_DIR", "NODE3_DATA_DIR"} {
		b, err := os.ReadFile(filepath.Join(env[k], "postmaster.pid"))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		if err != nil {
			t.Fatalf("postmaster.pid of %s: %q", k, b)
		}
		started = append(started, pid)
		started = append(started, procDescendants(t, pid)...)
	}

	out, err := clusterScript(t, dir, 3*time.Minute, "down")
	downDone = true
	if err != nil {
		t.Fatalf("scripts/cluster down: %v\n%s", err, out)
	}
	for _, p := range started {
		if procAlive(p) {
			t.Errorf("process %d started by scripts/cluster is alive after down", p)
		}
	}
	for _, p := range ports {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), 5*time.Second)
		if err == nil {
			c.Close()
			t.Errorf("port %d still accepts connections after down", p)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("port %d after down: %v, want connection refused", p, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state directory %s is still there after down: %v", dir, err)
	}
	// down again: nothing to do, and no error.
	if out, err := clusterScript(t, dir, time.Minute, "down"); err != nil {
		t.Errorf("a second scripts/cluster down: %v\n%s", err, out)
	}
}
