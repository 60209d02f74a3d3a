package wechatpaysim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// KeySet is a matching set of merchant and platform credentials for the simulator and the
// merchant client.
type KeySet struct {
	// MchID is a generated merchant id.
	MchID string
	// AppID is a generated app id the merchant can use in common mode.
	AppID string
	// MerchantKey is the merchant's API private key; MerchantCert its self-signed
	// certificate and MerchantSerial that certificate's serial (upper-case hex).
	MerchantKey    *rsa.PrivateKey
	MerchantCert   *x509.Certificate
	MerchantSerial string
	// PlatformKey is WeChat's platform private key; PlatformCert its self-signed certificate
	// and PlatformSerial that certificate's serial (upper-case hex).
	PlatformKey    *rsa.PrivateKey
	PlatformCert   *x509.Certificate
	PlatformSerial string
	// PublicKeyID names the same platform key in WeChat Pay public key mode ("PUB_KEY_ID_...").
	PublicKeyID string
	// APIv3Key is the 32-character APIv3 key.
	APIv3Key string
}

// GenerateKeys creates a fresh KeySet: RSA-2048 merchant and platform keys with self-signed
// certificates, a public key id for the platform key and a random APIv3 key.
func GenerateKeys() (*KeySet, error) { return GenerateKeysWith(KeyIDs{}) }

// KeyIDs fixes the identifiers of a generated KeySet, so that a deployment can configure
// both sides before the keys exist (docker-compose.yml does). Empty fields are random.
type KeyIDs struct {
	MchID string
	// MerchantSerial is the merchant certificate's serial, upper-case hex.
	MerchantSerial string
	// PlatformSerial is the platform certificate's serial (upper-case hex) or, when it
	// starts with PUB_KEY_ID_, the platform key's public key id.
	PlatformSerial string
	APIv3Key       string
}

// GenerateKeysWith is GenerateKeys with the identifiers ids fixes.
func GenerateKeysWith(ids KeyIDs) (*KeySet, error) {
	k := &KeySet{
		MchID:       "19" + randomString(8, digits),
		AppID:       "wx" + randomString(16, "0123456789abcdef"),
		PublicKeyID: "PUB_KEY_ID_" + randomString(32, digits),
		APIv3Key:    randomString(32, alnum),
	}
	if ids.MchID != "" {
		k.MchID = ids.MchID
	}
	if ids.APIv3Key != "" {
		if len(ids.APIv3Key) != 32 {
			return nil, fmt.Errorf("APIv3 key must be 32 bytes, got %d", len(ids.APIv3Key))
		}
		k.APIv3Key = ids.APIv3Key
	}
	merchantSerial, err := serialNumber(ids.MerchantSerial)
	if err != nil {
		return nil, fmt.Errorf("merchant serial: %w", err)
	}
	var platformSerial *big.Int
	if strings.HasPrefix(ids.PlatformSerial, "PUB_KEY_ID_") {
		k.PublicKeyID = ids.PlatformSerial
	} else if platformSerial, err = serialNumber(ids.PlatformSerial); err != nil {
		return nil, fmt.Errorf("platform serial: %w", err)
	}
	if k.MerchantKey, k.MerchantCert, err = newKeyAndCert("WeChat Pay simulator merchant "+k.MchID, merchantSerial); err != nil {
		return nil, fmt.Errorf("merchant key: %w", err)
	}
	if k.PlatformKey, k.PlatformCert, err = newKeyAndCert("WeChat Pay simulator platform", platformSerial); err != nil {
		return nil, fmt.Errorf("platform key: %w", err)
	}
	k.MerchantSerial = certSerial(k.MerchantCert)
	k.PlatformSerial = certSerial(k.PlatformCert)
	return k, nil
}

// serialNumber parses an upper-case hex certificate serial; "" is nil (random).
func serialNumber(hex string) (*big.Int, error) {
	if hex == "" {
		return nil, nil
	}
	n, ok := new(big.Int).SetString(hex, 16)
	if !ok || n.Sign() <= 0 || len(hex) > 40 || hex != strings.ToUpper(hex) || len(hex)%2 != 0 {
		return nil, fmt.Errorf("%q is not an upper-case hex serial of whole bytes, at most 40 digits", hex)
	}
	return n, nil
}

