// Package console is contractd's operations console: server-rendered pages
// under /ops/ for merchant operations. It holds no business rules: reading
// and acting on contracts go through package lifecycle, and on webhook
// endpoints through package delivery, the same flows as the API; its own
// state (console sessions, failed sign-ins) lives in
// Postgres through package store, so every replica shares it.
//
// Sign-in takes an ops token and starts a session whose random id is the
// only thing the cookie holds (HttpOnly, SameSite=Strict, Secure behind
// https). The session is bound to that token: it ends on every replica
// where the token is no longer configured. Sign-ins are attempts for the
// same token throttle as the API's bearer tokens. Every POST form carries
// the session's CSRF token (sign-in a pre-session one) and is refused with
// 403 without it. Pages are sent with a restrictive Content-Security-Policy
// and may not be framed. Templates, styles and the one small script are
// embedded in the binary.
package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/httpapi"
	"github.com/contractd/contractd/logging"
	"github.com/contractd/contractd/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Flows are the lifecycle flows the console runs; *lifecycle.Service is
// the one implementation.
type Flows interface {
	Get(ctx context.Context, key domain.Key) (domain.Contract, error)
	History(ctx context.Context, key domain.Key) ([]domain.HistoryEntry, error)
	Feed(ctx context.Context, after string, limit int) (domain.FeedPage, error)
	// Terminate and Sync take the operator acting (the session's actor,
	// "" for an unnamed token): the history names them.
	Terminate(ctx context.Context, key domain.Key, actor, note string) (domain.Contract, error)
	Sync(ctx context.Context, key domain.Key, actor string) (domain.Contract, error)
}

// Store is what the console reads and keeps itself; *store.Store is the
// one implementation.
type Store interface {
	CreateConsoleSession(ctx context.Context, idHash string, sess store.ConsoleSession) error
	ConsoleSession(ctx context.Context, idHash string) (store.ConsoleSession, error)
	DeleteConsoleSession(ctx context.Context, idHash string) error
	httpapi.ThrottleStore
	Search(ctx context.Context, q string, limit int) ([]domain.Contract, error)
	Notifications(ctx context.Context, key domain.Key) ([]store.NotificationRecord, error)
	FeedTail(ctx context.Context, limit int) ([]domain.HistoryEntry, string, error)
}

// Reads are the console's reports, which may be read on a standby and be
// as old as its replication lag: the overview, the contract lists and the
// CSV export. *store.Reads is the one implementation. A contract's page,
// search, the live feed and every action read the primary (Flows, Store).
type Reads interface {
	List(ctx context.Context, f domain.ListFilter) ([]domain.Contract, string, error)
	Overview(ctx context.Context, o store.OverviewOptions) (store.Overview, error)
}

// Options configure the console.
type Options struct {
	Flows Flows
	Store Store
	// Reads serve the overview, the contract lists and the CSV export.
	Reads Reads
	// Webhooks manage the webhook endpoints (the endpoints' pages); nil
	// leaves them out of the console.
	Webhooks delivery.Flows
	Tokens   config.Tokens
	// SessionTTL is how long a session lasts after sign-in (default 8h).
	SessionTTL time.Duration
	// SecureCookies marks cookies Secure (when the public URL is https).
	SecureCookies bool
	// OverviewMaxAge is how old the overview's figures may grow before a
	// view starts reading them again in the background (default 10s); the
	// page shows their age.
	OverviewMaxAge time.Duration
	// ReconcileMinAge and ReconcileLookBack are reconciliation's rule, for
	// the overview's backlog: the values reconciliation runs with (config
	// owns their defaults).
	ReconcileMinAge   time.Duration
	ReconcileLookBack time.Duration
	// Throttle counts sign-ins as token attempts of their client address
	// (the API's throttle, so that a guess costs the same anywhere); by
	// default one on Store with config's default limit and window.
	Throttle *httpapi.Throttle
	// ClientIP finds a request's client address, as the API does
	// (httpapi.ClientIP); the TCP peer's by default.
	ClientIP func(*http.Request) string
	Logger   *slog.Logger
	Now      func() time.Time
}

// Console serves the operations console.
type Console struct {
	opt   Options
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template

	mu       sync.Mutex
	overview map[string]overviewEntry
}

