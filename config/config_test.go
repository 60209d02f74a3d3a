package config

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
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
	if err != nil || c.PresignWait != DefaultPresignWait || c.LeaseTTL != DefaultLeaseTTL {
		t.Fatalf("defaults: %v %s %s", err, c.PresignWait, c.LeaseTTL)
	}
	env["CONTRACTD_PRESIGN_WAIT"], env["CONTRACTD_LEASE_TTL"] = "750ms", "2s"
	c, err = Load(func(k string) string { return env[k] })
	if err != nil || c.PresignWait != 750*time.Millisecond || c.LeaseTTL != 2*time.Second {
		t.Fatalf("overrides: %v %s %s", err, c.PresignWait, c.LeaseTTL)
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
		{"no verification key", map[string]string{"WECHATPAY_PUBLIC_KEY_ID": "", "WECHATPAY_PUBLIC_KEY_FILE": ""}, "WECHATPAY_PLATFORM_CERT_FILES"},
		{"key id without file", map[string]string{"WECHATPAY_PUBLIC_KEY_FILE": ""}, "WECHATPAY_PUBLIC_KEY_FILE"},
		{"bad key id", map[string]string{"WECHATPAY_PUBLIC_KEY_ID": "KEY1"}, "WECHATPAY_PUBLIC_KEY_ID"},
		{"missing cert file", map[string]string{"WECHATPAY_PLATFORM_CERT_FILES": "/nonexistent.pem"}, "WECHATPAY_PLATFORM_CERT_FILES"},
		{"bad base url", map[string]string{"WECHATPAY_BASE_URL": "apihk"}, "WECHATPAY_BASE_URL"},
		{"bad duration", map[string]string{"CONTRACTD_SWEEP_INTERVAL": "often"}, "CONTRACTD_SWEEP_INTERVAL"},
		{"bad variant", map[string]string{"WECHATPAY_PASSWORD_EXEMPT_VARIANT": "retail"}, "WECHATPAY_PASSWORD_EXEMPT_VARIANT"},
		{"bad pre-sign wait", map[string]string{"CONTRACTD_PRESIGN_WAIT": "a while"}, "CONTRACTD_PRESIGN_WAIT"},
		{"negative pre-sign wait", map[string]string{"CONTRACTD_PRESIGN_WAIT": "-1s"}, "CONTRACTD_PRESIGN_WAIT"},
		{"bad lease", map[string]string{"CONTRACTD_LEASE_TTL": "5"}, "CONTRACTD_LEASE_TTL"},
		{"lease too short to renew", map[string]string{"CONTRACTD_LEASE_TTL": "100ms"}, "CONTRACTD_LEASE_TTL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := validEnv(t)
			for k, v := range tc.change {
				env[k] = v
			}
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
