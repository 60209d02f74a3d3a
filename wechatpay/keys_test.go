package wechatpay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writePEM writes PEM blocks to a file in dir and returns its path.
func writePEM(t *testing.T, dir, name string, blocks ...*pem.Block) string {
	t.Helper()
	var data []byte
	for _, b := range blocks {
		data = append(data, pem.EncodeToMemory(b)...)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadKeyFiles(t *testing.T) {
	ks := testKeySet(t)
	dir := t.TempDir()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ks.merchant)
	if err != nil {
		t.Fatal(err)
	}
	pkix, err := x509.MarshalPKIXPublicKey(&ks.pub.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	cert := func(c *x509.Certificate) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw} }

	privTests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"PKCS#1", writePEM(t, dir, "pkcs1.pem", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(ks.merchant)}), ""},
		{"PKCS#8", writePEM(t, dir, "pkcs8.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), ""},
		{"PKCS#8 after a certificate", writePEM(t, dir, "both.pem", cert(ks.platformCert), &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), ""},
		{"EC key", writePEM(t, dir, "ec.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), "not RSA"},
		{"no key", writePEM(t, dir, "cert.pem", cert(ks.platformCert)), "no PEM private key"},
		{"missing file", filepath.Join(dir, "absent.pem"), "read private key"},
	}
	for _, tt := range privTests {
		t.Run("private "+tt.name, func(t *testing.T) {
			key, err := LoadPrivateKeyFile(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !key.Equal(ks.merchant) {
				t.Fatalf("LoadPrivateKeyFile = %v, %v", key != nil, err)
			}
		})
	}

	pubTests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{"PKIX", writePEM(t, dir, "pub.pem", &pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), ""},
		{"PKCS#1", writePEM(t, dir, "rsapub.pem", &pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&ks.pub.PublicKey)}), ""},
		{"garbage", writePEM(t, dir, "garbage.pem", &pem.Block{Type: "PUBLIC KEY", Bytes: []byte("nope")}), "parse public key"},
	}
	for _, tt := range pubTests {
		t.Run("public "+tt.name, func(t *testing.T) {
			key, err := LoadPublicKeyFile(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !key.Equal(&ks.pub.PublicKey) {
				t.Fatalf("LoadPublicKeyFile = %v, %v", key != nil, err)
			}
		})
	}

	t.Run("certificates", func(t *testing.T) {
		one := writePEM(t, dir, "one.pem", cert(ks.platformCert))
		two := writePEM(t, dir, "two.pem", cert(ks.strangerCert), cert(ks.platformCert))
		certs, err := LoadCertificateFiles(one, two)
		if err != nil || len(certs) != 3 {
			t.Fatalf("LoadCertificateFiles = %d, %v", len(certs), err)
		}
		if _, err := LoadCertificateFiles(writePEM(t, dir, "empty.pem")); err == nil {
			t.Fatal("no error for a file without certificates")
		}
	})
}

func TestCertificateSerial(t *testing.T) {
	ks := testKeySet(t)
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"platform", ks.platformCert, "5157F09EFDC096DE"},
		{"leading zero byte kept", ks.strangerCert, "0ABCDEF012345678"},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CertificateSerial(tt.cert); got != tt.want {
				t.Errorf("CertificateSerial = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestVerifier(t *testing.T) {
	ks := testKeySet(t)
	cfg := bothConfig(ks)
	cfg.PlatformCerts = append(cfg.PlatformCerts, ks.strangerCert)
	av, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v := av.(*Verifier)
	for serial, want := range map[string]bool{
		"5157F09EFDC096DE": true, "5157f09efdc096de": true, "0ABCDEF012345678": true, "ABCDEF012345678": true,
		testPubKeyID: true, "PUB_KEY_ID_other": false, "": false, "0": false, "DEADBEEF": false,
	} {
		if got := v.KnowsSerial(serial); got != want {
			t.Errorf("KnowsSerial(%q) = %v, want %v", serial, got, want)
		}
	}
	if s, _ := v.GetSerial(context.Background()); s != testPubKeyID {
		t.Errorf("GetSerial = %q, want the public key id", s)
	}
	certOnly, err := NewVerifier(Config{PlatformCerts: cfg.PlatformCerts})
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := certOnly.GetSerial(context.Background()); s != "5157F09EFDC096DE" {
		t.Errorf("GetSerial = %q, want the newest certificate", s)
	}
	msg := "1\nn\nbody\n"
	tests := []struct {
		name   string
		serial string
		sig    string
		want   error
	}{
		{"certificate", "5157F09EFDC096DE", signSHA256(t, ks.platform, msg), nil},
		{"public key", testPubKeyID, signSHA256(t, ks.pub, msg), nil},
		{"leading zero dropped", "ABCDEF012345678", signSHA256(t, ks.stranger, msg), nil},
		{"wrong key", testPubKeyID, signSHA256(t, ks.platform, msg), ErrBadSignature},
		{"not base64", testPubKeyID, "!!", ErrBadSignature},
		{"unknown", "DEADBEEF", signSHA256(t, ks.platform, msg), ErrUnknownSerial},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Verify(context.Background(), tt.serial, msg, tt.sig)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := NewVerifier(Config{}); err == nil {
		t.Error("NewVerifier accepted a config without keys")
	}
}
