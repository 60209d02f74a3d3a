// Package config reads contractd's configuration from the environment, as
// api.md's configuration table lists it. Every setting is checked at start-up,
// and every missing, unreadable or invalid one is reported at once, one line
// each naming its variable; secrets never appear in those lines.
package config

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/wechatpay"
)

// NotifyPath is where WeChat posts notifications, under CONTRACTD_PUBLIC_URL.
const NotifyPath = "/v1/notifications/wechatpay"

// DefaultDatabaseURL is used when DATABASE_URL is unset.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/contractd?sslmode=disable"

// DatabaseURL is DATABASE_URL as getenv has it, DefaultDatabaseURL when
// unset.
func DatabaseURL(getenv func(string) string) string {
	if v := strings.TrimSpace(getenv("DATABASE_URL")); v != "" {
		return v
	}
	return DefaultDatabaseURL
}

// MigrateDatabaseURL is where migrations run: CONTRACTD_MIGRATE_DATABASE_URL,
// or DatabaseURL when unset. It must be a direct connection to the primary
// (never a pooler in transaction mode): goose holds a session-level
// advisory lock while it migrates.
func MigrateDatabaseURL(getenv func(string) string) string {
	if v := strings.TrimSpace(getenv("CONTRACTD_MIGRATE_DATABASE_URL")); v != "" {
		return v
	}
	return DatabaseURL(getenv)
}

// Scope is what a bearer token may do.
type Scope string

// The two token scopes.
const (
	ScopeApp Scope = "app"
	ScopeOps Scope = "ops"
)

// Tokens maps bearer tokens to their scopes and, when the entry names one,
// their holders.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	token []byte
	scope Scope
	name  string
}

// Holder is who a token belongs to: its scope and the holder's name ("" for
// an entry of the form scope:token).
type Holder struct {
	Scope Scope
	Name  string
}

// Lookup returns the scope of token. Every configured token is compared in
// constant time, so the answer's timing says nothing about how much of a
// token matched or which entry did.
func (t Tokens) Lookup(token string) (Scope, bool) {
	h, ok := t.Holder(token)
	return h.Scope, ok
}

// Holder returns the scope and holder name of token, comparing every
// configured token in constant time as Lookup does.
func (t Tokens) Holder(token string) (Holder, bool) {
	var found Holder
	ok := 0
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(e.token, []byte(token)) == 1 {
			found = Holder{Scope: e.scope, Name: e.name}
			ok = 1
		}
	}
	return found, ok == 1
}

// TokenMAC is HMAC-SHA256 keyed with token over message. The console binds
// a session to the token that opened it this way, over the session's random
// id: every replica computes the same value from its configured tokens,
// and the value says nothing about the token to whoever lacks the id.
func TokenMAC(token string, message []byte) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write(message)
	return m.Sum(nil)
}

// HolderByMAC returns the holder of the configured token whose TokenMAC over
// message is mac. Every entry is computed and compared in constant time, so
// the answer's timing says nothing about which entry matched.
func (t Tokens) HolderByMAC(mac, message []byte) (Holder, bool) {
	var found Holder
	ok := 0
	for _, e := range t.entries {
		m := hmac.New(sha256.New, e.token)
		m.Write(message)
		if subtle.ConstantTimeCompare(m.Sum(nil), mac) == 1 {
			found = Holder{Scope: e.scope, Name: e.name}
			ok = 1
		}
	}
	return found, ok == 1
}

// maxHolderName is the longest holder name a token entry may carry.
const maxHolderName = 64

// validHolderName reports whether name may name a token's holder: 1 to 64
// letters, digits, '.', '_', '-' or '@', so that it is safe in logs,
// history details and pages.
func validHolderName(name string) bool {
	if name == "" || len(name) > maxHolderName {
		return false
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)
		if !ok {
			return false
		}
	}
	return true
}

// Len is the number of configured tokens.
func (t Tokens) Len() int { return len(t.entries) }

