package config

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeKey(t *testing.T) (privPath, pubPath string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	privPath = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	pubPath = filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		t.Fatal(err)
	}
	return privPath, pubPath
}

// loadWith loads the configuration of validEnv with change applied over it.
func loadWith(t *testing.T, change map[string]string) (Config, error) {
	t.Helper()
	env := validEnv(t)
	maps.Copy(env, change)
	return Load(func(k string) string { return env[k] })
}

func validEnv(t *testing.T) map[string]string {
	priv, pub := writeKey(t)
	return map[string]string{
		"CONTRACTD_PUBLIC_URL":       "https://merchant.example",
		"CONTRACTD_API_TOKENS":       "app:a-token,ops:o-token",
		"WECHATPAY_MCHID":            "1900000001",
		"WECHATPAY_APPID":            "wx0000000000000001",
		"WECHATPAY_MERCHANT_SERIAL":  "ABC123",
		"WECHATPAY_PRIVATE_KEY_FILE": priv,
		"WECHATPAY_APIV3_KEY":        strings.Repeat("k", 32),
		"WECHATPAY_PUBLIC_KEY_ID":    "PUB_KEY_ID_0001",
		"WECHATPAY_PUBLIC_KEY_FILE":  pub,
	}
}

func TestLoadValid(t *testing.T) {
	env := validEnv(t)
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.NotifyURL() != "https://merchant.example/v1/notifications/wechatpay" || c.DatabaseURL != DefaultDatabaseURL || c.HTTPAddr != ":8080" {
		t.Fatalf("%+v", c)
	}
	if s, ok := c.Tokens.Lookup("o-token"); !ok || s != ScopeOps {
		t.Fatalf("ops token: %v %v", s, ok)
	}
	if _, ok := c.Tokens.Lookup("o-toke"); ok {
		t.Fatal("prefix of a token accepted")
	}
}

func TestLeaseSettingsDefaultAndOverride(t *testing.T) {
	env := validEnv(t)
	c, err := Load(func(k string) string { return env[k] })
	if err != nil || c.LeaseWait != DefaultLeaseWait || c.LeaseTTL != DefaultLeaseTTL {
		t.Fatalf("defaults: %v %s %s", err, c.LeaseWait, c.LeaseTTL)
	}
	env["CONTRACTD_LEASE_WAIT"], env["CONTRACTD_LEASE_TTL"] = "750ms", "2s"
	c, err = Load(func(k string) string { return env[k] })
	if err != nil || c.LeaseWait != 750*time.Millisecond || c.LeaseTTL != 2*time.Second {
		t.Fatalf("overrides: %v %s %s", err, c.LeaseWait, c.LeaseTTL)
	}
}

// TestLeaseWaitOldNameStillWorks: CONTRACTD_LEASE_WAIT sets the lease wait;
// its old name CONTRACTD_PRESIGN_WAIT still does when the new one is unset,
// with a deprecation warning naming both; when both are set the new one
// wins and the warning says the old one is ignored.
func TestLeaseWaitOldNameStillWorks(t *testing.T) {
	cases := []struct {
		name     string
		env      map[string]string
		want     time.Duration
		warnings []string // substrings of the one warning; nil for none
	}{
		{"neither", nil, DefaultLeaseWait, nil},
		{"new name", map[string]string{"CONTRACTD_LEASE_WAIT": "750ms"}, 750 * time.Millisecond, nil},
		{"old name", map[string]string{"CONTRACTD_PRESIGN_WAIT": "1500ms"}, 1500 * time.Millisecond,
			[]string{"CONTRACTD_PRESIGN_WAIT is deprecated", "rename it CONTRACTD_LEASE_WAIT"}},
		{"both names", map[string]string{"CONTRACTD_PRESIGN_WAIT": "1500ms", "CONTRACTD_LEASE_WAIT": "750ms"}, 750 * time.Millisecond,
			[]string{"CONTRACTD_PRESIGN_WAIT is deprecated and ignored", "CONTRACTD_LEASE_WAIT is set too"}},
		{"old name blank", map[string]string{"CONTRACTD_PRESIGN_WAIT": "  "}, DefaultLeaseWait, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadWith(t, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.LeaseWait != tc.want {
				t.Errorf("LeaseWait %s, want %s", c.LeaseWait, tc.want)
			}
			if tc.warnings == nil {
				if len(c.Warnings) != 0 {
					t.Errorf("warnings %q, want none", c.Warnings)
				}
				return
			}
			if len(c.Warnings) != 1 {
				t.Fatalf("warnings %q, want one", c.Warnings)
			}
			for _, w := range tc.warnings {
				if !strings.Contains(c.Warnings[0], w) {
					t.Errorf("warning %q does not say %q", c.Warnings[0], w)
				}
			}
		})
	}
}

