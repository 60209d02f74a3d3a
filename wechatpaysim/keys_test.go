package wechatpaysim

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wechatpay-apiv3/wechatpay-go/utils"
)

// readEnv reads KEY=value lines.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("%s: line %q is not KEY=value", path, sc.Text())
		}
		m[k] = v
	}
	return m
}

func TestGenerateKeys(t *testing.T) {
	k := keys(t)
	if k.MerchantKey.N.BitLen() != 2048 || k.PlatformKey.N.BitLen() != 2048 {
		t.Error("keys are not RSA-2048")
	}
	if k.MerchantSerial != utils.GetCertificateSerialNumber(*k.MerchantCert) || k.PlatformSerial != utils.GetCertificateSerialNumber(*k.PlatformCert) {
		t.Error("serials differ from wechatpay-go's reading of the certificates")
	}
	if len(k.PlatformSerial) != 40 || strings.ToUpper(k.PlatformSerial) != k.PlatformSerial || k.MerchantSerial == k.PlatformSerial {
		t.Errorf("serials %s %s", k.MerchantSerial, k.PlatformSerial)
	}
	if !strings.HasPrefix(k.PublicKeyID, "PUB_KEY_ID_") || len(k.PublicKeyID) != len("PUB_KEY_ID_")+32 || len(k.APIv3Key) != 32 {
		t.Errorf("public key id %q, APIv3 key length %d", k.PublicKeyID, len(k.APIv3Key))
	}
}

func TestWriteDirAndLoadConfigFromEnv(t *testing.T) {
	k := keys(t)
	dir := filepath.Join(t.TempDir(), "keys")
	if err := k.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	for name, private := range map[string]bool{
		FileMerchantPrivateKey: true, FilePlatformPrivateKey: true, FileAPIv3Key: true, FileSimEnv: true, FileContractdEnv: true,
		FileMerchantPublicKey: false, FileMerchantCert: false, FilePlatformCert: false, FilePlatformPublicKey: false,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if private && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	// wechatpay-go reads what the merchant side needs.
	mk, err := utils.LoadPrivateKeyWithPath(filepath.Join(dir, FileMerchantPrivateKey))
	if err != nil || !mk.Equal(k.MerchantKey) {
		t.Errorf("merchant private key: %v", err)
	}
	pc, err := utils.LoadCertificateWithPath(filepath.Join(dir, FilePlatformCert))
	if err != nil || utils.GetCertificateSerialNumber(*pc) != k.PlatformSerial {
		t.Errorf("platform cert: %v", err)
	}
	pub, err := utils.LoadPublicKeyWithPath(filepath.Join(dir, FilePlatformPublicKey))
	if err != nil || !pub.Equal(&k.PlatformKey.PublicKey) {
		t.Errorf("platform public key: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, FileAPIv3Key)); string(b) != k.APIv3Key {
		t.Errorf("apiv3_key %q", b)
	}
	cd := readEnv(t, filepath.Join(dir, FileContractdEnv))
	for key, want := range map[string]string{
		"WECHATPAY_MCHID": k.MchID, "WECHATPAY_MERCHANT_SERIAL": k.MerchantSerial,
		"WECHATPAY_PRIVATE_KEY_FILE": filepath.Join(dir, FileMerchantPrivateKey), "WECHATPAY_APIV3_KEY": k.APIv3Key,
		"WECHATPAY_PLATFORM_CERT_FILES": filepath.Join(dir, FilePlatformCert), "WECHATPAY_PUBLIC_KEY_ID": k.PublicKeyID,
		"WECHATPAY_PUBLIC_KEY_FILE": filepath.Join(dir, FilePlatformPublicKey),
	} {
		if cd[key] != want || !filepath.IsAbs(dir) {
			t.Errorf("contractd.env %s = %q, want %q", key, cd[key], want)
		}
	}

	simEnv := readEnv(t, filepath.Join(dir, FileSimEnv))
	cfg, err := LoadConfigFromEnv(func(k string) string { return simEnv[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MchID != k.MchID || cfg.MerchantSerial != k.MerchantSerial || cfg.PlatformSerial != k.PlatformSerial ||
		!cfg.MerchantPublicKey.Equal(&k.MerchantKey.PublicKey) || !cfg.PlatformPrivateKey.Equal(k.PlatformKey) ||
		cfg.APIv3Key != k.APIv3Key || cfg.Addr != DefaultAddr || cfg.TerminateNotifyURL == "" || cfg.NotifyTarget == "" {
		t.Errorf("config %+v", cfg)
	}
	sim, err := New(cfg)
	if err != nil {
		t.Fatalf("New from env config: %v", err)
	}
	sim.Close()

	// A certificate is accepted as the merchant public key too.
	simEnv["SIM_MERCHANT_PUBLIC_KEY_FILE"] = filepath.Join(dir, FileMerchantCert)
	simEnv["SIM_TIME_SCALE"] = "0.5"
	if cfg, err := LoadConfigFromEnv(func(k string) string { return simEnv[k] }); err != nil || cfg.TimeScale != 0.5 {
		t.Errorf("certificate as merchant key: %v", err)
	}

	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name, key, value string
	}{
		{"no mchid", "SIM_MCHID", ""},
		{"no merchant serial", "SIM_MERCHANT_SERIAL", ""},
		{"no merchant key", "SIM_MERCHANT_PUBLIC_KEY_FILE", ""},
		{"unreadable merchant key", "SIM_MERCHANT_PUBLIC_KEY_FILE", missing},
		{"merchant key not a key", "SIM_MERCHANT_PUBLIC_KEY_FILE", filepath.Join(dir, FileAPIv3Key)},
		{"no platform key", "SIM_PLATFORM_PRIVATE_KEY_FILE", ""},
		{"platform key is public", "SIM_PLATFORM_PRIVATE_KEY_FILE", filepath.Join(dir, FilePlatformPublicKey)},
		{"no platform serial", "SIM_PLATFORM_SERIAL", ""},
		{"no apiv3 key", "SIM_APIV3_KEY", ""},
		{"short apiv3 key", "SIM_APIV3_KEY", "short"},
		{"no terminate url", "SIM_TERMINATE_NOTIFY_URL", ""},
		{"relative terminate url", "SIM_TERMINATE_NOTIFY_URL", "/notify"},
		{"bad notify target", "SIM_NOTIFY_TARGET", "127.0.0.1:8080"},
		{"bad time scale", "SIM_TIME_SCALE", "fast"},
		{"negative time scale", "SIM_TIME_SCALE", "-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfigFromEnv(func(k string) string {
				if k == tt.key {
					return tt.value
				}
				return simEnv[k]
			})
			if err == nil || !strings.Contains(err.Error(), tt.key) {
				t.Errorf("error %v does not name %s", err, tt.key)
			}
		})
	}
}

func TestNewValidatesConfig(t *testing.T) {
	k := keys(t)
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"no mchid", func(c *Config) { c.MchID = "" }},
		{"no merchant serial", func(c *Config) { c.MerchantSerial = "" }},
		{"no merchant key", func(c *Config) { c.MerchantPublicKey = nil }},
		{"no platform key", func(c *Config) { c.PlatformPrivateKey = nil }},
		{"no platform serial", func(c *Config) { c.PlatformSerial = "" }},
		{"short apiv3 key", func(c *Config) { c.APIv3Key = "x" }},
		{"negative time scale", func(c *Config) { c.TimeScale = -1 }},
		{"relative notify target", func(c *Config) { c.NotifyTarget = "/x" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := k.SimConfig()
			tt.change(&cfg)
			if _, err := New(cfg); err == nil {
				t.Error("New accepted the config")
			}
		})
	}
}
