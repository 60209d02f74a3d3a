package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/internal/pgbouncer"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/wechatpaysim"
)

// Test tokens configured on every stack.
const (
	appToken = "test-app-token"
	opsToken = "test-ops-token"
)

// stack is a whole contractd deployment for one test: a private Postgres
// schema, the WeChat Pay simulator on loopback, and the real server (the
// same serve function the binary runs) on a loopback port.
type stack struct {
	t      testing.TB
	URL    string // contractd base URL
	SimURL string
	Sim    *wechatpaysim.Simulator
	Keys   *wechatpaysim.KeySet
	DB     *pgtest.Schema
	Env    map[string]string // the environment contractd was configured from
	stop   context.CancelFunc
	done   chan error
}

// stackOptions adjust a stack.
type stackOptions struct {
	Mode string // "common" (default) or "institutional"
	// Env overrides or adds contractd environment variables.
	Env map[string]string
	// SimTimeScale scales the simulator's retry schedule (default 0.001).
	SimTimeScale float64
	// DatabaseURL, when set, rewrites the private schema's URL into the one
	// the server connects with (for example through a TCP proxy). The
	// stack's DB pool keeps connecting directly.
	DatabaseURL func(schemaURL string) string
	// NotifyTarget, when set, is the base URL the simulator delivers
	// notifications to instead of the in-process server (for example a
	// proxy in front of several contractd processes).
	NotifyTarget string
	// WrapSim, when set, wraps the simulator's HTTP handler (for example to
	// delay its answers).
	WrapSim func(http.Handler) http.Handler
	// ServerURL, when set, puts the private schema on that Postgres server
	// (for example a throwaway cluster the test restarts) instead of the
	// shared test database.
	ServerURL string
	// LogOut, when set, receives contractd's JSON logs at info level.
	LogOut io.Writer
	// Bouncer, when set, stands between the server and Postgres: the
	// stack gets a private database (pgtest.NewDatabase, migrated directly)
	// instead of a schema, and the server connects to it through the
	// pgbouncer with default_query_exec_mode=ExecMode. The stack's DB pool
	// keeps connecting directly.
	Bouncer  *pgbouncer.Bouncer
	ExecMode string
	// Unmigrated leaves the private schema (or database) empty, and
	// Migrate starts the server as serve --migrate does.
	Unmigrated, Migrate bool
	// EnvFor, when set, adds environment variables that depend on the
	// private schema (or database), after Env.
	EnvFor func(db *pgtest.Schema) map[string]string
}

// startStack starts a stack and stops it when the test ends.
func startStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	var db *pgtest.Schema
	switch {
	case o.Bouncer != nil && o.Unmigrated:
		db = pgtest.NewUnmigratedDatabase(t)
	case o.Bouncer != nil:
		db = pgtest.NewDatabase(t)
	case o.ServerURL != "" && !o.Unmigrated:
		db = pgtest.NewOn(t, o.ServerURL)
	case o.Unmigrated && o.ServerURL == "":
		db = pgtest.NewUnmigrated(t)
	case o.Unmigrated:
		t.Fatal("stack: Unmigrated with ServerURL is not supported")
	default:
		db = pgtest.New(t)
	}
	keys, err := wechatpaysim.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := keys.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	// The server's address must be known before the simulator can target it.
	ln, err := newLoopbackListener()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() }) // serve closes it too; once more is harmless
	addr := ln.Addr().String()
	// serve takes this very listener: no other process can take the port
	// between choosing it and serving on it.

	simCfg := keys.SimConfig()
	simCfg.TerminateNotifyURL = devPublicURL + config.NotifyPath
	simCfg.NotifyTarget = "http://" + addr
	if o.NotifyTarget != "" {
		simCfg.NotifyTarget = o.NotifyTarget
	}
	simCfg.TimeScale = o.SimTimeScale
	if simCfg.TimeScale == 0 {
		simCfg.TimeScale = 0.001
	}
	simCfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	sim, err := wechatpaysim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	var simHandler http.Handler = sim.Handler()
	if o.WrapSim != nil {
		simHandler = o.WrapSim(simHandler)
	}
	simSrv := httptest.NewServer(simHandler)
	t.Cleanup(func() { simSrv.Close(); sim.Close() })

	env := simulatedWeChatEnv(keys, dir, simSrv.URL)
	maps.Copy(env, map[string]string{
		"DATABASE_URL":                 db.URL,
		"CONTRACTD_HTTP_ADDR":          addr,
		"CONTRACTD_API_TOKENS":         "app:" + appToken + ",ops:" + opsToken,
		"WECHATPAY_MODE":               "common",
		"WECHATPAY_SP_APPID":           "wxsp" + keys.AppID[2:],
		"WECHATPAY_TIMEOUT":            "2s",
		"CONTRACTD_SWEEP_INTERVAL":     "1h",
		"CONTRACTD_RECONCILE_INTERVAL": "1h",
		"CONTRACTD_LOG_LEVEL":          "error",
		// Many stacks run at once against one Postgres (max_connections
		// 100 on Debian's default cluster): a smaller pool than the
		// default keeps them all under it.
		"CONTRACTD_DB_MAX_CONNS": "6",
	})
	if o.Mode != "" {
		env["WECHATPAY_MODE"] = o.Mode
	}
	if o.DatabaseURL != nil {
		env["DATABASE_URL"] = o.DatabaseURL(db.URL)
	}
	if o.Bouncer != nil {
		env["DATABASE_URL"] = o.Bouncer.URL(db.Database) + "&default_query_exec_mode=" + o.ExecMode
	}
	for k, v := range o.Env {
		env[k] = v
	}
	if o.EnvFor != nil {
		maps.Copy(env, o.EnvFor(db))
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan error, 1)
	var logOut io.Writer = io.Discard
	if os.Getenv("CONTRACTD_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	level := cfg.LogLevel
	if o.LogOut != nil {
		logOut, level = o.LogOut, "info"
	}
	go func() { done <- serve(ctx, cfg, o.Migrate, newLogger(level, logOut), ln, listening) }()
	select {
	case a := <-listening:
		addr = a
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server did not start")
	}
	// Forget the start-up certificate downloads, so that a test counts only
	// the WeChat calls of its own scenario.
	sim.Reset()
	s := &stack{t: t, URL: "http://" + addr, SimURL: simSrv.URL, Sim: sim, Keys: keys, DB: db, Env: env, stop: cancel, done: done}
	t.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down gracefully (idempotent).
func (s *stack) Stop() {
	if s.stop == nil {
		return
	}
	s.stop()
	s.stop = nil
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		s.t.Error("server did not stop")
	}
}

