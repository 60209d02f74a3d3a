package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// drillFields reads the `DRILL key=value ...` line of scripts/drill.
func drillFields(t *testing.T, out string) map[string]string {
	t.Helper()
	line := regexp.MustCompile(`(?m)^DRILL mode=.*$`).FindString(out)
	if line == "" {
		t.Fatalf("scripts/drill printed no DRILL line:\n%s", out)
	}
	f := map[string]string{}
	for _, kv := range strings.Fields(strings.TrimPrefix(line, "DRILL ")) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			f[k] = v
		}
	}
	return f
}

// The failover drill (issue 20), asynchronous replication: scripts/drill
// starts a cluster of its own, puts pre-signs, WeChat's notifications,
// contract reads and a feed follower through the front, freezes the
// leader's replication, kills the leader, and measures. No answer is 500
// and every failed answer to the app or the feed is 503; the failover lost
// at least one notification contractd had acknowledged (so the healing is
// tested) and reconciliation healed every one, so every contract the user
// signed is signed at the end; the follower missed no row the new leader
// holds, and when it had seen rows that are gone it was told lost. The
// script stops the cluster it started: no process is left that names its
// directory.
func TestFailoverDrill(t *testing.T) {
	// Not parallel: a cluster of three Postgres servers and the load on a
	// 2-core machine (as TestClusterScript...).
	parent := t.TempDir()
	for _, d := range []string{filepath.Dir(parent), parent} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := os.CreateTemp(filepath.Dir(parent), "drill-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "scripts/drill")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CONTRACTD_DRILL_DIR="+parent)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	b, _ := os.ReadFile(out.Name())
	log := string(b)
	if runErr != nil {
		t.Fatalf("scripts/drill: %v\n%s", runErr, log)
	}
	if i := strings.Index(log, "==== failover drill"); i >= 0 {
		t.Logf("scripts/drill printed:\n%s", log[i:])
	}
	f := drillFields(t, log)
	num := func(k string) int {
		n, err := strconv.Atoi(f[k])
		if err != nil {
			t.Fatalf("DRILL %s=%q:\n%s", k, f[k], log)
		}
		return n
	}
	if f["mode"] != "async" || f["result"] != "pass" {
		t.Errorf("mode %s result %s, want async pass", f["mode"], f["result"])
	}
	if n := num("status_500"); n != 0 {
		t.Errorf("%d answers were 500", n)
	}
	if n := num("failed_not_503"); n != 0 {
		t.Errorf("%d failed answers to the app or the feed were not 503", n)
	}
	if n := num("acked_lost"); n < 1 {
		t.Errorf("the failover lost %d acknowledged notifications, want at least 1 (healing untested)", n)
	}
	if n := num("acked_lost_for_good"); n != 0 {
		t.Errorf("%d acknowledged notifications lost were not healed", n)
	}
	if n := num("lost_for_good"); n != 0 {
		t.Errorf("%d contracts signed at WeChat are not signed in contractd at the end", n)
	}
	if n := num("feed_missed"); n != 0 {
		t.Errorf("the feed follower missed %d rows the new leader holds", n)
	}
	if seen, told := num("feed_seen_lost"), num("feed_told_lost"); seen > 0 && told == 0 {
		t.Errorf("the follower saw %d rows that are gone and was never told lost", seen)
	}
	for _, k := range []string{"healed_ms", "writes_after_ms", "notify_per_s", "notify_p99_ms"} {
		if f[k] == "" {
			t.Errorf("the DRILL line has no %s", k)
		}
	}
	if strings.Contains(log, `status=500`) {
		t.Errorf("a DRILL_FAILED line names status 500:\n%s", log)
	}
	// Nothing is left of the cluster.
	for _, p := range allProcs(t) {
		if c, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline"); strings.Contains(string(c), parent) {
			t.Errorf("process %d still runs: %s", p, strings.ReplaceAll(string(c), "\x00", " "))
		}
	}
	if _, err := os.Stat(filepath.Join(parent, "cluster")); !os.IsNotExist(err) {
		t.Errorf("the cluster's directory is left: %v", err)
	}
}

func allProcs(t *testing.T) []int {
	t.Helper()
	ds, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, d := range ds {
		if p, err := strconv.Atoi(filepath.Base(d)); err == nil && p != os.Getpid() {
			out = append(out, p)
		}
	}
	return out
}
