// Package httpapi turns HTTP into calls of contractd's flows and answers
// back. It holds no business rules: it authenticates, decodes, calls
// package lifecycle (and, for webhook endpoints, the Webhooks flows of
// package delivery), and maps domain errors to statuses in one place
// (errors.go).
package httpapi

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/contractd/contractd/lifecycle"
	"github.com/contractd/contractd/logging"
	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed openapi.yaml
var openAPI []byte

// MaxBodyBytes is the largest request body any route accepts.
const MaxBodyBytes = 64 << 10

// Readiness tells whether the service can take traffic: the database answers
// and its schema is current. It returns the database's state for the
// answer's "db" field: "ok", or "busy" when every pooled connection is in
// use (still ready: a load balancer must not drop every replica at once
// for load), and an error, with the state ("unreachable", "schema_behind"),
// only when the service must not take traffic.
type Readiness func(ctx context.Context) (db string, err error)

// ReadReadiness tells the state of the standby the console's reports read
// (CONTRACTD_DB_READ_URL), for the answer's "db_read" field: "ok",
// "unreachable" or "schema_behind". It never makes the replica unready: a
// standby down costs the console's overview, lists and export, while the
// API, notifications and every other page still work on the primary.
type ReadReadiness func(ctx context.Context) (dbRead string)

// Server is contractd's HTTP API.
type Server struct {
	echo    *echo.Echo
	log     *slog.Logger
	deps    Deps
	metrics *httpMetrics
}

// Deps are what the API needs.
type Deps struct {
	Logger *slog.Logger
	Ready  Readiness
	// ReadReady, when set (a standby is configured), is reported as
	// db_read by /readyz.
	ReadReady ReadReadiness
	Registry  *prometheus.Registry
	// Panics counts recovered panics (label where="http"); one is made and
	// registered when nil.
	Panics *prometheus.CounterVec
	// API, when set, adds the contract and notification routes.
	API *API
	// Console, when set, serves the operations console under /ops/ (it
	// authenticates its own requests).
	Console http.Handler
	// ClientIP finds a request's client address (see ClientIP); the TCP
	// peer's when nil.
	ClientIP echo.IPExtractor
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// byRoute keeps each (route, method, status)'s counter and observer, so
	// that a request looks its series up once rather than through the
	// vectors' label hashing.
	byRoute sync.Map // routeKey -> *routeSeries
}

type routeKey struct {
	route, method string
	status        int
}

type routeSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// series returns the counter and observer of one route, method and status.
func (m *httpMetrics) series(route, method string, status int) *routeSeries {
	k := routeKey{route, method, status}
	if v, ok := m.byRoute.Load(k); ok {
		return v.(*routeSeries)
	}
	v, _ := m.byRoute.LoadOrStore(k, &routeSeries{
		requests: m.requests.WithLabelValues(route, method, strconv.Itoa(status)),
		duration: m.duration.WithLabelValues(route, method),
	})
	return v.(*routeSeries)
}

// New builds the API's handler.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
	}
	s := &Server{echo: echo.New(), log: d.Logger, deps: d}
	s.metrics = &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_http_requests_total",
			Help: "HTTP requests by route, method and status."}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "contractd_http_request_duration_seconds",
			Help: "HTTP request latency by route.", Buckets: prometheus.DefBuckets}, []string{"route", "method"}),
	}
	d.Registry.MustRegister(s.metrics.requests, s.metrics.duration)
	if d.Panics == nil {
		d.Panics = lifecycle.NewPanicCounter()
		d.Registry.MustRegister(d.Panics)
	}
	s.deps.Panics = d.Panics
	if d.ClientIP == nil {
		d.ClientIP = echo.ExtractIPDirect()
	}
	s.echo.IPExtractor = d.ClientIP
	s.echo.Logger = d.Logger
	s.echo.HTTPErrorHandler = s.errorHandler
	s.echo.Use(s.requestIDAndLog, s.recoverPanics, checkInput)

	s.echo.GET("/healthz", func(c *echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	s.echo.GET("/readyz", s.readyz)
	s.echo.GET("/openapi.yaml", func(c *echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", openAPI)
	})
	s.echo.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{})))
	if d.API != nil {
		d.API.register(s)
	}
	if d.Console != nil {
		console := echo.WrapHandler(d.Console)
		s.echo.GET("/ops", console)
		s.echo.GET("/ops/*", console)
		s.echo.POST("/ops/*", console)
	}
	return s
}

// Handler returns the http.Handler serving the API.
func (s *Server) Handler() http.Handler { return s.echo }

func (s *Server) readyz(c *echo.Context) error {
	if s.deps.Ready == nil {
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	db, err := s.deps.Ready(ctx)
	answer := map[string]string{"status": "ready", "db": db}
	if s.deps.ReadReady != nil {
		answer["db_read"] = s.deps.ReadReady(ctx)
	}
	if err != nil {
		answer["status"], answer["reason"] = "unavailable", err.Error()
		return c.JSON(http.StatusServiceUnavailable, answer)
	}
	return c.JSON(http.StatusOK, answer)
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// requestIDAndLog gives every request an id (the caller's X-Request-Id when
// it is sane), echoes it on the answer, and logs one line per request.
func (s *Server) requestIDAndLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		start := time.Now()
		id := c.Request().Header.Get("X-Request-Id")
		if !saneRequestID(id) {
			id = newRequestID()
		}
		c.SetRequest(c.Request().WithContext(logging.WithRequestID(c.Request().Context(), id)))
		c.Response().Header().Set("X-Request-Id", id)
		err := next(c)
		if err != nil {
			s.errorHandler(c, err)
		}
		_, status := echo.ResolveResponseStatus(c.Response(), nil)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		took := time.Since(start)
		m := s.metrics.series(route, c.Request().Method, status)
		m.requests.Inc()
		m.duration.Observe(took.Seconds())
		if route != "/healthz" && route != "/readyz" && route != "/metrics" && s.log.Enabled(c.Request().Context(), slog.LevelInfo) {
			s.log.InfoContext(c.Request().Context(), "request", "method", c.Request().Method, "route", route,
				"status", status, "duration_ms", took.Milliseconds(), "client", c.RealIP())
		}
		return nil
	}
}

// saneRequestID reports whether a caller's X-Request-Id may be echoed and
// logged: 1-64 visible ASCII characters.
func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= 0x20 || id[i] >= 0x7f {
			return false
		}
	}
	return true
}

// recoverPanics turns a handler's panic into a 500, a log line with the
// panic's stack, and a count in contractd_panics_total{where="http"}.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				s.deps.Panics.WithLabelValues("http").Inc()
				s.log.ErrorContext(c.Request().Context(), "panic recovered", "where", "http", "method", c.Request().Method,
					"route", c.Path(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return next(c)
	}
}
