package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/console"
	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/httpapi"
	"github.com/contractd/contractd/lifecycle"
	"github.com/contractd/contractd/logging"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/wechatpay"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

func newLogger(level string, w io.Writer) *slog.Logger {
	return logging.New(w, level)
}

// serveCmd runs `contractd serve`.
func serveCmd(ctx context.Context, getenv func(string) string, migrate bool, stderr io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return configurationError("configuration: ", err)
	}
	return serve(ctx, cfg, migrate, newLogger(cfg.LogLevel, stderr), nil, nil)
}

// serve runs the service until ctx ends, then shuts down gracefully: the
// listener closes, requests in flight finish (up to ShutdownTimeout), the
// workers stop, and the pool closes. When listening is non-nil it receives
// the bound address once the server accepts connections.
//
// ln, when non-nil, is the listener to serve on (already bound, as a test
// that must know the address beforehand has it); otherwise serve listens on
// cfg.HTTPAddr.
func serve(ctx context.Context, cfg config.Config, migrate bool, log *slog.Logger, ln net.Listener, listening chan<- string) error {
	for _, w := range cfg.Warnings {
		log.Warn("configuration: " + w)
	}
	pool, err := connectPool(ctx, "DATABASE_URL", cfg.DatabaseURL, cfg.DBMaxConns)
	if err != nil {
		return err
	}
	defer pool.Close()
	if migrate {
		// On a pool of their own, closed once done: the migrate URL is a
		// direct connection, DATABASE_URL may be a pooler.
		variable := "DATABASE_URL"
		if cfg.MigrateDatabaseURL != cfg.DatabaseURL {
			variable = "CONTRACTD_MIGRATE_DATABASE_URL"
		}
		if err := runMigrations(ctx, variable, cfg.MigrateDatabaseURL); err != nil {
			return err
		}
	}
	// Readiness asks on a connection of its own (see readiness); one
	// provider serves every check, each check is one query. The schema
	// check takes no lock, so it works through a pooler.
	readyPool, schema, closeReady, err := readinessConn(ctx, "DATABASE_URL", cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer closeReady()
	ready := &readiness{main: pool, own: readyPool, schema: schema}
	// The standby the console's reports read, when one is configured: a
	// pool of its own, and a connection of its own for readiness's report.
	var readPool *pgxpool.Pool
	var readReady httpapi.ReadReadiness
	if cfg.SeparateReads() {
		if readPool, err = connectPool(ctx, "CONTRACTD_DB_READ_URL", cfg.DBReadURL, cfg.DBMaxConns); err != nil {
			return err
		}
		defer readPool.Close()
		readyReadPool, readSchema, closeReadReady, err := readinessConn(ctx, "CONTRACTD_DB_READ_URL", cfg.DBReadURL)
		if err != nil {
			return err
		}
		defer closeReadReady()
		readReady = (&readReadiness{own: readyReadPool, schema: readSchema}).check
	}

	wx, err := wechatpay.NewClient(cfg.WeChat)
	if err != nil {
		return fail(2, "configuration: WECHATPAY_*: %v", err)
	}
	parser, err := wechatpay.NewNotificationParser(cfg.WeChat.APIv3Key, wx.Verifier())
	if err != nil {
		return fail(2, "configuration: WECHATPAY_APIV3_KEY: %v", err)
	}
	reg := prometheus.NewRegistry()
	var certs *wechatpay.CertificateManager
	if cfg.WeChat.DownloadCertificates {
		certs, err = wechatpay.NewCertificateManager(wx, wechatpay.CertificateManagerOptions{
			RefreshInterval: cfg.CertRefreshInterval, MinGap: cfg.CertRefreshMinGap, Logger: log, Registry: reg,
		})
		if err != nil {
			return fail(2, "configuration: WECHATPAY_*: %v", err)
		}
		if err := certs.Refresh(ctx); err != nil {
			if len(cfg.WeChat.PlatformCerts) == 0 {
				return fail(1, "platform certificates: WECHATPAY_PLATFORM_CERT_FILES is not set and the first download failed: %v", err)
			}
			log.Warn("platform certificate download failed at start-up; the configured certificates are in use", "error", err.Error())
		}
	}
	panics := lifecycle.NewPanicCounter()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), panics, store.PoolCollector(pool))
	if readPool != nil {
		reg.MustRegister(store.ReadPoolCollector(readPool))
	}
	st := store.NewWithOptions(pool, store.Options{LockTimeout: cfg.DBLockTimeout, StatementTimeout: cfg.DBStatementTimeout, ReadPool: readPool})
	svc := lifecycle.New(st, wx, parser, lifecycle.Options{
		Mode: cfg.Mode, MchID: cfg.MchID, AppID: cfg.AppID, SpAppID: cfg.SpAppID, NotifyURL: cfg.NotifyURL(),
		PasswordExemptVariant: cfg.PasswordExemptVariant,
		LeaseTTL:              cfg.LeaseTTL, PresignWait: cfg.LeaseWait,
		ReconcileMinAge: cfg.ReconcileAfter, ReconcileFirstGap: cfg.ReconcileAfter, ReconcileLookBack: cfg.ReconcileLookBack,
		HealWindow: cfg.HealWindow,
		Logger:     log, Registry: reg, Panics: panics,
	})
	hooks, err := delivery.New(st, delivery.Options{Key: cfg.WebhookKey, AllowLoopback: cfg.WebhookAllowLoopback,
		Logger: log.With("component", "webhooks"), Registry: reg})
	if err != nil {
		return fail(2, "configuration: %s: %v", delivery.KeyVariable, err)
	}
	// One throttle and one way to find the client address, for the API's
	// bearer tokens and the console's sign-in alike.
	throttle := httpapi.NewThrottle(st, domain.AuthThrottle{Limit: config.DefaultAuthFailureLimit, Window: config.DefaultAuthFailureWindow}, log)
	clientIP := httpapi.ClientIP(cfg.TrustedProxies)
	ops := console.New(console.Options{Flows: svc, Store: st, Reads: st.Reads(), Webhooks: hooks, Tokens: cfg.Tokens, SessionTTL: cfg.ConsoleSessionTTL,
		SecureCookies: cfg.SecureCookies(), ReconcileMinAge: cfg.ReconcileAfter,
		ReconcileLookBack: cfg.ReconcileLookBack, Logger: log, Throttle: throttle, ClientIP: clientIP})
	api := httpapi.New(httpapi.Deps{
		Logger: log, Registry: reg, Panics: panics, Console: ops, ClientIP: clientIP,
		API:   &httpapi.API{Service: svc, Tokens: cfg.Tokens, Throttle: throttle, Webhooks: hooks},
		Ready: ready.check, ReadReady: readReady,
	})

	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fail(1, "listen on %s (CONTRACTD_HTTP_ADDR): %v", cfg.HTTPAddr, err)
		}
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: min(5*time.Second, cfg.HTTPReadTimeout),
		ReadTimeout:       cfg.HTTPReadTimeout,
		// A pre-sign may wait for WeChat through every retry.
		WriteTimeout: time.Duration(4)*(cfg.WeChat.Timeout+2*time.Second) + 15*time.Second,
		IdleTimeout:  60 * time.Second,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.PprofAddr != "" {
		stopProfiler, err := serveProfiler(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopProfiler()
	}
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	workersDone := make(chan struct{})
	hooksDone := make(chan struct{})
	go func() { defer close(hooksDone); hooks.Run(workCtx) }()
	go func() {
		defer close(workersDone)
		if certs == nil {
			svc.RunWorkers(workCtx, cfg.SweepInterval, cfg.ReconcileInterval, cfg.TimelineInterval)
			return
		}
		refreshDone := make(chan struct{})
		go func() { certs.Run(workCtx); close(refreshDone) }()
		svc.RunWorkers(workCtx, cfg.SweepInterval, cfg.ReconcileInterval, cfg.TimelineInterval)
		<-refreshDone
	}()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(httpapi.Listener(ln)) }()
	log.Info("contractd serving", "addr", ln.Addr().String(), "mode", string(cfg.Mode), "trusted_proxies", len(cfg.TrustedProxies),
		"notify_url", cfg.NotifyURL(), "tokens", cfg.Tokens.Len(), "db_query_exec_mode", store.ExecMode(pool),
		"db_read", readsOn(st.Reads()), "db_read_query_exec_mode", store.ExecMode(st.Reads().Pool()))
	if cfg.Tokens.Len() == 0 {
		log.Warn("CONTRACTD_API_TOKENS is empty: every API route will answer 401")
	}
	if listening != nil {
		listening <- ln.Addr().String()
	}

	select {
	case err = <-serveErr:
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
	}
	stopWork()
	<-workersDone
	<-hooksDone
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fail(1, "server: %v", err)
	}
	log.Info("stopped")
	return nil
}

