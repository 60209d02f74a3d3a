// Package pgbouncer starts a real pgbouncer in transaction mode for one
// test, in front of a Postgres server, so that contractd can be tested
// through the kind of pooler production puts between it and Postgres.
//
// It runs Debian's /usr/sbin/pgbouncer (the version the machine has;
// bookworm's 1.18 carries no named prepared statements across server
// sessions) in the foreground on a free loopback port, with trust
// authentication, pool_mode = transaction and every database of the
// upstream server reachable under its own name. pgbouncer refuses to run
// as root, and these machines run tests as root, so it then runs as the
// postgres system user (the process's credentials are set at exec, so the
// signals that stop it reach pgbouncer itself). Where
// the binary is missing, Start fails the test saying how to install it:
// a test that cannot run must not pass by skipping.
//
// pgbouncer 1.18 refuses start-up parameters it does not know, search_path
// among them: a test behind it uses a database of its own
// (pgtest.NewDatabase), migrated on a direct connection.
package pgbouncer

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/contractd/contractd/internal/pgcluster"
	"github.com/jackc/pgx/v5"
)

// Binary is where Debian's pgbouncer package installs the program.
const Binary = "/usr/sbin/pgbouncer"

// Options configure a pgbouncer.
type Options struct {
	// Upstream is a connection string naming the Postgres server (host and
	// port; the user must be one with trust access) to pool for.
	Upstream string
	// PoolSize is default_pool_size: server connections per database and
	// user (default 2).
	PoolSize int
}

// Bouncer is a running pgbouncer.
type Bouncer struct {
	// Port is where it listens, on 127.0.0.1.
	Port int

	pgUser string
	sys    *user.User // nil to run as ourselves, else the system user to run as
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
	mu     sync.Mutex
	log    strings.Builder
}

// Start writes the configuration, starts pgbouncer and waits until it
// answers; it is stopped and its files removed when the test ends.
func Start(t testing.TB, o Options) *Bouncer {
	t.Helper()
	if st, err := os.Stat(Binary); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("pgbouncer: %s is missing: install it with `apt-get install pgbouncer` (bash scripts/test does)", Binary)
	}
	up, err := url.Parse(o.Upstream)
	if err != nil {
		t.Fatalf("pgbouncer: upstream: %v", err)
	}
	pgUser := up.User.Username()
	if pgUser == "" {
		pgUser = "postgres"
	}
	port := up.Port()
	if port == "" {
		port = "5432"
	}
	if o.PoolSize == 0 {
		o.PoolSize = 2
	}
	b := &Bouncer{done: make(chan struct{}), pgUser: pgUser}
	if os.Geteuid() == 0 {
		if b.sys, err = user.Lookup("postgres"); err != nil {
			t.Fatalf("pgbouncer: running as root needs the postgres system user (Debian's postgresql package makes it): %v", err)
		}
	}
	if b.dir, err = os.MkdirTemp("", "contractd-pgbouncer-"); err != nil {
		t.Fatalf("pgbouncer: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(b.dir) })
	if b.Port, err = pgcluster.FreePort(); err != nil {
		t.Fatalf("pgbouncer: %v", err)
	}
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
admin_users = %s
default_pool_size = %d
max_client_conn = 500
server_reset_query =
server_check_delay = 0
ignore_startup_parameters = extra_float_digits
logfile =
`, up.Hostname(), port, b.Port, filepath.Join(b.dir, "userlist.txt"), pgUser, o.PoolSize)
	files := map[string]string{"pgbouncer.ini": ini, "userlist.txt": fmt.Sprintf("%q \"\"\n", pgUser)}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(b.dir, name), []byte(text), 0o644); err != nil {
			t.Fatalf("pgbouncer: %v", err)
		}
	}
	b.cmd = exec.Command(Binary, filepath.Join(b.dir, "pgbouncer.ini"))
	if b.sys != nil {
		uid, _ := strconv.ParseUint(b.sys.Uid, 10, 32)
		gid, _ := strconv.ParseUint(b.sys.Gid, 10, 32)
		// os.MkdirTemp made it 0700 for root: hand it to postgres.
		for _, f := range []string{b.dir, filepath.Join(b.dir, "pgbouncer.ini"), filepath.Join(b.dir, "userlist.txt")} {
			if err := os.Chown(f, int(uid), int(gid)); err != nil {
				t.Fatalf("pgbouncer: %v", err)
			}
		}
		b.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		b.cmd.Dir = b.dir
	}
	b.cmd.Stdout, b.cmd.Stderr = (*logWriter)(b), (*logWriter)(b)
	b.cmd.WaitDelay = 5 * time.Second
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("pgbouncer: start: %v", err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(b.stop)

	// Ready once a query through it reaches the upstream server.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-b.done:
			t.Fatalf("pgbouncer exited at start-up: %s", b.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, b.URL("postgres")+"&default_query_exec_mode=simple_protocol")
		if err == nil {
			_, err = c.Exec(ctx, "SELECT 1")
			c.Close(ctx)
		}
		cancel()
		if err == nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer did not pass a query on port %d: %v\n%s", b.Port, err, b.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL connects to database through the pgbouncer, as the upstream user.
func (b *Bouncer) URL(database string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", b.pgUser, b.Port, database)
}

// Log is what pgbouncer has written so far, for failure messages.
func (b *Bouncer) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.log.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

// stop ends pgbouncer (SIGTERM: its immediate shutdown) and waits for it.
func (b *Bouncer) stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// logWriter collects pgbouncer's output.
type logWriter Bouncer

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.Write(p)
}
