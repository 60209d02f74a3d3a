package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out bytes.Buffer
		if err := run(args, os.Getenv, &out, io.Discard); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, want := range []string{"SIM_ADDR", "SIM_APIV3_KEY", "SIM_TERMINATE_NOTIFY_URL", "/sim/faults", "pre-entrust-sign", "keys DIR"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: help lacks %q", args, want)
			}
		}
	}
}

func TestBadArguments(t *testing.T) {
	tests := [][]string{{"keys"}, {"keys", "a", "b"}, {"serve", "x"}, {"frobnicate"}, {"--nope"}}
	for _, args := range tests {
		if err := run(args, os.Getenv, io.Discard, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestKeysThenServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var out bytes.Buffer
	if err := run([]string{"keys", dir}, os.Getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	b, err := os.ReadFile(filepath.Join(dir, wechatpaysim.FileSimEnv))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		env[k] = v
	}
	env["SIM_ADDR"] = "127.0.0.1:0"
	getenv := func(k string) string { return env[k] }

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, getenv, io.Discard, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("not ready")
	}
	resp, err := http.Get("http://" + addr + "/sim/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz %d", resp.StatusCode)
	}
	if err := run([]string{"healthcheck"}, func(k string) string {
		if k == "SIM_ADDR" {
			return addr
		}
		return ""
	}, io.Discard, io.Discard); err != nil {
		t.Errorf("healthcheck of a running simulator: %v", err)
	}
	resp, err = http.Post("http://"+addr+"/v3/global/papay/contracts/app-pre-entrust-sign", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("Wechatpay-Signature") == "" {
		t.Errorf("unsigned request: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no graceful shutdown")
	}

	if err := run([]string{"healthcheck"}, func(k string) string {
		if k == "SIM_ADDR" {
			return addr
		}
		return ""
	}, io.Discard, io.Discard); err == nil {
		t.Error("healthcheck of a stopped simulator succeeded")
	}

	delete(env, "SIM_MCHID")
	if err := serve(context.Background(), getenv, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "SIM_MCHID") {
		t.Errorf("missing SIM_MCHID: %v", err)
	}
}

// The keys command keeps the identifiers the environment fixes, so that
// docker-compose.yml can configure both sides before the keys exist.
func TestKeysWithFixedIdentifiers(t *testing.T) {
	ids := map[string]string{
		"SIM_MCHID":           "1900000109",
		"SIM_MERCHANT_SERIAL": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
		"SIM_PLATFORM_SERIAL": "PUB_KEY_ID_0000000000000000000000000000000001",
		"SIM_APIV3_KEY":       "contractdcomposeapiv3key00000000",
	}
	dir := t.TempDir()
	if err := run([]string{"keys", dir}, func(k string) string { return ids[k] }, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, wechatpaysim.FileContractdEnv))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"WECHATPAY_MCHID=1900000109\n", "WECHATPAY_MERCHANT_SERIAL=5157F09EFDC096DE15EBE81A47057A7232F1B8E1\n",
		"WECHATPAY_PUBLIC_KEY_ID=PUB_KEY_ID_0000000000000000000000000000000001\n", "WECHATPAY_APIV3_KEY=contractdcomposeapiv3key00000000\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("contractd.env lacks %q:\n%s", want, b)
		}
	}
	for _, bad := range []map[string]string{{"SIM_MERCHANT_SERIAL": "xyz"}, {"SIM_APIV3_KEY": "short"}} {
		if err := run([]string{"keys", t.TempDir()}, func(k string) string { return bad[k] }, io.Discard, io.Discard); err == nil {
			t.Errorf("keys with %v: no error", bad)
		}
	}
}