// readsOn names where the console's reports read, for the start-up log.
func readsOn(r *store.Reads) string {
	if r.Separate() {
		return "standby"
	}
	return "primary"
}

// healthcheckCmd runs `contractd healthcheck`: GET /readyz on the address
// the service listens on (CONTRACTD_HTTP_ADDR, default :8080).
func healthcheckCmd(ctx context.Context, getenv func(string) string) error {
	addr := strings.TrimSpace(getenv("CONTRACTD_HTTP_ADDR"))
	if addr == "" {
		addr = ":8080"
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, localURL(addr)+"/readyz", nil)
	if err != nil {
		return fail(1, "healthcheck: CONTRACTD_HTTP_ADDR %q: %v", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fail(1, "healthcheck: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(1, "healthcheck: /readyz answered %d", resp.StatusCode)
	}
	return nil
}

// localURL turns a listen address into a URL a browser on this machine can open.
func localURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("http://%s:%s", host, port)
}

// newLoopbackListener opens a listener on a free loopback port.
func newLoopbackListener() (net.Listener, error) {
	return net.Listen("tcp", "127.0.0.1:0")
}

// serveProfiler answers Go's profiler (net/http/pprof) on addr, on its own
// listener so that the API never exposes it; the returned stop closes it.
func serveProfiler(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fail(1, "listen on %s (CONTRACTD_PPROF_ADDR): %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("profiler serving", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
