package wechatpay

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// LoadPrivateKeyFile reads an RSA private key from a PEM file in PKCS#1 or
// PKCS#8 form.
func LoadPrivateKeyFile(path string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: read private key: %w", err)
	}
	key, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: private key %s: %w", path, err)
	}
	return key, nil
}

// ParsePrivateKeyPEM decodes the first private key block of PEM data, in
// PKCS#1 ("RSA PRIVATE KEY") or PKCS#8 ("PRIVATE KEY") form.
func ParsePrivateKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		switch block.Type {
		case "PRIVATE KEY", "RSA PRIVATE KEY":
		default:
			continue
		}
		if key, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return key, nil
		}
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		key, ok := parsed.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key is %T, not RSA", parsed)
		}
		return key, nil
	}
	return nil, errors.New("no PEM private key block found")
}

// LoadPublicKeyFile reads an RSA public key, such as the WeChat Pay public
// key, from a PEM file in PKIX ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY") form.
func LoadPublicKeyFile(path string) (*rsa.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: read public key: %w", err)
	}
	key, err := ParsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: public key %s: %w", path, err)
	}
	return key, nil
}

// ParsePublicKeyPEM decodes the first public key block of PEM data, in PKIX
// or PKCS#1 form.
func ParsePublicKeyPEM(data []byte) (*rsa.PublicKey, error) {
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		switch block.Type {
		case "PUBLIC KEY", "RSA PUBLIC KEY":
		default:
			continue
		}
		if key, err := x509.ParsePKCS1PublicKey(block.Bytes); err == nil {
			return key, nil
		}
		parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		key, ok := parsed.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key is %T, not RSA", parsed)
		}
		return key, nil
	}
	return nil, errors.New("no PEM public key block found")
}

// LoadCertificateFiles reads platform certificates from PEM files. A file may
// hold several certificates; each file must hold at least one.
func LoadCertificateFiles(paths ...string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("wechatpay: read certificate: %w", err)
		}
		parsed, err := ParseCertificatesPEM(data)
		if err != nil {
			return nil, fmt.Errorf("wechatpay: certificate %s: %w", path, err)
		}
		certs = append(certs, parsed...)
	}
	return certs, nil
}

// ParseCertificatesPEM decodes every CERTIFICATE block of PEM data and fails
// when there is none.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate block found")
	}
	return certs, nil
}

// CertificateSerial returns the serial WeChat Pay uses for a certificate:
// the upper-case hex of its serial number's bytes, as in the Wechatpay-Serial
// header and in wechatpay-go's certificate map.
func CertificateSerial(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return fmt.Sprintf("%X", c.SerialNumber.Bytes())
}
