package wechatpaysim

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"sync"
	"testing"
	"time"
)

// testClock is a settable clock for the simulator.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// downloadedList is a certificate download's answer, decrypted independently of the simulator.
type downloadedList struct {
	serial  string // Wechatpay-Serial of the answer
	signed  bool   // the signature verifies under the serial's key
	serials []string
	opened  bool // every certificate decrypted and parsed
}

func download(t *testing.T, e *env, path string, keyOf map[string]*x509.Certificate) downloadedList {
	t.Helper()
	// The answer's signature is checked below against the listed certificates; the
	// env's checker knows only the first platform key.
	a, _ := e.sendUnchecked(e.signer().request(t, "GET", e.srv.URL+path, ""))
	if a.status != 200 {
		t.Fatalf("GET %s: %d %s", path, a.status, a.body)
	}
	l := downloadedList{serial: a.header.Get("Wechatpay-Serial"), opened: true}
	var body struct {
		Data []struct {
			SerialNo           string            `json:"serial_no"`
			EncryptCertificate encryptedResource `json:"encrypt_certificate"`
		} `json:"data"`
	}
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher([]byte(e.keys.APIv3Key))
	gcm, _ := cipher.NewGCM(block)
	for _, item := range body.Data {
		l.serials = append(l.serials, item.SerialNo)
		r := item.EncryptCertificate
		sealed, _ := base64.StdEncoding.DecodeString(r.Ciphertext)
		plain, err := gcm.Open(nil, []byte(r.Nonce), sealed, []byte(r.AssociatedData))
		if err != nil || r.AssociatedData != "certificate" || r.Algorithm != "AEAD_AES_256_GCM" {
			l.opened = false
			continue
		}
		p, _ := pem.Decode(plain)
		c, err := x509.ParseCertificate(p.Bytes)
		if err != nil || certSerial(c) != item.SerialNo {
			t.Fatalf("certificate %s does not parse or has another serial", item.SerialNo)
		}
		keyOf[item.SerialNo] = c
	}
	if c, ok := keyOf[l.serial]; ok {
		msg := a.header.Get("Wechatpay-Timestamp") + "\n" + a.header.Get("Wechatpay-Nonce") + "\n" + string(a.body) + "\n"
		l.signed = verifySHA256WithRSA(c.PublicKey.(*rsa.PublicKey), msg, a.header.Get("Wechatpay-Signature")) == nil
	}
	return l
}

func TestCertificateDownloadsAndRotation(t *testing.T) {
	clock := &testClock{t: time.Now()}
	e := newEnv(t, func(c *Config) { c.Now = clock.now })
	old := e.keys.PlatformSerial
	known := map[string]*x509.Certificate{}
	for _, path := range []string{globalCertificatesPath, domesticCertificatesPath} {
		l := download(t, e, path, known)
		if len(l.serials) != 1 || l.serials[0] != old || !l.signed || !l.opened || l.serial != old {
			t.Fatalf("%s before the rotation: %+v", path, l)
		}
	}

	// A rotation two minutes ahead publishes at once and switches signing at its moment.
	var rotated PlatformCertificate
	at := clock.now().Add(2 * time.Minute).UTC().Truncate(time.Second)
	if st := e.control("POST", "/sim/platform-certificates/rotate", `{"switch_at":"`+at.Format(time.RFC3339)+`"}`, &rotated); st != 200 {
		t.Fatalf("rotate: %d", st)
	}
	if rotated.Signing || !rotated.SwitchAt.Equal(at) || !rotated.EffectiveTime.Equal(at) {
		t.Fatalf("rotated %+v, want a pending switch at %s", rotated, at)
	}
	steps := []struct {
		name    string
		advance time.Duration
		signer  string
	}{
		{"before the switch", 0, old},
		{"after the switch", 3 * time.Minute, rotated.SerialNo},
	}
	for _, st := range steps {
		clock.add(st.advance)
		l := download(t, e, globalCertificatesPath, known)
		if len(l.serials) != 2 || l.serial != st.signer || !l.signed {
			t.Errorf("%s: %+v, want both certificates listed and signed by %s", st.name, l, st.signer)
		}
	}
	var listed []PlatformCertificate
	e.control("GET", "/sim/platform-certificates", "", &listed)
	if len(listed) != 2 || listed[0].Signing || !listed[1].Signing {
		t.Errorf("listed %+v, want the new certificate signing", listed)
	}

	faults := []struct {
		name           string
		faults         Faults
		signed, opened bool
	}{
		{"tampered signature", Faults{TamperCertificateSignature: true}, false, true},
		{"undecryptable ciphertext", Faults{CorruptCertificateCiphertext: true}, true, false},
	}
	for _, f := range faults {
		e.sim.SetFaults(f.faults)
		l := download(t, e, domesticCertificatesPath, known)
		if l.signed != f.signed || l.opened != f.opened {
			t.Errorf("%s: signed %v, opened %v; want %v, %v", f.name, l.signed, l.opened, f.signed, f.opened)
		}
	}
}