// certSerial is a certificate serial as WeChat writes it: upper-case hex of its bytes.
func certSerial(c *x509.Certificate) string {
	return fmt.Sprintf("%X", c.SerialNumber.Bytes())
}

// newKeyAndCert makes an RSA-2048 key and a self-signed certificate valid for five years,
// with the given serial (nil: random).
func newKeyAndCert(commonName string, serial *big.Int) (*rsa.PrivateKey, *x509.Certificate, error) {
	now := time.Now()
	return newKeyAndCertFor(commonName, serial, now.Add(-time.Hour), now.AddDate(5, 0, 0))
}

// newKeyAndCertFor makes an RSA-2048 key and a self-signed certificate valid from notBefore
// to notAfter, with the given serial (nil: random).
func newKeyAndCertFor(commonName string, serial *big.Int, notBefore, notAfter time.Time) (*rsa.PrivateKey, *x509.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("generate RSA key: %w", err)
	}
	if serial == nil {
		if serial, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159)); err != nil {
			return nil, nil, fmt.Errorf("certificate serial: %w", err)
		}
		serial.SetBit(serial, 158, 1) // always 20 bytes, 40 hex digits
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"wechatpay-sim"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	return key, cert, nil
}

// SimConfig returns a simulator Config for the key set, signing with the platform
// certificate serial. Set PlatformSerial to PublicKeyID for public key mode.
func (k *KeySet) SimConfig() Config {
	return Config{
		MchID:              k.MchID,
		MerchantSerial:     k.MerchantSerial,
		MerchantPublicKey:  &k.MerchantKey.PublicKey,
		PlatformPrivateKey: k.PlatformKey,
		PlatformSerial:     k.PlatformSerial,
		PlatformCert:       k.PlatformCert,
		APIv3Key:           k.APIv3Key,
	}
}

// Files written by WriteDir.
const (
	FileMerchantPrivateKey = "merchant_private_key.pem"
	FileMerchantPublicKey  = "merchant_public_key.pem"
	FileMerchantCert       = "merchant_cert.pem"
	FilePlatformPrivateKey = "platform_private_key.pem"
	FilePlatformCert       = "platform_cert.pem"
	FilePlatformPublicKey  = "platform_public_key.pem"
	FileAPIv3Key           = "apiv3_key"
	FileSimEnv             = "sim.env"
	FileContractdEnv       = "contractd.env"
)

// Defaults written into the env files by WriteDir.
const (
	DefaultAddr               = "127.0.0.1:8090"
	DefaultTerminateNotifyURL = "https://contractd.localhost/v1/notifications/wechatpay"
	DefaultNotifyTarget       = "http://127.0.0.1:8080"
)