// overviewEntry is the last overview figures read for one period, and
// whether a read of newer ones is under way.
type overviewEntry struct {
	ov         store.Overview
	refreshing bool
}

// Cookie names.
const (
	sessionCookie = "contractd_console"
	signinCookie  = "contractd_console_signin"
)

// New builds the console. It panics when an embedded template does not
// parse, which a test catches.
func New(o Options) *Console {
	if o.SessionTTL <= 0 {
		o.SessionTTL = config.DefaultConsoleSessionTTL
	}
	if o.OverviewMaxAge <= 0 {
		o.OverviewMaxAge = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Throttle == nil {
		o.Throttle = httpapi.NewThrottle(o.Store, domain.AuthThrottle{Limit: config.DefaultAuthFailureLimit, Window: config.DefaultAuthFailureWindow}, o.Logger)
	}
	if o.ClientIP == nil {
		o.ClientIP = httpapi.ClientIP(nil)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Console{opt: o, log: o.Logger, pages: parsePages(), overview: map[string]overviewEntry{}}
	c.routes()
	return c
}

func (c *Console) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /ops/assets/", c.asset)
	m.HandleFunc("GET /ops", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ops/", http.StatusMovedPermanently)
	})
	m.HandleFunc("GET /ops/signin", c.signInPage)
	m.HandleFunc("POST /ops/signin", c.signIn)
	m.HandleFunc("POST /ops/signout", c.authed(c.signOut))
	m.HandleFunc("GET /ops/{$}", c.authed(c.overviewPage))
	m.HandleFunc("GET /ops/contracts", c.authed(c.listPage))
	m.HandleFunc("GET /ops/contracts.csv", c.authed(c.exportCSV))
	m.HandleFunc("GET /ops/search", c.authed(c.search))
	m.HandleFunc("GET /ops/contract", c.authed(c.contractPage))
	m.HandleFunc("POST /ops/contract/reveal", c.authed(c.reveal))
	m.HandleFunc("POST /ops/contract/terminate", c.authed(c.terminate))
	m.HandleFunc("POST /ops/contract/sync", c.authed(c.sync))
	m.HandleFunc("GET /ops/feed", c.authed(c.feedPage))
	m.HandleFunc("GET /ops/feed.json", c.authed(c.feedJSON))
	c.webhookRoutes(m)
	m.HandleFunc("/ops/", c.notFound)
	c.mux = m
}

func (c *Console) notFound(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusNotFound, "error.html", page{Title: "Not found", Message: "There is no console page at this address."})
}

// assetFiles serves the embedded styles and script.
var assetFiles = http.FileServerFS(mustSub(assetFS))

// asset serves one embedded asset; a directory (/ops/assets/ itself) is
// not listed but not found, like any other address with no page.
func (c *Console) asset(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/ops/")
	if st, err := fs.Stat(assetFS, name); err != nil || st.IsDir() {
		c.notFound(w, r)
		return
	}
	http.StripPrefix("/ops/", assetFiles).ServeHTTP(w, r)
}

// maxFormBytes bounds the body of a console form.
const maxFormBytes = 64 << 10

// formTooLarge refuses a POST whose body is over maxFormBytes with 413 and
// reports true: on its declared length before anything is read (so a
// client that sent "Expect: 100-continue" gets the refusal, not "100
// Continue"), else while the form is parsed. Every handler then finds the
// form parsed.
func (c *Console) formTooLarge(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	var mbe *http.MaxBytesError
	if r.ContentLength <= maxFormBytes {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); !errors.As(err, &mbe) {
			return false
		}
	}
	c.log.WarnContext(r.Context(), "console form refused: over the size limit", "path", r.URL.Path, "content_length", r.ContentLength)
	c.render(w, r, http.StatusRequestEntityTooLarge, "error.html", page{Title: "Too large",
		Message: "This form is over 64 KiB: nothing was done."})
	return true
}

func mustSub(f embed.FS) fs.FS {
	s, err := fs.Sub(f, ".")
	if err != nil {
		panic(err)
	}
	return s
}

// ServeHTTP serves every console page with the console's security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if c.formTooLarge(w, r) {
		return
	}
	c.mux.ServeHTTP(w, r)
}