// ParseTokens reads a comma-separated list of scope:token or
// scope:name:token entries. A token itself never contains ':' when a name
// is given; an entry with one ':' is scope:token, as before names existed.
func ParseTokens(s string) (Tokens, error) {
	var t Tokens
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		scope, token, ok := strings.Cut(pair, ":")
		if !ok || token == "" {
			return Tokens{}, fmt.Errorf("each entry must be scope:token or scope:name:token")
		}
		name := ""
		if n, rest, named := strings.Cut(token, ":"); named {
			if !validHolderName(n) {
				return Tokens{}, fmt.Errorf("a holder name must be 1 to %d letters, digits, '.', '_', '-' or '@'", maxHolderName)
			}
			if rest == "" {
				return Tokens{}, fmt.Errorf("each entry must be scope:token or scope:name:token")
			}
			name, token = n, rest
		}
		if Scope(scope) != ScopeApp && Scope(scope) != ScopeOps {
			return Tokens{}, fmt.Errorf("scope %q is neither app nor ops", scope)
		}
		t.entries = append(t.entries, tokenEntry{token: []byte(token), scope: Scope(scope), name: name})
	}
	return t, nil
}

// ParseTrustedProxies reads a comma-separated list of CIDRs (10.0.0.0/8,
// 2001:db8::/32); a bare address stands for itself alone. A network
// holding every address (/0) is refused: it would believe anyone's
// X-Forwarded-For.
func ParseTrustedProxies(s string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !strings.Contains(item, "/") {
			ip := net.ParseIP(item)
			if ip == nil {
				return nil, fmt.Errorf("%q is neither a CIDR such as 10.0.0.0/8 nor an IP address", item)
			}
			bits := 128
			if ip4 := ip.To4(); ip4 != nil {
				ip, bits = ip4, 32
			}
			nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", item)
		}
		if ones, _ := n.Mask.Size(); ones == 0 {
			return nil, fmt.Errorf("%q holds every address: X-Forwarded-For would be believed from anyone", item)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

// DefaultHTTPReadTimeout is how long the server reads one request, headers
// and body, by default.
const DefaultHTTPReadTimeout = 15 * time.Second

// DeprecatedLeaseWaitVariable is CONTRACTD_LEASE_WAIT's old name, from when
// only pre-signs waited for a lease. Load still reads it when the new name
// is unset, and says so in Config.Warnings.
const DeprecatedLeaseWaitVariable = "CONTRACTD_PRESIGN_WAIT"

// leaseWaitVariable names the variable that sets LeaseWait:
// CONTRACTD_LEASE_WAIT, or its deprecated name when only that is set; a
// warning goes to c.Warnings whenever the deprecated name is set.
func leaseWaitVariable(getenv func(string) string, c *Config) string {
	if strings.TrimSpace(getenv(DeprecatedLeaseWaitVariable)) == "" {
		return "CONTRACTD_LEASE_WAIT"
	}
	if strings.TrimSpace(getenv("CONTRACTD_LEASE_WAIT")) != "" {
		c.Warnings = append(c.Warnings, DeprecatedLeaseWaitVariable+" is deprecated and ignored: CONTRACTD_LEASE_WAIT is set too and is used; unset "+DeprecatedLeaseWaitVariable)
		return "CONTRACTD_LEASE_WAIT"
	}
	c.Warnings = append(c.Warnings, DeprecatedLeaseWaitVariable+" is deprecated: rename it CONTRACTD_LEASE_WAIT (it bounds a terminate's wait too); the old name still works for now")
	return DeprecatedLeaseWaitVariable
}

// ParseWebhookKey reads CONTRACTD_WEBHOOK_KEY: 32 bytes in standard or
// URL-safe base64, padded or not. Its error never holds the value.
func ParseWebhookKey(v string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(v); err == nil {
			if len(k) != 32 {
				return nil, fmt.Errorf("must be 32 bytes in base64, not %d bytes", len(k))
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("must be 32 bytes in base64 (for example: openssl rand -base64 32)")
}

// Variables lists every environment variable Load reads.
var Variables = []string{
	"DATABASE_URL", "CONTRACTD_MIGRATE_DATABASE_URL", "CONTRACTD_DB_READ_URL", "CONTRACTD_HTTP_ADDR", "CONTRACTD_PUBLIC_URL", "CONTRACTD_API_TOKENS",
	"WECHATPAY_MODE", "WECHATPAY_MCHID", "WECHATPAY_APPID", "WECHATPAY_SP_APPID",
	"WECHATPAY_MERCHANT_SERIAL", "WECHATPAY_PRIVATE_KEY_FILE", "WECHATPAY_APIV3_KEY",
	"WECHATPAY_PLATFORM_CERT_FILES", "WECHATPAY_PUBLIC_KEY_ID", "WECHATPAY_PUBLIC_KEY_FILE",
	"WECHATPAY_BASE_URL", "WECHATPAY_DOMESTIC_BASE_URL", "WECHATPAY_PASSWORD_EXEMPT_VARIANT",
	"WECHATPAY_TIMEOUT", "CONTRACTD_SWEEP_INTERVAL", "CONTRACTD_RECONCILE_INTERVAL",
	"CONTRACTD_RECONCILE_AFTER", "CONTRACTD_TIMELINE_INTERVAL", "CONTRACTD_HEAL_WINDOW", "CONTRACTD_LEASE_WAIT", DeprecatedLeaseWaitVariable, "CONTRACTD_LEASE_TTL",
	"CONTRACTD_SHUTDOWN_TIMEOUT", "CONTRACTD_HTTP_READ_TIMEOUT", "CONTRACTD_LOG_LEVEL", "CONTRACTD_DB_MAX_CONNS", "CONTRACTD_PPROF_ADDR",
	"WECHATPAY_CERT_REFRESH_INTERVAL", "WECHATPAY_CERT_REFRESH_MIN_GAP", "CONTRACTD_CONSOLE_SESSION_TTL",
	"CONTRACTD_TRUSTED_PROXIES",
	"CONTRACTD_DB_LOCK_TIMEOUT", "CONTRACTD_DB_STATEMENT_TIMEOUT",
	"CONTRACTD_WEBHOOK_KEY", "CONTRACTD_WEBHOOK_ALLOW_LOOPBACK",
}

// Defaults of the lease settings: a waiter answers IN_PROGRESS well within
// an app server's usual 10 s timeout, and a dead lease holder is replaced
// within a few seconds.
const (
	DefaultLeaseWait = 3 * time.Second
	DefaultLeaseTTL  = 5 * time.Second
	// DefaultConsoleSessionTTL is the operations console's session
	// lifetime: a working day.
	DefaultConsoleSessionTTL = 8 * time.Hour
)

// The token throttle, for the API's bearer tokens and the console's
// sign-in alike: after DefaultAuthFailureLimit wrong tokens from one client
// address within DefaultAuthFailureWindow (counted from its first failure),
// every attempt from that address is refused with 429 until the window has
// passed.
const (
	DefaultAuthFailureLimit  = 5
	DefaultAuthFailureWindow = 15 * time.Minute
)

// Defaults of reconciliation: a session is first asked about once it is
// DefaultReconcileAfter old without a notification, and an expired one is
// still asked about for DefaultReconcileLookBack after it expired.
const (
	DefaultReconcileAfter    = time.Minute
	DefaultReconcileLookBack = 24 * time.Hour
)

// Defaults of the database's bounds: a request waits at most a couple of
// seconds for a contract's row lock (CONTRACTD_DB_LOCK_TIMEOUT; rows are
// locked for milliseconds, since no transaction spans a call to WeChat), and
// no statement of the service runs longer than a few seconds
// (CONTRACTD_DB_STATEMENT_TIMEOUT; the slowest, the console overview's count
// by state, takes well under a second at a million contracts: see
// BENCHMARKS.md).
const (
	DefaultDBLockTimeout      = 2 * time.Second
	DefaultDBStatementTimeout = 5 * time.Second
)

// Defaults of the healing after a failover: the database's timeline is
// read every DefaultTimelineInterval, and a promotion has WeChat asked
// about every contract not terminated that changed within
// DefaultHealWindow before it (and every open session).
const (
	DefaultTimelineInterval = 5 * time.Second
	DefaultHealWindow       = time.Hour
)

// DefaultDBMaxConns is the database pool's size when CONTRACTD_DB_MAX_CONNS
// is unset. The benchmark (BENCHMARKS.md) drives 16 concurrent clients; at
// 16 connections notification ingestion reaches its Postgres ceiling while
// fewer leave requests queueing for a connection, and more only add
// contention on a 2-core database.
const DefaultDBMaxConns = 16

// Config is contractd's whole configuration.
type Config struct {
	// DatabaseURL is the primary (DATABASE_URL): the serving pool, and
	// readiness's schema check.
	DatabaseURL string
	// MigrateDatabaseURL is where `migrate`, `serve --migrate` and `dev`
	// run migrations (CONTRACTD_MIGRATE_DATABASE_URL): a direct connection
	// to the primary; DatabaseURL when unset.
	MigrateDatabaseURL string
	// DBReadURL is where the console's overview, contract lists and CSV
	// export read (CONTRACTD_DB_READ_URL, a standby): store.Reads' pool.
	// DatabaseURL when unset: they then read the primary's pool.
	DBReadURL string
	// DBMaxConns is the size of the database connection pool.
	DBMaxConns int
	// DBLockTimeout bounds how long a request waits for a contract's row
	// lock (then IN_PROGRESS); DBStatementTimeout bounds one statement
	// (then UNAVAILABLE). Migrations are not bounded.
	DBLockTimeout      time.Duration
	DBStatementTimeout time.Duration
	HTTPAddr           string
	// PublicURL is the https base WeChat reaches us at; NotifyURL derives
	// from it.
	PublicURL string
	Tokens    Tokens
	Mode      domain.Mode
	MchID     string
	AppID     string // common mode
	SpAppID   string // institutional mode
	// PasswordExemptVariant picks the domestic pre-sign endpoint in common
	// mode: normal (default) or ecommerce. Institutional mode always uses
	// service-provider.
	PasswordExemptVariant wechatpay.DomesticMode
	WeChat                wechatpay.Config
	// SweepInterval is how often the expiry sweeper runs;
	// ReconcileInterval how often reconciliation asks WeChat.
	SweepInterval     time.Duration
	ReconcileInterval time.Duration
	// ReconcileAfter is how old a session without a notification must be
	// before reconciliation first asks WeChat about it; the pause between
	// two checks of one contract starts there too and doubles.
	ReconcileAfter time.Duration
	// ReconcileLookBack is how long after its expiry a session is still
	// asked about (DefaultReconcileLookBack; no variable sets it).
	ReconcileLookBack time.Duration
	// TimelineInterval is how often each replica reads the database's
	// timeline (CONTRACTD_TIMELINE_INTERVAL); HealWindow how long before a
	// promotion a contract's change may have been lost and is checked with
	// WeChat (CONTRACTD_HEAL_WINDOW).
	TimelineInterval time.Duration
	HealWindow       time.Duration
	// LeaseWait is how long a caller that finds a contract's lease held
	// (a pre-sign or an operator's terminate) waits for the holder's
	// outcome before answering IN_PROGRESS (CONTRACTD_LEASE_WAIT).
	LeaseWait time.Duration
	// LeaseTTL is how long a lease on a contract runs between renewals
	// while its holder calls WeChat: a holder that dies loses it within
	// this long.
	LeaseTTL time.Duration
	// CertRefreshInterval is how often the platform certificates are
	// downloaded; CertRefreshMinGap the least time between two downloads
	// of one host caused by unknown serials.
	CertRefreshInterval time.Duration
	CertRefreshMinGap   time.Duration
	// ConsoleSessionTTL is how long an operations console session lasts
	// after sign-in.
	ConsoleSessionTTL time.Duration
	// TrustedProxies are the networks of the proxies whose X-Forwarded-For
	// is believed for the client address (the throttle's key, logs); none
	// by default: the address is the TCP peer's.
	TrustedProxies  []*net.IPNet
	ShutdownTimeout time.Duration
	// HTTPReadTimeout bounds reading one whole request, body included: a
	// body that stalls past it is refused.
	HTTPReadTimeout time.Duration
	LogLevel        string
	// PprofAddr, when set, is where Go's profiler (net/http/pprof) answers,
	// apart from the API: keep it on loopback.
	PprofAddr string
	// WebhookKey is the 32-byte key that encrypts webhook endpoints'
	// secrets at rest (CONTRACTD_WEBHOOK_KEY, base64); nil turns webhooks
	// off: creating an endpoint is then INVALID_STATE naming the variable.
	WebhookKey []byte
	// WebhookAllowLoopback lets webhook endpoints target loopback and
	// link-local addresses (CONTRACTD_WEBHOOK_ALLOW_LOOPBACK; dev, tests).
	WebhookAllowLoopback bool
	// Warnings are settings that work but should change (a deprecated
	// variable name), one sentence each: start-up logs each at warn level.
	Warnings []string
}

// SeparateReads reports whether the reports read a pool of their own
// (DBReadURL names another database than DatabaseURL) rather than the
// primary's.
func (c Config) SeparateReads() bool { return c.DBReadURL != c.DatabaseURL }

// SecureCookies reports whether the console's cookies must be Secure: when
// the public URL is https.
func (c Config) SecureCookies() bool {
	return strings.HasPrefix(strings.ToLower(c.PublicURL), "https://")
}

// NotifyURL is the success_notify_url sent to WeChat.
func (c Config) NotifyURL() string {
	return strings.TrimRight(c.PublicURL, "/") + NotifyPath
}

// SettingError is one setting that stops start-up: the variable at fault
// and what is wrong with it. Problem never holds a secret's value.
type SettingError struct {
	Variable string
	Problem  string
}

func (e *SettingError) Error() string { return e.Variable + ": " + e.Problem }

// Errors is every setting that stops start-up, in the order Load checks
// them. Its message has one line per setting, each naming its variable.
type Errors []*SettingError

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, s := range e {
		lines[i] = s.Error()
	}
	return strings.Join(lines, "\n")
}

// problems collects what is wrong with the settings as Load reads them.
type problems struct {
	errs Errors
}

// bad records a problem with the variable name.
func (p *problems) bad(name, format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; ")
	p.errs = append(p.errs, &SettingError{Variable: name, Problem: msg})
}

// has reports whether a problem with the variable name was recorded.
func (p *problems) has(name string) bool {
	for _, e := range p.errs {
		if e.Variable == name {
			return true
		}
	}
	return false
}

// err is nil when nothing was recorded, else every problem as Errors.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return p.errs
}

// Load reads the configuration through getenv (os.Getenv in production).
// Every setting is checked: the error, when there is one, is Errors, naming
// each missing, unreadable or invalid variable on a line of its own.
func Load(getenv func(string) string) (Config, error) {
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	c := Config{
		DatabaseURL:        DatabaseURL(getenv),
		MigrateDatabaseURL: MigrateDatabaseURL(getenv),
		HTTPAddr:           get("CONTRACTD_HTTP_ADDR", ":8080"),
		PublicURL:          get("CONTRACTD_PUBLIC_URL", ""),
		Mode:               domain.Mode(get("WECHATPAY_MODE", string(domain.ModeCommon))),
		MchID:              get("WECHATPAY_MCHID", ""),
		AppID:              get("WECHATPAY_APPID", ""),
		SpAppID:            get("WECHATPAY_SP_APPID", ""),
		LogLevel:           get("CONTRACTD_LOG_LEVEL", "info"),
		PprofAddr:          get("CONTRACTD_PPROF_ADDR", ""),
	}
	c.DBReadURL = get("CONTRACTD_DB_READ_URL", c.DatabaseURL)
	var p problems
	var err error
	// Each connection string once: the two that default to DATABASE_URL
	// only when set.
	for _, name := range []string{"DATABASE_URL", "CONTRACTD_MIGRATE_DATABASE_URL", "CONTRACTD_DB_READ_URL"} {
		v := get(name, "")
		if name == "DATABASE_URL" {
			v = c.DatabaseURL
		}
		if v == "" {
			continue
		}
		if err := store.CheckURL(v); err != nil {
			p.bad(name, "is not a valid Postgres connection string: %v", err)
		}
	}
	c.DBMaxConns = DefaultDBMaxConns
	if v := get("CONTRACTD_DB_MAX_CONNS", ""); v != "" {
		if c.DBMaxConns, err = strconv.Atoi(v); err != nil || c.DBMaxConns < 1 || c.DBMaxConns > 1000 {
			p.bad("CONTRACTD_DB_MAX_CONNS", "must be a whole number of connections between 1 and 1000, not %q", v)
		}
	}
	if c.PublicURL == "" {
		p.bad("CONTRACTD_PUBLIC_URL", "is required: the https base URL WeChat posts notifications to")
	} else if why := domain.ValidNotifyURL(c.NotifyURL()); why != "" {
		p.bad("CONTRACTD_PUBLIC_URL", "%s (WeChat's rule for %s)", why, c.NotifyURL())
	}
	if c.Tokens, err = ParseTokens(getenv("CONTRACTD_API_TOKENS")); err != nil {
		p.bad("CONTRACTD_API_TOKENS", "%v", err)
	}
	if c.TrustedProxies, err = ParseTrustedProxies(getenv("CONTRACTD_TRUSTED_PROXIES")); err != nil {
		p.bad("CONTRACTD_TRUSTED_PROXIES", "%v", err)
	}
	switch c.Mode {
	case domain.ModeCommon:
		if c.AppID == "" {
			p.bad("WECHATPAY_APPID", "is required in common mode")
		}
	case domain.ModeInstitutional:
		if c.SpAppID == "" {
			p.bad("WECHATPAY_SP_APPID", "is required in institutional mode")
		}
	default:
		p.bad("WECHATPAY_MODE", "must be common or institutional, not %q", c.Mode)
	}
	c.PasswordExemptVariant = wechatpay.DomesticMode(get("WECHATPAY_PASSWORD_EXEMPT_VARIANT", string(wechatpay.DomesticNormal)))
	if c.Mode == domain.ModeInstitutional {
		c.PasswordExemptVariant = wechatpay.DomesticServiceProvider
	} else if c.PasswordExemptVariant != wechatpay.DomesticNormal && c.PasswordExemptVariant != wechatpay.DomesticEcommerce {
		p.bad("WECHATPAY_PASSWORD_EXEMPT_VARIANT", "must be normal or ecommerce")
	}
	if c.MchID == "" {
		p.bad("WECHATPAY_MCHID", "is required")
	}
	durations := []struct {
		name string
		def  time.Duration
		dst  *time.Duration
	}{
		{"CONTRACTD_SWEEP_INTERVAL", 5 * time.Second, &c.SweepInterval},
		{"CONTRACTD_RECONCILE_INTERVAL", 30 * time.Second, &c.ReconcileInterval},
		{"CONTRACTD_RECONCILE_AFTER", DefaultReconcileAfter, &c.ReconcileAfter},
		{"CONTRACTD_TIMELINE_INTERVAL", DefaultTimelineInterval, &c.TimelineInterval},
		{"CONTRACTD_HEAL_WINDOW", DefaultHealWindow, &c.HealWindow},
		{leaseWaitVariable(getenv, &c), DefaultLeaseWait, &c.LeaseWait},
		{"CONTRACTD_LEASE_TTL", DefaultLeaseTTL, &c.LeaseTTL},
		{"CONTRACTD_CONSOLE_SESSION_TTL", DefaultConsoleSessionTTL, &c.ConsoleSessionTTL},
		{"CONTRACTD_SHUTDOWN_TIMEOUT", 20 * time.Second, &c.ShutdownTimeout},
		{"CONTRACTD_HTTP_READ_TIMEOUT", DefaultHTTPReadTimeout, &c.HTTPReadTimeout},
		{"WECHATPAY_CERT_REFRESH_INTERVAL", wechatpay.DefaultCertRefreshInterval, &c.CertRefreshInterval},
		{"WECHATPAY_CERT_REFRESH_MIN_GAP", wechatpay.DefaultCertRefreshMinGap, &c.CertRefreshMinGap},
		{"WECHATPAY_TIMEOUT", wechatpay.DefaultTimeout, &c.WeChat.Timeout},
		{"CONTRACTD_DB_LOCK_TIMEOUT", DefaultDBLockTimeout, &c.DBLockTimeout},
		{"CONTRACTD_DB_STATEMENT_TIMEOUT", DefaultDBStatementTimeout, &c.DBStatementTimeout},
	}
	c.ReconcileLookBack = DefaultReconcileLookBack
	for _, d := range durations {
		v := get(d.name, "")
		if v == "" {
			*d.dst = d.def
			continue
		}
		if *d.dst, err = time.ParseDuration(v); err != nil || *d.dst <= 0 {
			p.bad(d.name, "must be a positive duration such as 5s")
		}
	}
	// The ranges, for durations that parsed.
	if !p.has("CONTRACTD_CONSOLE_SESSION_TTL") && (c.ConsoleSessionTTL < time.Minute || c.ConsoleSessionTTL > 7*24*time.Hour) {
		p.bad("CONTRACTD_CONSOLE_SESSION_TTL", "must be between 1m and 168h")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"CONTRACTD_DB_LOCK_TIMEOUT", c.DBLockTimeout}, {"CONTRACTD_DB_STATEMENT_TIMEOUT", c.DBStatementTimeout}} {
		if !p.has(d.name) && (d.v < 10*time.Millisecond || d.v > 10*time.Minute) {
			p.bad(d.name, "must be between 10ms and 10m")
		}
	}
	if !p.has("CONTRACTD_DB_LOCK_TIMEOUT") && !p.has("CONTRACTD_DB_STATEMENT_TIMEOUT") && c.DBLockTimeout > c.DBStatementTimeout {
		p.bad("CONTRACTD_DB_LOCK_TIMEOUT", "must not exceed CONTRACTD_DB_STATEMENT_TIMEOUT (%s): waiting for a lock is part of a statement", c.DBStatementTimeout)
	}
	if !p.has("CONTRACTD_LEASE_TTL") && c.LeaseTTL < 300*time.Millisecond {
		p.bad("CONTRACTD_LEASE_TTL", "must be at least 300ms: the lease is renewed every third of it")
	}
	if v := get("CONTRACTD_WEBHOOK_KEY", ""); v != "" {
		if c.WebhookKey, err = ParseWebhookKey(v); err != nil {
			p.bad("CONTRACTD_WEBHOOK_KEY", "%v", err)
		}
	}
	switch v := get("CONTRACTD_WEBHOOK_ALLOW_LOOPBACK", "false"); v {
	case "true":
		c.WebhookAllowLoopback = true
	case "false":
	default:
		p.bad("CONTRACTD_WEBHOOK_ALLOW_LOOPBACK", "must be true or false")
	}
	loadWeChat(&c, get, &p)
	return c, p.err()
}

func loadWeChat(c *Config, get func(string, string) string, p *problems) {
	w := &c.WeChat
	w.MchID = c.MchID
	if w.MerchantSerial = get("WECHATPAY_MERCHANT_SERIAL", ""); w.MerchantSerial == "" {
		p.bad("WECHATPAY_MERCHANT_SERIAL", "is required")
	}
	var err error
	if path := get("WECHATPAY_PRIVATE_KEY_FILE", ""); path == "" {
		p.bad("WECHATPAY_PRIVATE_KEY_FILE", "is required")
	} else if w.MerchantPrivateKey, err = wechatpay.LoadPrivateKeyFile(path); err != nil {
		p.bad("WECHATPAY_PRIVATE_KEY_FILE", "%v", err)
	}
	w.APIv3Key = get("WECHATPAY_APIV3_KEY", "")
	if len(w.APIv3Key) != wechatpay.APIv3KeyLength {
		p.bad("WECHATPAY_APIV3_KEY", "must be %d bytes, got %d", wechatpay.APIv3KeyLength, len(w.APIv3Key))
	}
	if certs := get("WECHATPAY_PLATFORM_CERT_FILES", ""); certs != "" {
		var paths []string
		for _, path := range strings.Split(certs, ",") {
			if path = strings.TrimSpace(path); path != "" {
				paths = append(paths, path)
			}
		}
		if w.PlatformCerts, err = wechatpay.LoadCertificateFiles(paths...); err != nil {
			p.bad("WECHATPAY_PLATFORM_CERT_FILES", "%v", err)
		}
	}
	w.PublicKeyID = get("WECHATPAY_PUBLIC_KEY_ID", "")
	pubFile := get("WECHATPAY_PUBLIC_KEY_FILE", "")
	switch {
	case w.PublicKeyID != "" && pubFile == "":
		p.bad("WECHATPAY_PUBLIC_KEY_FILE", "is required with WECHATPAY_PUBLIC_KEY_ID")
	case w.PublicKeyID == "" && pubFile != "":
		p.bad("WECHATPAY_PUBLIC_KEY_ID", "is required with WECHATPAY_PUBLIC_KEY_FILE")
	case pubFile != "":
		if !strings.HasPrefix(w.PublicKeyID, wechatpay.PublicKeyIDPrefix) {
			p.bad("WECHATPAY_PUBLIC_KEY_ID", "must start with %s", wechatpay.PublicKeyIDPrefix)
		}
		if w.PublicKey, err = wechatpay.LoadPublicKeyFile(pubFile); err != nil {
			p.bad("WECHATPAY_PUBLIC_KEY_FILE", "%v", err)
		}
	}
	// Certificate mode (certificate files, or no public key either) downloads
	// the platform certificates; without files the first download provides
	// them. Public-key mode alone downloads nothing.
	w.DownloadCertificates = len(w.PlatformCerts) > 0 || w.PublicKey == nil
	for _, u := range []struct {
		name string
		dst  *string
		def  string
	}{
		{"WECHATPAY_BASE_URL", &w.GlobalBaseURL, wechatpay.DefaultGlobalBaseURL},
		{"WECHATPAY_DOMESTIC_BASE_URL", &w.DomesticBaseURL, wechatpay.DefaultDomesticBaseURL},
	} {
		*u.dst = get(u.name, u.def)
		if pu, err := url.Parse(*u.dst); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			p.bad(u.name, "must be an absolute http(s) URL")
		}
	}
	// The client's own check, once every setting above is sound: what it
	// finds then is a rule the settings above do not cover.
	if len(p.errs) == 0 {
		if err := w.Validate(); err != nil {
			p.bad("WECHATPAY_*", "%v", err)
		}
	}
}