func TestDBMaxConnsDefaultAndOverride(t *testing.T) {
	env := validEnv(t)
	c, err := Load(func(k string) string { return env[k] })
	if err != nil || c.DBMaxConns != DefaultDBMaxConns {
		t.Fatalf("default: %v %d", err, c.DBMaxConns)
	}
	env["CONTRACTD_DB_MAX_CONNS"] = "7"
	if c, err = Load(func(k string) string { return env[k] }); err != nil || c.DBMaxConns != 7 {
		t.Fatalf("override: %v %d", err, c.DBMaxConns)
	}
}

// The database bounds default to a few seconds each and are overridden by
// their variables.
func TestDBTimeoutsDefaultAndOverride(t *testing.T) {
	env := validEnv(t)
	c, err := Load(func(k string) string { return env[k] })
	if err != nil || c.DBLockTimeout != 2*time.Second || c.DBStatementTimeout != 5*time.Second {
		t.Fatalf("defaults: %v %s %s", err, c.DBLockTimeout, c.DBStatementTimeout)
	}
	env["CONTRACTD_DB_LOCK_TIMEOUT"], env["CONTRACTD_DB_STATEMENT_TIMEOUT"] = "750ms", "30s"
	if c, err = Load(func(k string) string { return env[k] }); err != nil || c.DBLockTimeout != 750*time.Millisecond || c.DBStatementTimeout != 30*time.Second {
		t.Fatalf("overrides: %v %s %s", err, c.DBLockTimeout, c.DBStatementTimeout)
	}
}

// writeCert writes a self-signed certificate and returns its path.
func writeCert(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x5157F09E), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCertificateModeAndRefreshSettings(t *testing.T) {
	cert := writeCert(t)
	cases := []struct {
		name         string
		change       map[string]string
		download     bool
		certs        int
		interval     time.Duration
		gap          time.Duration
		hasPublicKey bool
	}{
		{"public key only: nothing to download", nil, false, 0, 12 * time.Hour, time.Minute, true},
		{"certificates and public key: download too", map[string]string{"WECHATPAY_PLATFORM_CERT_FILES": cert},
			true, 1, 12 * time.Hour, time.Minute, true},
		{"certificate files only", map[string]string{"WECHATPAY_PLATFORM_CERT_FILES": cert, "WECHATPAY_PUBLIC_KEY_ID": "", "WECHATPAY_PUBLIC_KEY_FILE": ""},
			true, 1, 12 * time.Hour, time.Minute, false},
		{"no files, no public key: the first download provides them", map[string]string{"WECHATPAY_PUBLIC_KEY_ID": "", "WECHATPAY_PUBLIC_KEY_FILE": ""},
			true, 0, 12 * time.Hour, time.Minute, false},
		{"refresh settings overridden", map[string]string{"WECHATPAY_CERT_REFRESH_INTERVAL": "1h", "WECHATPAY_CERT_REFRESH_MIN_GAP": "30s"},
			false, 0, time.Hour, 30 * time.Second, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadWith(t, tc.change)
			if err != nil {
				t.Fatal(err)
			}
			if c.WeChat.DownloadCertificates != tc.download || len(c.WeChat.PlatformCerts) != tc.certs || (c.WeChat.PublicKey != nil) != tc.hasPublicKey {
				t.Errorf("download %v, %d certificates, public key %v; want %v, %d, %v",
					c.WeChat.DownloadCertificates, len(c.WeChat.PlatformCerts), c.WeChat.PublicKey != nil, tc.download, tc.certs, tc.hasPublicKey)
			}
			if c.CertRefreshInterval != tc.interval || c.CertRefreshMinGap != tc.gap {
				t.Errorf("refresh %s, gap %s; want %s, %s", c.CertRefreshInterval, c.CertRefreshMinGap, tc.interval, tc.gap)
			}
		})
	}
}

