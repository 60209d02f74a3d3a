package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Issue 18, point 7: a correctly signed notification that can never apply
// (for another merchant, or an envelope malformed before decryption) is
// kept as rejected with its reason and answered 204, so that WeChat stops
// retrying it; its inbox key is the envelope's id, or sha256:<hex of the
// body> when it has none. A redelivery is still one row. One that does not
// verify stays 401 with nothing stored.
func TestNotificationsThatCanNeverApplyAreKeptAsRejected(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	digest := func(b []byte) string { sum := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(sum[:]) }
	now := time.Now().UTC().Format(time.RFC3339)

	foreign := ntSignResource(s.Keys, "nt-foreign-1", "2026"+ntRandom(7))
	foreign["mchid"] = "1999999999"
	foreignID := "nt-foreign-" + ntRandom(4)
	noResourceID := "nt-noresource-" + ntRandom(4)
	noResource, _ := json.Marshal(map[string]any{"id": noResourceID, "create_time": now, "event_type": "PAPAY.SIGN",
		"resource_type": "encrypt-resource", "summary": "x"})
	notJSON := []byte(`{"id":"x", "event_type":`)
	badNonce := ntEnvelope(t, s.Keys, "nt-badnonce-"+ntRandom(4), "PAPAY.SIGN", ntSignResource(s.Keys, "nt-badnonce", "2026"+ntRandom(7)))
	var env map[string]any
	if err := json.Unmarshal(badNonce, &env); err != nil {
		t.Fatal(err)
	}
	badNonceID := env["id"].(string)
	env["resource"].(map[string]any)["nonce"] = "abc"
	badNonce, _ = json.Marshal(env)

	cases := []struct {
		name   string
		body   []byte
		key    string // the inbox key
		reason string // the stored reason, exactly
	}{
		{"another merchant", ntEnvelope(t, s.Keys, foreignID, "PAPAY.SIGN", foreign), foreignID,
			"resource.mchid names merchant 1999999999, not this one (" + s.Keys.MchID + ")"},
		{"a body that is not JSON", notJSON, digest(notJSON),
			"envelope is not JSON: unexpected end of JSON input"},
		{"an envelope without resource", noResource, noResourceID,
			"envelope lacks resource"},
		{"a nonce of the wrong length", badNonce, badNonceID,
			"envelope resource.nonce is 3 bytes, want 12"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			contracts := s.count(`SELECT count(*) FROM contracts`)
			for delivery := 1; delivery <= 2; delivery++ {
				if r := ntPostNotification(t, s, tc.body, s.Keys.PlatformKey); r.Status != http.StatusNoContent {
					t.Fatalf("delivery %d: %d %s, want 204", delivery, r.Status, r.Body)
				}
			}
			var outcome, reason string
			var deliveries int
			var raw []byte
			if err := s.DB.Pool.QueryRow(t.Context(), `SELECT outcome, reason, delivery_count, raw_resource FROM wechat_notifications
				WHERE notification_id = $1`, tc.key).Scan(&outcome, &reason, &deliveries, &raw); err != nil {
				t.Fatalf("no inbox row under %q: %v", tc.key, err)
			}
			if outcome != "rejected" || reason != tc.reason || deliveries != 2 {
				t.Fatalf("inbox row %q %q %d deliveries, want rejected %q with 2", outcome, reason, deliveries, tc.reason)
			}
			if len(raw) == 0 {
				t.Fatal("raw_resource is empty: what was received is not kept")
			}
			if n := s.count(`SELECT count(*) FROM contracts`); n != contracts {
				t.Fatalf("contracts %d, want %d: a rejected notification changed them", n, contracts)
			}
		})
	}
	if n := s.count(`SELECT count(*) FROM wechat_notifications`); n != len(cases) {
		t.Fatalf("inbox holds %d rows, want %d (one per notification)", n, len(cases))
	}

	t.Run("a body that does not verify stays 401 and is not stored", func(t *testing.T) {
		before := s.count(`SELECT count(*) FROM wechat_notifications`)
		for _, body := range [][]byte{notJSON, noResource, ntEnvelope(t, s.Keys, "nt-foreign-"+ntRandom(4), "PAPAY.SIGN", foreign)} {
			r := ntPostNotification(t, s, body, s.Keys.MerchantKey)
			ntExpectFail(t, r, http.StatusUnauthorized)
			if !strings.Contains(string(r.Body), "SIGN_ERROR") {
				t.Fatalf("%s", r.Body)
			}
		}
		if n := s.count(`SELECT count(*) FROM wechat_notifications`); n != before {
			t.Fatalf("inbox rows %d, want %d", n, before)
		}
	})
}

// The institutional variants: a notification without sub_mchid, or for
// another service provider, can never apply either.
func TestInstitutionalNotificationsThatCanNeverApplyAreKeptAsRejected(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Mode: "institutional"})
	noSub := ntSignResource(s.Keys, "nt-inst-1", "2026"+ntRandom(7))
	noSub["sp_mchid"] = s.Keys.MchID
	otherSP := ntSignResource(s.Keys, "nt-inst-2", "2026"+ntRandom(7))
	otherSP["sp_mchid"], otherSP["sub_mchid"] = "1888888888", "1900000109"
	cases := []struct {
		name     string
		resource map[string]any
		reason   string
	}{
		{"no sub_mchid", noSub, "resource.sub_mchid is required in institutional mode"},
		{"another service provider", otherSP, "resource.sp_mchid names merchant 1888888888, not this one (" + s.Keys.MchID + ")"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "nt-inst-" + ntRandom(4)
			body := ntEnvelope(t, s.Keys, id, "PAPAY.SIGN", tc.resource)
			for delivery := 1; delivery <= 2; delivery++ {
				if r := ntPostNotification(t, s, body, s.Keys.PlatformKey); r.Status != http.StatusNoContent {
					t.Fatalf("delivery %d: %d %s, want 204", delivery, r.Status, r.Body)
				}
			}
			outcome, reason, deliveries := inboxRow(t, s, id)
			if outcome != "rejected" || reason != tc.reason || deliveries != 2 {
				t.Fatalf("inbox row %q %q %d, want rejected %q with 2 deliveries", outcome, reason, deliveries, tc.reason)
			}
		})
	}
	if n := s.count(`SELECT count(*) FROM contracts`); n != 0 {
		t.Fatalf("%d contracts were created", n)
	}
}