// session is the signed-in operator of a request.
type session struct {
	idHash string
	store.ConsoleSession
}

type sessionKey struct{}

func sessionOf(r *http.Request) session {
	s, _ := r.Context().Value(sessionKey{}).(session)
	return s
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// sessionBinding is the message a session's token MAC is computed over:
// config.TokenMAC(token, sessionBinding(id)) binds the session with the
// cookie id to the ops token that opened it. Keyed with the token and
// taken over the random id, which the database does not hold, the stored
// value tells nothing about the token, even a short one; every replica
// computes the same value from its configured tokens.
func sessionBinding(id string) []byte {
	return []byte("contractd console session\x00" + id)
}

// authed admits requests of a live session: an unknown or lapsed one goes
// back to sign-in. POSTs must carry the session's CSRF token (403 without
// it, before anything is done). The session's operator becomes the actor
// of what the request does.
func (c *Console) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(sessionCookie)
		if err != nil || len(ck.Value) != 64 {
			http.Redirect(w, r, "/ops/signin", http.StatusSeeOther)
			return
		}
		idHash := hashID(ck.Value)
		sess, err := c.opt.Store.ConsoleSession(r.Context(), idHash)
		if domain.IsCode(err, domain.CodeUnauthorized) {
			c.clearCookie(w, sessionCookie)
			http.Redirect(w, r, "/ops/signin?expired=1", http.StatusSeeOther)
			return
		}
		if err != nil {
			c.fail(w, r, err)
			return
		}
		// The token that opened the session must still be configured here,
		// as an ops token of the same holder: a revoked token's sessions end
		// on every replica that no longer has it, at their next request.
		holder, ok := c.opt.Tokens.HolderByMAC(sess.TokenMAC, sessionBinding(ck.Value))
		if !ok || holder.Scope != config.ScopeOps || holder.Name != sess.Actor {
			c.log.WarnContext(logging.WithActor(r.Context(), sess.Actor),
				"console session refused: the token that opened it is no longer configured", "path", r.URL.Path)
			c.clearCookie(w, sessionCookie)
			http.Redirect(w, r, "/ops/signin?expired=1", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := r.ParseForm(); err != nil || !sameToken(r.PostForm.Get("csrf"), sess.CSRFToken) {
				c.log.WarnContext(r.Context(), "console form refused: missing or wrong CSRF token", "path", r.URL.Path)
				c.render(w, r, http.StatusForbidden, "error.html", page{Title: "Forbidden",
					Message: "This form was not sent from a console page of this session (its CSRF token is missing or wrong). Nothing was changed."})
				return
			}
		}
		ctx := context.WithValue(r.Context(), sessionKey{}, session{idHash: idHash, ConsoleSession: sess})
		if sess.Actor != "" {
			ctx = logging.WithActor(ctx, sess.Actor)
		}
		next(w, r.WithContext(ctx))
	}
}

func sameToken(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/ops/", MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, Secure: c.opt.SecureCookies, SameSite: http.SameSiteStrictMode})
}

func (c *Console) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/ops/", MaxAge: -1,
		HttpOnly: true, Secure: c.opt.SecureCookies, SameSite: http.SameSiteStrictMode})
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	c.renderSignIn(w, r, http.StatusOK, "")
}

// signInRule is the token throttle's rule as the sign-in page states it.
type signInRule struct {
	Limit  int
	Window string
}

func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, problem string) {
	csrf := randomToken()
	c.setCookie(w, signinCookie, csrf, 30*time.Minute)
	rule := c.opt.Throttle.Rule()
	p := page{Title: "Sign in", CSRF: csrf, Problem: problem,
		Data: signInRule{Limit: rule.Limit, Window: roundUpMinutes(rule.Window)}}
	if problem == "" && r.URL.Query().Get("expired") != "" {
		p.Problem = "Your console session has ended. Sign in again."
	}
	c.render(w, r, status, "signin.html", p)
}

