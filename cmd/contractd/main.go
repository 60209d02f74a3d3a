// Command contractd runs WeChat Pay auto-debit contract signing for
// merchants: the HTTP API, the notification endpoint, the expiry sweeper and
// reconciliation, on one Postgres database.
//
//	contractd serve              run the service (configuration from the environment)
//	contractd migrate up|down|status
//	contractd fsm                print the lifecycle as a Mermaid state diagram
//	contractd healthcheck        exit 0 when the service at CONTRACTD_HTTP_ADDR is ready
//	contractd dev                run Postgres checks, the WeChat Pay simulator and the service together
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/contractd/contractd/domain"
)

const usage = `contractd: WeChat Pay auto-debit contract signing for merchants.

Usage:
  contractd serve [--migrate]      run the HTTP API, notification endpoint, expiry sweeper and
                                   reconciliation; --migrate applies pending migrations first
  contractd migrate up|down|status apply all pending migrations, roll back the newest one, or
                                   list them (safe to run from several processes at once)
  contractd fsm                    print the contract lifecycle as a Mermaid state diagram
  contractd dev                    development mode: generates keys, starts the WeChat Pay
                                   simulator on 127.0.0.1:8090, migrates the database and serves
                                   on 127.0.0.1:8080, printing where to click
  contractd healthcheck            GET /readyz at CONTRACTD_HTTP_ADDR; exit 0 when it answers 200,
                                   1 otherwise (for container health checks: no shell or curl needed)
  contractd help                   this text

Configuration (environment):
  DATABASE_URL                   Postgres connection string
                                 (default postgres://postgres@127.0.0.1:5432/contractd?sslmode=disable);
                                 default_query_exec_mode=cache_statement (the default: named prepared
                                 statements) or cache_describe (for pgbouncer before 1.21, or
                                 max_prepared_statements = 0, in transaction mode)
  CONTRACTD_MIGRATE_DATABASE_URL where migrate, serve --migrate and dev run migrations: a direct
                                 connection to the primary, never a pooler in transaction mode
                                 (goose holds a session-level advisory lock) (default DATABASE_URL)
  CONTRACTD_DB_READ_URL          a standby for the console's overview, contract lists and CSV
                                 export only, which then lag by its replication delay; the API,
                                 feeds and a contract's page read the primary. A pool of
                                 CONTRACTD_DB_MAX_CONNS with the same exec mode rule and timeouts;
                                 /readyz reports it as db_read and stays 200 when it is down
                                 (default DATABASE_URL: the primary's pool)
  CONTRACTD_HTTP_ADDR            listen address (default :8080)
  CONTRACTD_PUBLIC_URL           public https base; WeChat posts to it + /v1/notifications/wechatpay
  CONTRACTD_API_TOKENS           comma-separated scope:token or scope:name:token entries, scopes
                                 app and ops; the name is recorded as the actor of what it does.
                                 Tokens must be long random strings (openssl rand -hex 32). After
                                 5 wrong tokens (bearer or console sign-in) from one client address
                                 within 15 minutes, every request from it answers 429
                                 TOO_MANY_REQUESTS with Retry-After until the window passes, the
                                 right token included (counted in Postgres, shared by replicas).
                                 A console session ends wherever the ops token that opened it is
                                 no longer configured: restart every replica to revoke a token
  CONTRACTD_TRUSTED_PROXIES      comma-separated CIDRs of the proxies (TLS terminators, load
                                 balancers) whose X-Forwarded-For names the client address, for
                                 the throttle and logs; loopback and private ranges are trusted
                                 only when listed (default none: the TCP peer's address)
  CONTRACTD_WEBHOOK_KEY          32-byte key, base64 (openssl rand -base64 32), that encrypts
                                 webhook endpoints' secrets at rest (AES-256-GCM); without it
                                 webhooks are off: creating an endpoint answers 409 INVALID_STATE
  CONTRACTD_WEBHOOK_ALLOW_LOOPBACK
                                 true lets webhook endpoints target loopback and link-local
                                 addresses (dev, tests; contractd dev sets it) (default false)
  WECHATPAY_MODE                 common (default) or institutional
  WECHATPAY_MCHID                merchant (or service provider) id
  WECHATPAY_APPID                app id (common mode)
  WECHATPAY_SP_APPID             service provider app id (institutional mode)
  WECHATPAY_MERCHANT_SERIAL      merchant API certificate serial
  WECHATPAY_PRIVATE_KEY_FILE     merchant private key, PEM (PKCS#1 or PKCS#8)
  WECHATPAY_APIV3_KEY            32-byte APIv3 key
  WECHATPAY_PLATFORM_CERT_FILES  comma-separated platform certificates, PEM; optional: in certificate
                                 mode the certificates are downloaded from WeChat at start-up (which
                                 then fails when the download does) and kept up to date
  WECHATPAY_CERT_REFRESH_INTERVAL
                                 how often platform certificates are downloaded (default 12h)
  WECHATPAY_CERT_REFRESH_MIN_GAP
                                 least time between two downloads of one host on unknown
                                 serials (default 1m)
  WECHATPAY_PUBLIC_KEY_ID        WeChat Pay public key id (PUB_KEY_ID_...), with
  WECHATPAY_PUBLIC_KEY_FILE      the public key, PEM; may be set together with certificates
  WECHATPAY_BASE_URL             global papay host (default https://apihk.mch.weixin.qq.com)
  WECHATPAY_DOMESTIC_BASE_URL    domestic host (default https://api.mch.weixin.qq.com)
  WECHATPAY_PASSWORD_EXEMPT_VARIANT
                                 normal (default) or ecommerce, for common mode
  WECHATPAY_TIMEOUT              timeout of one call to WeChat (default 10s)
  CONTRACTD_SWEEP_INTERVAL       expiry sweep period (default 5s)
  CONTRACTD_RECONCILE_INTERVAL   reconciliation period (default 30s)
  CONTRACTD_RECONCILE_AFTER      age of a session without a notification before WeChat is asked
                                 about it; also the first pause between two checks (default 1m)
  CONTRACTD_TIMELINE_INTERVAL    how often each replica reads the database's timeline, to notice
                                 a failover (default 5s)
  CONTRACTD_HEAL_WINDOW          after a failover, WeChat is asked about every open session and
                                 every contract not terminated that changed within this long
                                 before the promotion (default 1h)
  CONTRACTD_LEASE_WAIT           how long a pre-sign or an operator's terminate that finds the
                                 contract's lease held waits for the holder's outcome before
                                 answering 409 IN_PROGRESS (default 3s)
  CONTRACTD_PRESIGN_WAIT         deprecated name of CONTRACTD_LEASE_WAIT: still read when that is
                                 unset, with a warning at start-up
  CONTRACTD_LEASE_TTL            lease a WeChat caller holds on a contract, renewed every third of
                                 it; a crashed holder's lease lapses within it (default 5s)
  CONTRACTD_DB_MAX_CONNS         database connection pool size (default 16)
  CONTRACTD_DB_LOCK_TIMEOUT      how long a request waits for a contract's row lock before
                                 answering 409 IN_PROGRESS, 10ms to 10m (default 2s)
  CONTRACTD_DB_STATEMENT_TIMEOUT how long one statement may run before 503 UNAVAILABLE, at least
                                 the lock timeout, 10ms to 10m (default 5s)
  CONTRACTD_CONSOLE_SESSION_TTL  operations console session lifetime, 1m to 168h (default 8h)
  CONTRACTD_SHUTDOWN_TIMEOUT     how long SIGTERM waits for requests in flight (default 20s)
  CONTRACTD_HTTP_READ_TIMEOUT    how long one request, body included, may take to arrive; a body
                                 that stalls past it is refused with 400 (default 15s)
  CONTRACTD_PPROF_ADDR           where Go's profiler answers (/debug/pprof/), apart from the API;
                                 unset (default) for none, keep it on loopback
  CONTRACTD_LOG_LEVEL            debug, info (default), warn or error

Missing or invalid settings stop start-up with one line each, all of them at once,
each naming its variable.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// exitError carries the process's exit status with a one-line message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

// run executes one command line and returns the exit status. An error is
// printed on stderr, each of its lines (one per bad setting, for the
// configuration) prefixed with "contractd: ".
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, getenv, stdout, stderr)
	if err == nil {
		return 0
	}
	code, msg := 1, err.Error()
	var ee *exitError
	if errors.As(err, &ee) {
		code, msg = ee.code, ee.msg
	}
	for l := range strings.SplitSeq(msg, "\n") {
		fmt.Fprintln(stderr, "contractd: "+l)
	}
	return code
}

// configurationError is the exit error for settings config.Load refused:
// one line per setting, each starting with prefix.
func configurationError(prefix string, err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return fail(2, "%s", strings.Join(lines, "\n"))
}

func dispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fail(2, "a command is required")
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "fsm":
		fmt.Fprint(stdout, domain.Mermaid())
		return nil
	case "migrate":
		return migrateCmd(ctx, args[1:], getenv, stdout)
	case "serve":
		migrate := false
		for _, a := range args[1:] {
			switch a {
			case "--migrate":
				migrate = true
			case "-h", "--help":
				fmt.Fprint(stdout, usage)
				return nil
			default:
				return fail(2, "serve: unknown flag %q", a)
			}
		}
		return serveCmd(ctx, getenv, migrate, stderr)
	case "dev":
		return devCmd(ctx, args[1:], getenv, stdout, stderr)
	case "healthcheck":
		if len(args) > 1 {
			return fail(2, "healthcheck takes no arguments")
		}
		return healthcheckCmd(ctx, getenv)
	}
	fmt.Fprint(stderr, usage)
	return fail(2, "unknown command %q", args[0])
}
