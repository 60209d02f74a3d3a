// Package pgcluster starts a throwaway Postgres cluster for one test, so
// that a test can make the database really die: stop it, restart it, kill
// it. The machine's shared cluster (127.0.0.1:5432, which every other test
// uses) is never touched.
//
// The cluster is made with Debian's binaries from /usr/lib/postgresql/*/bin
// (the newest version found): initdb with trust authentication into a fresh
// directory, listening on 127.0.0.1 on a free port, its socket in its own
// directory, fsync off (a test cluster holds nothing worth a disk flush).
// initdb and the server refuse to run as root, and these machines run tests
// as root, so the binaries then run as the postgres system user through
// runuser. Where the binaries are missing, Start fails the test with a
// message saying how to install them: a fault test that cannot run must
// not pass by skipping.
//
// A test can also lose transactions to a real failover: StartStandby makes
// a streaming standby of a running cluster (pg_basebackup -R), and
// FailOver stops it, lets the test write what will be lost on the primary,
// kills the primary and promotes the standby onto the next timeline.
package pgcluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Database is the database Start creates in the cluster.
const Database = "contractd_fault"

// Cluster is a running throwaway Postgres cluster.
type Cluster struct {
	// Port is where the server listens, on 127.0.0.1.
	Port int
	// URL connects to Database as the superuser postgres.
	URL string

	bin  string
	dir  string // holds data/, the socket and the log
	user string // "" to run the binaries as ourselves, else the system user to run them as
}

// Start makes, starts and returns a cluster; it is stopped (immediately)
// and removed when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin, err := findBinaries()
	if err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			t.Fatalf("pgcluster: running as root needs the postgres system user (Debian's postgresql package makes it): %v", err)
		}
		c.user = "postgres"
	}
	if c.dir, err = os.MkdirTemp("", "contractd-pgcluster-"); err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	t.Cleanup(func() {
		_ = c.pgctl("stop", "-m", "immediate")
		_ = os.RemoveAll(c.dir)
	})
	if c.user != "" {
		// os.MkdirTemp made it 0700 for root: hand it to postgres.
		if out, err := exec.Command("chown", c.user+":", c.dir).CombinedOutput(); err != nil {
			t.Fatalf("pgcluster: chown %s: %v: %s", c.dir, err, out)
		}
	}
	if c.Port, err = FreePort(); err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	if out, err := c.run(filepath.Join(c.bin, "initdb"), "-D", c.data(), "-A", "trust", "-U", "postgres",
		"--no-sync", "-E", "UTF8", "--locale", "C").CombinedOutput(); err != nil {
		t.Fatalf("pgcluster: initdb: %v\n%s", err, out)
	}
	conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 100\n",
		c.Port, c.dir)
	if err := c.appendConf(conf); err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	c.StartAgain(t)
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, Database)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port))
	if err != nil {
		t.Fatalf("pgcluster: connect: %v\n%s", err, c.logTail())
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+Database); err != nil {
		t.Fatalf("pgcluster: create database: %v", err)
	}
	return c
}

// Restart stops the server the way a crash-free restart does (fast:
// sessions are cut, transactions in flight roll back) and starts it again,
// waiting until it accepts connections. It is a stop and a start rather than
// pg_ctl restart, which would hand the new server pg_ctl's own output
// instead of the log file.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.StartAgain(t)
}

// Stop stops the server (fast) and waits until it is down.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.pgctl("stop", "-m", "fast"); err != nil {
		t.Fatalf("pgcluster: stop: %v\n%s", err, c.logTail())
	}
}

// StartAgain starts a stopped server and waits until it accepts
// connections.
func (c *Cluster) StartAgain(t testing.TB) {
	t.Helper()
	if err := c.pgctl("start", "-l", c.logFile()); err != nil {
		t.Fatalf("pgcluster: start: %v\n%s", err, c.logTail())
	}
}

func (c *Cluster) data() string    { return filepath.Join(c.dir, "data") }
func (c *Cluster) logFile() string { return filepath.Join(c.dir, "server.log") }