// signIn checks an ops token and starts a session bound to it. Each
// sign-in is an attempt for the token throttle, counted and decided in one
// atomic step in Postgres, so that every replica refuses an address that
// keeps failing, and concurrent attempts cannot all slip under the limit;
// a wrong token, or one of another scope, is a failure. Beyond the limit
// the answer is 429 whatever the token, and the page says so. Refusals are
// logged without the token.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	ck, cerr := r.Cookie(signinCookie)
	if err := r.ParseForm(); err != nil || cerr != nil || !sameToken(r.PostForm.Get("csrf"), ck.Value) {
		c.log.WarnContext(r.Context(), "console sign-in refused: missing or wrong CSRF token")
		c.render(w, r, http.StatusForbidden, "error.html", page{Title: "Forbidden",
			Message: "This sign-in form was not sent from the console's sign-in page (its CSRF token is missing or wrong). Open the sign-in page and try again."})
		return
	}
	ctx, addr := r.Context(), c.opt.ClientIP(r)
	token := r.PostForm.Get("token")
	holder, known := c.opt.Tokens.Holder(token)
	admitted := known && holder.Scope == config.ScopeOps
	count, err := c.opt.Throttle.Attempt(ctx, addr, !admitted)
	var de *domain.Error
	if errors.As(err, &de) && de.Code == domain.CodeTooManyRequests {
		c.log.WarnContext(ctx, "console sign-in refused: too many failures", "address", addr, "failures", count.Failures)
		w.Header().Set("Retry-After", itoa(int(math.Ceil(de.RetryAfter.Seconds()))))
		rule := c.opt.Throttle.Rule()
		c.renderSignIn(w, r, http.StatusTooManyRequests, fmt.Sprintf("Too many wrong tokens from your address "+
			"(%d failed sign-ins or API calls within %s). Until %s (in about %s) every sign-in from it is refused, "+
			"even with the right token. Wait, then try again.",
			rule.Limit, roundUpMinutes(rule.Window), rule.Ends(count).UTC().Format("15:04:05Z"), roundUpMinutes(de.RetryAfter)))
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if !admitted {
		reason, status, problem := "unknown token", http.StatusUnauthorized, "That token is not known."
		if known {
			reason, status, problem = "not an ops token", http.StatusForbidden, "That token cannot sign in to the console: an ops token is needed."
		}
		c.log.WarnContext(ctx, "console sign-in refused", "reason", reason, "address", addr, "failures", count.Failures)
		c.renderSignIn(w, r, status, problem)
		return
	}
	id := randomToken()
	sess := store.ConsoleSession{Actor: holder.Name, CSRFToken: randomToken(), TokenMAC: config.TokenMAC(token, sessionBinding(id)),
		ExpiresAt: c.opt.Now().Add(c.opt.SessionTTL)}
	if err := c.opt.Store.CreateConsoleSession(ctx, hashID(id), sess); err != nil {
		c.fail(w, r, err)
		return
	}
	c.clearCookie(w, signinCookie)
	c.setCookie(w, sessionCookie, id, c.opt.SessionTTL)
	c.log.InfoContext(logging.WithActor(ctx, holder.Name), "console sign-in", "address", addr)
	http.Redirect(w, r, "/ops/", http.StatusSeeOther)
}

// roundUpMinutes says d in whole minutes, rounded up ("1 minute" at least).
func roundUpMinutes(d time.Duration) string {
	m := int(math.Ceil(d.Minutes()))
	if m <= 1 {
		return "1 minute"
	}
	return itoa(m) + " minutes"
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	if err := c.opt.Store.DeleteConsoleSession(r.Context(), sessionOf(r).idHash); err != nil {
		c.fail(w, r, err)
		return
	}
	c.clearCookie(w, sessionCookie)
	c.log.InfoContext(r.Context(), "console sign-out")
	http.Redirect(w, r, "/ops/signin", http.StatusSeeOther)
}

// fail renders an error page with the API's status for err; the cause of
// an internal error is logged, not shown.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg := "Something went wrong; it has been logged."
	var de *domain.Error
	if errors.As(err, &de) && status < 500 || status == http.StatusBadGateway || status == http.StatusServiceUnavailable {
		if de != nil {
			msg = de.Message
		}
	}
	if status >= 500 {
		c.log.ErrorContext(r.Context(), "console request failed", "path", r.URL.Path, "status", status, "error", err.Error())
	}
	c.render(w, r, status, "error.html", page{Title: "Error", Message: msg})
}