// response is a decoded answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test on error.
func (r response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Map decodes the body as a JSON object.
func (r response) Map(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// request is one request to contractd. Every end-to-end test sends its
// requests through send (or a wrapper of it: stack.do, doAt, call), so that
// every answer is checked against the openapi.yaml contractd serves.
type request struct {
	Method string
	Path   string
	Token  string // bearer token, "" for no Authorization header
	// Body is nil, []byte, string, or anything JSON-encodable.
	Body any
	// ContentType defaults to application/json when there is a body;
	// noContentType sends none.
	ContentType string
	// Header holds further headers (set before Authorization and
	// Content-Type).
	Header http.Header
	// Client defaults to a client with a 60 s timeout.
	Client *http.Client
}

// noContentType, as request.ContentType, sends no Content-Type header.
const noContentType = "-"

// send sends r to the contractd at base and checks the answer against the
// openapi.yaml contractd serves. It does not stop the test, so it may be
// called from any goroutine: a transport error is returned, and an answer
// that breaks the description is reported with t.Errorf.
func send(t testing.TB, base string, r request) (response, error) {
	var rd io.Reader
	switch b := r.Body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(r.Method, base+r.Path, rd)
	if err != nil {
		return response{}, err
	}
	for k, vs := range r.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	switch {
	case r.ContentType == noContentType:
		req.Header.Del("Content-Type")
	case r.ContentType != "":
		req.Header.Set("Content-Type", r.ContentType)
	case rd != nil:
		req.Header.Set("Content-Type", "application/json")
	}
	client := r.Client
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s%s: %w", r.Method, base, r.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s%s: reading the answer: %w", r.Method, base, r.Path, err)
	}
	out := response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	// Every answer an end-to-end test sees must be what openapi.yaml says.
	if c := specFor(t, base); c != nil {
		c.check(t, req, out)
	}
	return out, nil
}

// call is send that fails the test on a transport error (from the test's
// goroutine only).
func call(t testing.TB, base string, r request) response {
	t.Helper()
	out, err := send(t, base, r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// doAt sends a request to the contractd at base with a bearer token ("" for
// none) and a body (see request.Body).
func doAt(t testing.TB, base, method, path, token string, body any) response {
	t.Helper()
	return call(t, base, request{Method: method, Path: path, Token: token, Body: body})
}

// do sends a request to the stack's contractd (see doAt).
func (s *stack) do(method, path, token string, body any) response {
	s.t.Helper()
	return doAt(s.t, s.URL, method, path, token, body)
}

// count runs a count(*) query in the stack's schema.
func (s *stack) count(sql string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.DB.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