// pgctl runs pg_ctl with -w (wait) and a generous timeout. WaitDelay keeps
// a server that inherited the output pipe from holding the call open.
func (c *Cluster) pgctl(args ...string) error {
	full := append([]string{"-D", c.data(), "-w", "-t", "120"}, args...)
	cmd := c.run(filepath.Join(c.bin, "pg_ctl"), full...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// run prepares a command that runs as the cluster's user.
func (c *Cluster) run(name string, args ...string) *exec.Cmd {
	if c.user == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("runuser", append([]string{"-u", c.user, "--", name}, args...)...)
}

func (c *Cluster) appendConf(text string) error {
	f, err := os.OpenFile(filepath.Join(c.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// logTail is the end of the server log, for failure messages.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.logFile())
	if err != nil {
		return "(no server log)"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// findBinaries returns the newest /usr/lib/postgresql/N/bin holding initdb
// and pg_ctl.
func findBinaries() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var found []string
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("no Postgres server binaries in /usr/lib/postgresql/*/bin: install them with `apt-get install postgresql` (bash scripts/postgres does)")
	}
	version := func(d string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		return n
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	return found[0], nil
}

func isExec(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// FreePort returns a loopback port nothing listens on (yet), for a server
// a test starts itself (a cluster, a pooler).
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// StartStandby makes a streaming standby of c (pg_basebackup -R from the
// running c, WAL streamed during the copy), starts it on its own free port
// and waits until it accepts connections; it is stopped (immediately) and
// removed when the test ends. Its URL names the same Database; until
// Promote it is read-only and replays what c writes.
func (c *Cluster) StartStandby(t testing.TB) *Cluster {
	t.Helper()
	s := &Cluster{bin: c.bin, user: c.user}
	var err error
	if s.dir, err = os.MkdirTemp("", "contractd-pgstandby-"); err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	t.Cleanup(func() {
		_ = s.pgctl("stop", "-m", "immediate")
		_ = os.RemoveAll(s.dir)
	})
	if s.user != "" {
		if out, err := exec.Command("chown", s.user+":", s.dir).CombinedOutput(); err != nil {
			t.Fatalf("pgcluster: chown %s: %v: %s", s.dir, err, out)
		}
	}
	if s.Port, err = FreePort(); err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	if out, err := s.run(filepath.Join(s.bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port),
		"-U", "postgres", "-D", s.data(), "-R", "-X", "stream", "-c", "fast", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("pgcluster: pg_basebackup: %v\n%s", err, out)
	}
	// The copied postgresql.conf names the primary's port and socket
	// directory; later lines win.
	if err := s.appendConf(fmt.Sprintf("\nport = %d\nunix_socket_directories = '%s'\n", s.Port, s.dir)); err != nil {
		t.Fatalf("pgcluster: %v", err)
	}
	s.StartAgain(t)
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, Database)
	return s
}

// Kill stops the server at once, as a crash does (pg_ctl stop -m
// immediate): nothing is flushed or handed on, and a standby that has not
// yet received the last transactions never will.
func (c *Cluster) Kill(t testing.TB) {
	t.Helper()
	if err := c.pgctl("stop", "-m", "immediate"); err != nil {
		t.Fatalf("pgcluster: stop immediate: %v\n%s", err, c.logTail())
	}
}

// Promote makes a running standby the primary (pg_ctl promote, which
// waits until it accepts writes): it leaves recovery on a new timeline.
func (c *Cluster) Promote(t testing.TB) {
	t.Helper()
	if err := c.pgctl("promote"); err != nil {
		t.Fatalf("pgcluster: promote: %v\n%s", err, c.logTail())
	}
}

// WaitReplayed waits until standby has replayed everything c has written
// so far (c's current WAL insert position), or fails the test after a
// generous deadline.
func (c *Cluster) WaitReplayed(t testing.TB, standby *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pc, err := pgx.Connect(ctx, c.URL)
	if err != nil {
		t.Fatalf("pgcluster: connect primary: %v", err)
	}
	defer pc.Close(ctx)
	var lsn string
	if err := pc.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatalf("pgcluster: primary lsn: %v", err)
	}
	sc, err := pgx.Connect(ctx, standby.URL)
	if err != nil {
		t.Fatalf("pgcluster: connect standby: %v", err)
	}
	defer sc.Close(ctx)
	for {
		var done bool
		if err := sc.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&done); err != nil {
			t.Fatalf("pgcluster: standby replay: %v", err)
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pgcluster: standby did not replay up to %s\n%s", lsn, standby.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// FailOver loses what lose writes to a real failover under asynchronous
// replication: it waits until standby has replayed everything c wrote so
// far, stops standby (its replication with it), runs lose (which writes on
// c the transactions that will be lost), stops c at once as a crash does,
// then starts standby and promotes it. standby is then the primary, on the
// next timeline, without what lose wrote; c stays down.
func (c *Cluster) FailOver(t testing.TB, standby *Cluster, lose func()) {
	t.Helper()
	c.WaitReplayed(t, standby)
	standby.Stop(t)
	lose()
	c.Kill(t)
	standby.StartAgain(t)
	standby.Promote(t)
}