// WriteDir writes the key set into dir (created if needed): PEM keys (private keys PKCS#8,
// mode 0600), certificates, public keys, the APIv3 key (no newline) and two env files,
// sim.env for the simulator and contractd.env for the merchant, with absolute paths.
func (k *KeySet) WriteDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", abs, err)
	}
	path := func(name string) string { return filepath.Join(abs, name) }
	merchantKey, err := x509.MarshalPKCS8PrivateKey(k.MerchantKey)
	if err != nil {
		return fmt.Errorf("encode merchant key: %w", err)
	}
	platformKey, err := x509.MarshalPKCS8PrivateKey(k.PlatformKey)
	if err != nil {
		return fmt.Errorf("encode platform key: %w", err)
	}
	merchantPub, err := x509.MarshalPKIXPublicKey(&k.MerchantKey.PublicKey)
	if err != nil {
		return fmt.Errorf("encode merchant public key: %w", err)
	}
	platformPub, err := x509.MarshalPKIXPublicKey(&k.PlatformKey.PublicKey)
	if err != nil {
		return fmt.Errorf("encode platform public key: %w", err)
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	env := func(pairs ...string) []byte {
		var b strings.Builder
		for i := 0; i+1 < len(pairs); i += 2 {
			b.WriteString(pairs[i] + "=" + pairs[i+1] + "\n")
		}
		return []byte(b.String())
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{FileMerchantPrivateKey, pemOf("PRIVATE KEY", merchantKey), 0o600},
		{FileMerchantPublicKey, pemOf("PUBLIC KEY", merchantPub), 0o644},
		{FileMerchantCert, pemOf("CERTIFICATE", k.MerchantCert.Raw), 0o644},
		{FilePlatformPrivateKey, pemOf("PRIVATE KEY", platformKey), 0o600},
		{FilePlatformCert, pemOf("CERTIFICATE", k.PlatformCert.Raw), 0o644},
		{FilePlatformPublicKey, pemOf("PUBLIC KEY", platformPub), 0o644},
		{FileAPIv3Key, []byte(k.APIv3Key), 0o600},
		{FileSimEnv, env(
			"SIM_ADDR", DefaultAddr,
			"SIM_MCHID", k.MchID,
			"SIM_MERCHANT_SERIAL", k.MerchantSerial,
			"SIM_MERCHANT_PUBLIC_KEY_FILE", path(FileMerchantPublicKey),
			"SIM_PLATFORM_PRIVATE_KEY_FILE", path(FilePlatformPrivateKey),
			"SIM_PLATFORM_SERIAL", k.PlatformSerial,
			"SIM_PLATFORM_CERT_FILE", path(FilePlatformCert),
			"SIM_APIV3_KEY", k.APIv3Key,
			"SIM_TERMINATE_NOTIFY_URL", DefaultTerminateNotifyURL,
			"SIM_NOTIFY_TARGET", DefaultNotifyTarget,
		), 0o600},
		{FileContractdEnv, env(
			"WECHATPAY_MCHID", k.MchID,
			"WECHATPAY_APPID", k.AppID,
			"WECHATPAY_MERCHANT_SERIAL", k.MerchantSerial,
			"WECHATPAY_PRIVATE_KEY_FILE", path(FileMerchantPrivateKey),
			"WECHATPAY_APIV3_KEY", k.APIv3Key,
			"WECHATPAY_PLATFORM_CERT_FILES", path(FilePlatformCert),
			"WECHATPAY_PUBLIC_KEY_ID", k.PublicKeyID,
			"WECHATPAY_PUBLIC_KEY_FILE", path(FilePlatformPublicKey),
			"WECHATPAY_BASE_URL", "http://"+DefaultAddr,
			"WECHATPAY_DOMESTIC_BASE_URL", "http://"+DefaultAddr,
			"CONTRACTD_PUBLIC_URL", strings.TrimSuffix(DefaultTerminateNotifyURL, "/v1/notifications/wechatpay"),
		), 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(path(f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
		if err := os.Chmod(path(f.name), f.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", f.name, err)
		}
	}
	return nil
}

// readPEM reads the first PEM block of a file.
func readPEM(path string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	return block, nil
}

// LoadPublicKeyFile reads an RSA public key from a PEM file holding a PUBLIC KEY (PKIX), an
// RSA PUBLIC KEY (PKCS#1) or a CERTIFICATE.
func LoadPublicKeyFile(path string) (*rsa.PublicKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = c.PublicKey
		}
	default:
		return nil, fmt.Errorf("%s: unexpected PEM block %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: parse %s: %w", path, block.Type, err)
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA public key", path)
	}
	return pub, nil
}

// LoadPrivateKeyFile reads an RSA private key from a PEM file (PKCS#8 or PKCS#1).
func LoadPrivateKeyFile(path string) (*rsa.PrivateKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case "PRIVATE KEY":
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: parse PKCS#8 key: %w", path, err)
		}
		rk, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, errors.New(path + ": not an RSA private key")
		}
		return rk, nil
	case "RSA PRIVATE KEY":
		key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: parse PKCS#1 key: %w", path, err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("%s: unexpected PEM block %q", path, block.Type)
}
