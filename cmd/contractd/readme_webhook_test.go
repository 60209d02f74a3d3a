package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/webhook"
)

// readmeBlock returns the fenced block that follows marker in the README.
func readmeBlock(t *testing.T, marker, lang string) string {
	t.Helper()
	re := regexp.MustCompile("(?s)" + regexp.QuoteMeta(marker) + "\n```" + lang + "\n(.*?)```\n")
	m := re.FindAllStringSubmatch(readReadme(t), -1)
	if len(m) != 1 {
		t.Fatalf("the README has %d blocks after %q, want 1", len(m), marker)
	}
	return m[0][1]
}

// The README's shell check ("Receiving webhooks") runs for real, with bash
// and openssl, against deliveries signed by the package contractd signs
// with: it accepts the right secret (either one during a rotation) and
// refuses a wrong secret, an altered body, a t outside 300 s either way and
// a header that is not a signature.
func TestReadmeWebhookShellCheck(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/test installs openssl): %v", tool, err)
		}
	}
	block := readmeBlock(t, "<!-- webhook-verify: sh -->", "sh")

	const secret, previous = "whsec_Qm9vX2JhcjEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIz", "whsec_UHJldmlvdXNTZWNyZXQtMDAwMDAwMDAwMDAwMDA"
	b, err := json.Marshal(webhook.Batch{Type: webhook.TypeEvents, EndpointID: "ep_1", DeliveryID: "d_1", NextCursor: "c9",
		Events: []webhook.Event{{ID: 9, EventID: "9a1c7b52-5d0e-4c55-8f3b-0d6e2a7c4b11", ContractVersion: 2, OutContractCode: "app-1",
			From: "session_issued", To: "signed", Event: "sign", Source: "notification",
			// Bytes a careless shell line would change: printf
			// directives, backslashes, non-ASCII text.
			Details: json.RawMessage(`{"note":"100%s \\n 签约 \u00e9"}`), OccurredAt: time.Now().UTC(), RecordedAt: time.Now().UTC()}}})
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	withNewline := body + "\n" // a trailing newline is part of the body too

	tests := []struct {
		name, header, secret, body string
		want                       string
	}{
		{"right secret", webhook.Sign(time.Now(), []byte(body), secret), secret, body, "verified"},
		{"wrong secret", webhook.Sign(time.Now(), []byte(body), secret), "whsec_not-this-one", body, "refused"},
		{"altered body", webhook.Sign(time.Now(), []byte(body), secret), secret, strings.Replace(body, `"app-1"`, `"app-2"`, 1), "refused"},
		{"trailing newline kept", webhook.Sign(time.Now(), []byte(withNewline), secret), secret, withNewline, "verified"},
		{"trailing newline dropped", webhook.Sign(time.Now(), []byte(withNewline), secret), secret, body, "refused"},
		{"t older than 300 s", webhook.Sign(time.Now().Add(-10*time.Minute), []byte(body), secret), secret, body, "refused"},
		{"t 300 s ahead and more", webhook.Sign(time.Now().Add(10*time.Minute), []byte(body), secret), secret, body, "refused"},
		{"rotation: the new secret", webhook.Sign(time.Now(), []byte(body), secret, previous), secret, body, "verified"},
		{"rotation: the previous secret", webhook.Sign(time.Now(), []byte(body), secret, previous), previous, body, "verified"},
		{"no v1", webhook.Sign(time.Now(), []byte(body)), secret, body, "refused"},
		{"garbage", "garbage", secret, body, "refused"},
		{"empty", "", secret, body, "refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "body.json"), []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), "bash", "-c", block)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "SIGNATURE="+tc.header, "SECRET="+tc.secret)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the README's block failed: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tc.want {
				t.Fatalf("header %q: the README's block printed %q, want %q", tc.header, got, tc.want)
			}
		})
	}
}
