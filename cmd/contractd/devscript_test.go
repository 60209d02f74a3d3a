package main

import (
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

	"github.com/contractd/contractd/internal/pgtest"
)

// procDescendants returns the ids of every living process below pid, read
// from /proc.
func procDescendants(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("reading /proc: %v", err)
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

// procAlive reports whether process pid still runs (a zombie has finished).
func procAlive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// `kill -TERM` of scripts/dev's process stops everything it started: the
// service and the simulator end, their ports close, and the script's
// process exits 0. (With `exec go run` the signal stopped only `go`, and
// `contractd dev` kept serving.)
func TestDevScriptStopsEverythingOnSIGTERM(t *testing.T) {
	// Not parallel: this and the other test that runs a script building
	// bin/ (scripts/dev, scripts/walkthroughs) must not rewrite the binary
	// while the other one starts it.
	db := pgtest.NewUnmigrated(t)
	api, sim := cliFreeAddr(t), cliFreeAddr(t)
	dir := t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()

	cmd := exec.Command("bash", "scripts/dev")
	cmd.Dir = "../.."
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "CONTRACTD_HTTP_ADDR", "SIM_ADDR", "SIM_PUBLIC_URL", "DATABASE_URL", "CONTRACTD_LOG_LEVEL":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "CONTRACTD_HTTP_ADDR="+api, "SIM_ADDR="+sim, "DATABASE_URL="+db.URL, "CONTRACTD_LOG_LEVEL=warn")
	// Files, not pipes: a process the script leaves behind cannot keep
	// Wait from returning.
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var started []int // every process seen below the script, for cleanup
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for _, p := range started {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	logs := func() string {
		o, _ := os.ReadFile(stdout.Name())
		e, _ := os.ReadFile(stderr.Name())
		return "stdout:\n" + string(o) + "\nstderr:\n" + string(e)
	}

	// Serving: both answer and the banner is out (the script builds first).
	client := &http.Client{Timeout: 5 * time.Second}
	answers := func(url string) bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		o, _ := os.ReadFile(stdout.Name())
		if strings.Contains(string(o), "contractd dev is running") &&
			answers("http://"+api+"/readyz") && answers("http://"+sim+"/sim/healthz") {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("scripts/dev exited before serving: %v\n%s", err, logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("scripts/dev did not serve within 5 minutes\n%s", logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	started = procDescendants(t, cmd.Process.Pid)

	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("scripts/dev after SIGTERM: %v, want exit 0\n%s", err, logs())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("scripts/dev still runs 2 minutes after SIGTERM\n%s", logs())
	}
	for _, p := range started {
		eventually(t, time.Minute, "process "+strconv.Itoa(p)+" started by scripts/dev to end", func() bool { return !procAlive(p) })
	}
	for _, addr := range []string{api, sim} {
		eventually(t, time.Minute, addr+" to be closed", func() bool {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err == nil {
				c.Close()
				return false
			}
			return errors.Is(err, syscall.ECONNREFUSED)
		})
	}
}
