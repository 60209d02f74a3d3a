package wechatpaysim

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strconv"
)

// EnvHelp describes the environment LoadConfigFromEnv reads.
const EnvHelp = `  SIM_ADDR                       listen address (default ` + DefaultAddr + `)
  SIM_MCHID                      merchant (or service provider) id accepted in Authorization
  SIM_MERCHANT_SERIAL            merchant API certificate serial accepted in Authorization
  SIM_MERCHANT_PUBLIC_KEY_FILE   merchant public key (PEM public key or certificate)
  SIM_PLATFORM_PRIVATE_KEY_FILE  platform private key (PEM, PKCS#8 or PKCS#1)
  SIM_PLATFORM_SERIAL            Wechatpay-Serial sent: certificate serial or PUB_KEY_ID_... id
  SIM_PLATFORM_CERT_FILE         optional certificate (PEM) of the platform key, listed by the
                                 certificate downloads (/v3/global/certificates, /v3/certificates)
  SIM_APIV3_KEY                  32-byte APIv3 key that encrypts notification resources
  SIM_TERMINATE_NOTIFY_URL       where termination notifications go
  SIM_NOTIFY_TARGET              optional base URL deliveries are redirected to (scheme and host)
  SIM_TIME_SCALE                 optional factor on the retry schedule (default 1; 0.001 = ms)
  SIM_PUBLIC_URL                 optional base URL a browser opens the simulator at, used in the
                                 sign page URLs pre-sign answers (default: the Host pre-sign was
                                 sent to; set it when listening on 0.0.0.0 or behind a port map)
`

// EnvVariables lists every variable LoadConfigFromEnv (and the keys
// command, which reads the identifiers among them) reads.
var EnvVariables = []string{
	"SIM_ADDR", "SIM_MCHID", "SIM_MERCHANT_SERIAL", "SIM_MERCHANT_PUBLIC_KEY_FILE",
	"SIM_PLATFORM_PRIVATE_KEY_FILE", "SIM_PLATFORM_SERIAL", "SIM_APIV3_KEY",
	"SIM_TERMINATE_NOTIFY_URL", "SIM_NOTIFY_TARGET", "SIM_TIME_SCALE", "SIM_PUBLIC_URL",
}

// LoadConfigFromEnv builds a Config from SIM_* environment variables read with getenv. A
// missing or unreadable setting is an error naming it.
func LoadConfigFromEnv(getenv func(string) string) (Config, error) {
	cfg := Config{Addr: getenv("SIM_ADDR"), TimeScale: 1}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	required := []struct {
		name string
		dst  *string
	}{
		{"SIM_MCHID", &cfg.MchID},
		{"SIM_MERCHANT_SERIAL", &cfg.MerchantSerial},
		{"SIM_PLATFORM_SERIAL", &cfg.PlatformSerial},
		{"SIM_APIV3_KEY", &cfg.APIv3Key},
		{"SIM_TERMINATE_NOTIFY_URL", &cfg.TerminateNotifyURL},
	}
	for _, r := range required {
		if *r.dst = getenv(r.name); *r.dst == "" {
			return Config{}, fmt.Errorf("%s is not set", r.name)
		}
	}
	if len(cfg.APIv3Key) != 32 {
		return Config{}, fmt.Errorf("SIM_APIV3_KEY must be 32 bytes, got %d", len(cfg.APIv3Key))
	}
	if u, err := url.Parse(cfg.TerminateNotifyURL); err != nil || u.Scheme == "" || u.Host == "" {
		return Config{}, fmt.Errorf("SIM_TERMINATE_NOTIFY_URL %q is not an absolute URL", cfg.TerminateNotifyURL)
	}
	var err error
	name := "SIM_MERCHANT_PUBLIC_KEY_FILE"
	if getenv(name) == "" {
		return Config{}, fmt.Errorf("%s is not set", name)
	}
	if cfg.MerchantPublicKey, err = LoadPublicKeyFile(getenv(name)); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	name = "SIM_PLATFORM_PRIVATE_KEY_FILE"
	if getenv(name) == "" {
		return Config{}, fmt.Errorf("%s is not set", name)
	}
	if cfg.PlatformPrivateKey, err = LoadPrivateKeyFile(getenv(name)); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	if v := getenv("SIM_PLATFORM_CERT_FILE"); v != "" {
		block, err := readPEM(v)
		if err != nil || block.Type != "CERTIFICATE" {
			return Config{}, fmt.Errorf("SIM_PLATFORM_CERT_FILE: %s holds no PEM certificate", v)
		}
		if cfg.PlatformCert, err = x509.ParseCertificate(block.Bytes); err != nil {
			return Config{}, fmt.Errorf("SIM_PLATFORM_CERT_FILE: %w", err)
		}
	}
	if v := getenv("SIM_NOTIFY_TARGET"); v != "" {
		if u, err := url.Parse(v); err != nil || u.Scheme == "" || u.Host == "" {
			return Config{}, fmt.Errorf("SIM_NOTIFY_TARGET %q is not an absolute URL", v)
		}
		cfg.NotifyTarget = v
	}
	if v := getenv("SIM_PUBLIC_URL"); v != "" {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Config{}, fmt.Errorf("SIM_PUBLIC_URL %q is not an absolute http(s) URL", v)
		}
		cfg.PublicURL = v
	}
	if v := getenv("SIM_TIME_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return Config{}, fmt.Errorf("SIM_TIME_SCALE %q must be a positive number", v)
		}
		cfg.TimeScale = f
	}
	return cfg, nil
}