func TestLoadNamesTheBadSetting(t *testing.T) {
	cases := []struct {
		name   string
		change map[string]string
		want   string
	}{
		{"no public url", map[string]string{"CONTRACTD_PUBLIC_URL": ""}, "CONTRACTD_PUBLIC_URL"},
		{"http public url", map[string]string{"CONTRACTD_PUBLIC_URL": "http://merchant.example"}, "CONTRACTD_PUBLIC_URL"},
		{"public url with query", map[string]string{"CONTRACTD_PUBLIC_URL": "https://merchant.example/?a=1"}, "CONTRACTD_PUBLIC_URL"},
		{"bad token scope", map[string]string{"CONTRACTD_API_TOKENS": "admin:x"}, "CONTRACTD_API_TOKENS"},
		{"token without scope", map[string]string{"CONTRACTD_API_TOKENS": "justatoken"}, "CONTRACTD_API_TOKENS"},
		{"bad mode", map[string]string{"WECHATPAY_MODE": "hybrid"}, "WECHATPAY_MODE"},
		{"no appid", map[string]string{"WECHATPAY_APPID": ""}, "WECHATPAY_APPID"},
		{"institutional without sp appid", map[string]string{"WECHATPAY_MODE": "institutional"}, "WECHATPAY_SP_APPID"},
		{"no mchid", map[string]string{"WECHATPAY_MCHID": ""}, "WECHATPAY_MCHID"},
		{"no serial", map[string]string{"WECHATPAY_MERCHANT_SERIAL": ""}, "WECHATPAY_MERCHANT_SERIAL"},
		{"no key file", map[string]string{"WECHATPAY_PRIVATE_KEY_FILE": ""}, "WECHATPAY_PRIVATE_KEY_FILE"},
		{"unreadable key file", map[string]string{"WECHATPAY_PRIVATE_KEY_FILE": "/nonexistent/key.pem"}, "WECHATPAY_PRIVATE_KEY_FILE"},
		{"short apiv3 key", map[string]string{"WECHATPAY_APIV3_KEY": "short"}, "WECHATPAY_APIV3_KEY"},
		{"key id without file", map[string]string{"WECHATPAY_PUBLIC_KEY_FILE": ""}, "WECHATPAY_PUBLIC_KEY_FILE"},
		{"bad key id", map[string]string{"WECHATPAY_PUBLIC_KEY_ID": "KEY1"}, "WECHATPAY_PUBLIC_KEY_ID"},
		{"missing cert file", map[string]string{"WECHATPAY_PLATFORM_CERT_FILES": "/nonexistent.pem"}, "WECHATPAY_PLATFORM_CERT_FILES"},
		{"bad base url", map[string]string{"WECHATPAY_BASE_URL": "apihk"}, "WECHATPAY_BASE_URL"},
		{"bad duration", map[string]string{"CONTRACTD_SWEEP_INTERVAL": "often"}, "CONTRACTD_SWEEP_INTERVAL"},
		{"bad variant", map[string]string{"WECHATPAY_PASSWORD_EXEMPT_VARIANT": "retail"}, "WECHATPAY_PASSWORD_EXEMPT_VARIANT"},
		{"bad lease wait", map[string]string{"CONTRACTD_LEASE_WAIT": "a while"}, "CONTRACTD_LEASE_WAIT"},
		{"negative lease wait", map[string]string{"CONTRACTD_LEASE_WAIT": "-1s"}, "CONTRACTD_LEASE_WAIT"},
		{"bad lease wait by its old name", map[string]string{"CONTRACTD_PRESIGN_WAIT": "a while"}, "CONTRACTD_PRESIGN_WAIT"},
		{"negative lease wait by its old name", map[string]string{"CONTRACTD_PRESIGN_WAIT": "-1s"}, "CONTRACTD_PRESIGN_WAIT"},
		{"bad lease", map[string]string{"CONTRACTD_LEASE_TTL": "5"}, "CONTRACTD_LEASE_TTL"},
		{"lease too short to renew", map[string]string{"CONTRACTD_LEASE_TTL": "100ms"}, "CONTRACTD_LEASE_TTL"},
		{"bad read timeout", map[string]string{"CONTRACTD_HTTP_READ_TIMEOUT": "0s"}, "CONTRACTD_HTTP_READ_TIMEOUT"},
		{"pool size not a number", map[string]string{"CONTRACTD_DB_MAX_CONNS": "many"}, "CONTRACTD_DB_MAX_CONNS"},
		{"pool size zero", map[string]string{"CONTRACTD_DB_MAX_CONNS": "0"}, "CONTRACTD_DB_MAX_CONNS"},
		{"pool size too large", map[string]string{"CONTRACTD_DB_MAX_CONNS": "5000"}, "CONTRACTD_DB_MAX_CONNS"},
		{"bad lock timeout", map[string]string{"CONTRACTD_DB_LOCK_TIMEOUT": "soon"}, "CONTRACTD_DB_LOCK_TIMEOUT"},
		{"lock timeout too short", map[string]string{"CONTRACTD_DB_LOCK_TIMEOUT": "1ms"}, "CONTRACTD_DB_LOCK_TIMEOUT"},
		{"lock timeout past the statement timeout", map[string]string{"CONTRACTD_DB_LOCK_TIMEOUT": "6s"}, "CONTRACTD_DB_LOCK_TIMEOUT"},
		{"bad statement timeout", map[string]string{"CONTRACTD_DB_STATEMENT_TIMEOUT": "0s"}, "CONTRACTD_DB_STATEMENT_TIMEOUT"},
		{"statement timeout too long", map[string]string{"CONTRACTD_DB_STATEMENT_TIMEOUT": "1h"}, "CONTRACTD_DB_STATEMENT_TIMEOUT"},
		{"bad cert refresh interval", map[string]string{"WECHATPAY_CERT_REFRESH_INTERVAL": "daily"}, "WECHATPAY_CERT_REFRESH_INTERVAL"},
		{"zero cert refresh interval", map[string]string{"WECHATPAY_CERT_REFRESH_INTERVAL": "0s"}, "WECHATPAY_CERT_REFRESH_INTERVAL"},
		{"bad cert refresh gap", map[string]string{"WECHATPAY_CERT_REFRESH_MIN_GAP": "-1m"}, "WECHATPAY_CERT_REFRESH_MIN_GAP"},
		{"bad console ttl", map[string]string{"CONTRACTD_CONSOLE_SESSION_TTL": "a day"}, "CONTRACTD_CONSOLE_SESSION_TTL"},
		{"console ttl too short", map[string]string{"CONTRACTD_CONSOLE_SESSION_TTL": "10s"}, "CONTRACTD_CONSOLE_SESSION_TTL"},
		{"console ttl too long", map[string]string{"CONTRACTD_CONSOLE_SESSION_TTL": "720h"}, "CONTRACTD_CONSOLE_SESSION_TTL"},
		{"bad holder name", map[string]string{"CONTRACTD_API_TOKENS": "ops:al ice:tok"}, "CONTRACTD_API_TOKENS"},
		{"named entry without token", map[string]string{"CONTRACTD_API_TOKENS": "ops:alice:"}, "CONTRACTD_API_TOKENS"},
		{"trusted proxy not a CIDR", map[string]string{"CONTRACTD_TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal"}, "CONTRACTD_TRUSTED_PROXIES"},
		{"trusted proxy bad prefix", map[string]string{"CONTRACTD_TRUSTED_PROXIES": "10.0.0.0/33"}, "CONTRACTD_TRUSTED_PROXIES"},
		{"trusting everyone", map[string]string{"CONTRACTD_TRUSTED_PROXIES": "0.0.0.0/0"}, "CONTRACTD_TRUSTED_PROXIES"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := validEnv(t)
			maps.Copy(env, tc.change)
			_, err := Load(func(k string) string { return env[k] })
			if err == nil || !strings.HasPrefix(err.Error(), tc.want+":") {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
			if strings.Contains(err.Error(), env["WECHATPAY_APIV3_KEY"]) && env["WECHATPAY_APIV3_KEY"] != "" {
				t.Fatalf("error leaks the APIv3 key: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

// Variables is exactly the set of variables Load reads.
func TestVariablesListsWhatLoadReads(t *testing.T) {
	read := map[string]bool{}
	env := validEnv(t)
	_, err := Load(func(k string) string { read[k] = true; return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, v := range Variables {
		listed[v] = true
		if !read[v] {
			t.Errorf("Variables lists %s, which Load does not read", v)
		}
	}
	for v := range read {
		if !listed[v] {
			t.Errorf("Load reads %s, which Variables does not list", v)
		}
	}
}

// CONTRACTD_MIGRATE_DATABASE_URL and CONTRACTD_DB_READ_URL default to
// DATABASE_URL (reports then read the primary's pool), and each is read on
// its own when set.
func TestDatabaseURLsDefaultAndOverride(t *testing.T) {
	env := validEnv(t)
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabaseURL != DefaultDatabaseURL || c.MigrateDatabaseURL != DefaultDatabaseURL || c.DBReadURL != DefaultDatabaseURL || c.SeparateReads() {
		t.Fatalf("defaults: database %q, migrate %q, read %q, separate reads %v; want DefaultDatabaseURL for each, reads on the primary",
			c.DatabaseURL, c.MigrateDatabaseURL, c.DBReadURL, c.SeparateReads())
	}
	const primary = "postgres://app@pgbouncer:6432/contractd?default_query_exec_mode=cache_describe"
	env["DATABASE_URL"] = primary
	c, err = Load(func(k string) string { return env[k] })
	if err != nil || c.MigrateDatabaseURL != primary || c.DBReadURL != primary || c.SeparateReads() {
		t.Fatalf("DATABASE_URL alone: %v, migrate %q, read %q; want both to be DATABASE_URL", err, c.MigrateDatabaseURL, c.DBReadURL)
	}
	if got := MigrateDatabaseURL(func(k string) string { return env[k] }); got != primary {
		t.Fatalf("MigrateDatabaseURL without the setting: %q, want DATABASE_URL", got)
	}
	const direct, standby = "postgres://app@db-leader:5432/contractd", "postgres://app@db-standby:5432/contractd"
	env["CONTRACTD_MIGRATE_DATABASE_URL"], env["CONTRACTD_DB_READ_URL"] = direct, standby
	c, err = Load(func(k string) string { return env[k] })
	if err != nil || c.DatabaseURL != primary || c.MigrateDatabaseURL != direct || c.DBReadURL != standby || !c.SeparateReads() {
		t.Fatalf("overrides: %v, database %q, migrate %q, read %q", err, c.DatabaseURL, c.MigrateDatabaseURL, c.DBReadURL)
	}
	if got := MigrateDatabaseURL(func(k string) string { return env[k] }); got != direct {
		t.Fatalf("MigrateDatabaseURL: %q, want %q", got, direct)
	}
}

func TestConsoleSessionTTLDefaultAndOverride(t *testing.T) {
	env := validEnv(t)
	c, err := Load(func(k string) string { return env[k] })
	if err != nil || c.ConsoleSessionTTL != DefaultConsoleSessionTTL || !c.SecureCookies() {
		t.Fatalf("defaults: %v %s secure=%v", err, c.ConsoleSessionTTL, c.SecureCookies())
	}
	env["CONTRACTD_CONSOLE_SESSION_TTL"] = "30m"
	c, err = Load(func(k string) string { return env[k] })
	if err != nil || c.ConsoleSessionTTL != 30*time.Minute {
		t.Fatalf("override: %v %s", err, c.ConsoleSessionTTL)
	}
}

func TestHTTPReadTimeoutDefaultAndOverride(t *testing.T) {
	env := validEnv(t)
	c, err := Load(func(k string) string { return env[k] })
	if err != nil || c.HTTPReadTimeout != DefaultHTTPReadTimeout {
		t.Fatalf("default: %v %s", err, c.HTTPReadTimeout)
	}
	env["CONTRACTD_HTTP_READ_TIMEOUT"] = "1s"
	c, err = Load(func(k string) string { return env[k] })
	if err != nil || c.HTTPReadTimeout != time.Second {
		t.Fatalf("override: %v %s", err, c.HTTPReadTimeout)
	}
}

func TestTokenHolders(t *testing.T) {
	tokens, err := ParseTokens("app:plain-app, ops:alice:alice-token, ops:plain-ops, app:shop-1:shop-token")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		token string
		want  Holder
		known bool
	}{
		{"plain-app", Holder{Scope: ScopeApp}, true},
		{"alice-token", Holder{Scope: ScopeOps, Name: "alice"}, true},
		{"plain-ops", Holder{Scope: ScopeOps}, true},
		{"shop-token", Holder{Scope: ScopeApp, Name: "shop-1"}, true},
		{"alice:alice-token", Holder{}, false},
		{"alice", Holder{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.token, func(t *testing.T) {
			h, ok := tokens.Holder(tc.token)
			if ok != tc.known || h != tc.want {
				t.Fatalf("Holder(%q) = %+v %v, want %+v %v", tc.token, h, ok, tc.want, tc.known)
			}
			if s, ok := tokens.Lookup(tc.token); ok != tc.known || s != tc.want.Scope {
				t.Fatalf("Lookup(%q) = %v %v", tc.token, s, ok)
			}
		})
	}
}

// Every missing or invalid setting is reported at once, one line each,
// each naming its variable, in the order Load checks them; secrets stay out.
func TestLoadReportsEveryBadSettingAtOnce(t *testing.T) {
	cases := []struct {
		name   string
		change map[string]string
		want   []string
	}{
		{"three missing", map[string]string{"CONTRACTD_PUBLIC_URL": "", "WECHATPAY_MCHID": "", "WECHATPAY_MERCHANT_SERIAL": ""},
			[]string{"CONTRACTD_PUBLIC_URL", "WECHATPAY_MCHID", "WECHATPAY_MERCHANT_SERIAL"}},
		{"missing, invalid and unreadable together", map[string]string{
			"CONTRACTD_DB_MAX_CONNS":     "0",
			"CONTRACTD_API_TOKENS":       "admin:x",
			"WECHATPAY_APPID":            "",
			"CONTRACTD_SWEEP_INTERVAL":   "often",
			"CONTRACTD_LEASE_TTL":        "100ms",
			"WECHATPAY_PRIVATE_KEY_FILE": "/nonexistent/key.pem",
			"WECHATPAY_APIV3_KEY":        "short-secret",
			"WECHATPAY_BASE_URL":         "apihk",
		}, []string{"CONTRACTD_DB_MAX_CONNS", "CONTRACTD_API_TOKENS", "WECHATPAY_APPID", "CONTRACTD_SWEEP_INTERVAL",
			"CONTRACTD_LEASE_TTL", "WECHATPAY_PRIVATE_KEY_FILE", "WECHATPAY_APIV3_KEY", "WECHATPAY_BASE_URL"}},
		{"every bad connection string, each once, its password unsaid", map[string]string{
			"DATABASE_URL":                   "postgres://u:short-secret@db:notaport/contractd",
			"CONTRACTD_MIGRATE_DATABASE_URL": "host=db port=x password=short-secret",
			"CONTRACTD_DB_READ_URL":          "postgres://u:short-secret@standby:99999999/contractd",
			"CONTRACTD_DB_MAX_CONNS":         "0",
		}, []string{"DATABASE_URL", "CONTRACTD_MIGRATE_DATABASE_URL", "CONTRACTD_DB_READ_URL", "CONTRACTD_DB_MAX_CONNS"}},
		{"a bad DATABASE_URL is reported once, not again as the two that default to it", map[string]string{
			"DATABASE_URL": "postgres://u:short-secret@db:notaport/contractd"}, []string{"DATABASE_URL"}},
		{"a bad duration is not also out of range", map[string]string{"CONTRACTD_CONSOLE_SESSION_TTL": "a day", "CONTRACTD_LEASE_TTL": "soon"},
			[]string{"CONTRACTD_LEASE_TTL", "CONTRACTD_CONSOLE_SESSION_TTL"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadWith(t, tc.change)
			if err == nil {
				t.Fatalf("no error, want one naming each of %v", tc.want)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not config.Errors", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) || len(errs) != len(tc.want) {
				t.Fatalf("%d lines, %d errors, want %d, one for each of %v:\n%s", len(lines), len(errs), len(tc.want), tc.want, err)
			}
			var names []string
			for _, e := range errs {
				names = append(names, e.Variable)
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("variables %v, want %v", names, tc.want)
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, tc.want[i]+": ") {
					t.Errorf("line %d %q does not name %s", i, l, tc.want[i])
				}
				if strings.Contains(l, "short-secret") {
					t.Errorf("line %d leaks the APIv3 key: %q", i, l)
				}
			}
		})
	}
}

func TestTrustedProxies(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" 10.0.0.0/8 , 2001:db8::/32,192.0.2.7", []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"}},
		{"10.1.2.3/8", []string{"10.0.0.0/8"}},
		{"::1", []string{"::1/128"}},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			env := validEnv(t)
			env["CONTRACTD_TRUSTED_PROXIES"] = tc.in
			c, err := Load(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range c.TrustedProxies {
				got = append(got, n.String())
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("trusted proxies %v, want %v", got, tc.want)
			}
		})
	}
}

// A session's token MAC names the holder of the token that made it, among
// the configured tokens only, and differs with the message (the session).
func TestHolderByMAC(t *testing.T) {
	tokens, err := ParseTokens("app:app-token,ops:alice:alice-token,ops:bob:bob-token")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("session-1")
	cases := []struct {
		name  string
		mac   []byte
		want  Holder
		known bool
	}{
		{"alice's token", TokenMAC("alice-token", msg), Holder{Scope: ScopeOps, Name: "alice"}, true},
		{"bob's token", TokenMAC("bob-token", msg), Holder{Scope: ScopeOps, Name: "bob"}, true},
		{"an app token", TokenMAC("app-token", msg), Holder{Scope: ScopeApp}, true},
		{"a token no longer configured", TokenMAC("carol-token", msg), Holder{}, false},
		{"another session's MAC", TokenMAC("alice-token", []byte("session-2")), Holder{}, false},
		{"no MAC", nil, Holder{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if h, ok := tokens.HolderByMAC(tc.mac, msg); ok != tc.known || h != tc.want {
				t.Fatalf("HolderByMAC = %+v %v, want %+v %v", h, ok, tc.want, tc.known)
			}
		})
	}
}
