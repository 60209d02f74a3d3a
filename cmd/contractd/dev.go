package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/wechatpaysim"
	"github.com/jackc/pgx/v5"
)

// Development-mode defaults.
const (
	devAddr      = "127.0.0.1:8080"
	devSimAddr   = "127.0.0.1:8090"
	devPublicURL = "https://contractd.localhost"
	devAppToken  = "dev-app-token"
	devOpsToken  = "dev-ops-token"
	// devWebhookKey seals webhook secrets in dev when CONTRACTD_WEBHOOK_KEY
	// is not set: fixed, like the dev tokens, so that endpoints registered
	// in an earlier dev run still deliver (a key drawn afresh each run
	// would leave their secrets sealed under a key gone). Never for
	// production.
	devWebhookKey = "ZGV2LXdlYmhvb2sta2V5LW5vdC1mb3ItcHJvZC11c2U="
)

// devCmd runs `contractd dev`: a fresh key set, the WeChat Pay simulator on
// loopback, the database created and migrated, and the service, wired
// together; then it opens a demo signing session and prints where to click.
func devCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return fail(2, "dev takes no arguments")
	}
	dir, err := os.MkdirTemp("", "contractd-dev-")
	if err != nil {
		return fail(1, "dev: %v", err)
	}
	defer os.RemoveAll(dir)
	keys, err := wechatpaysim.GenerateKeys()
	if err != nil {
		return fail(1, "dev: keys: %v", err)
	}
	if err := keys.WriteDir(dir); err != nil {
		return fail(1, "dev: keys: %v", err)
	}

	// The database is made, when missing, where migrations run: a direct
	// connection (CREATE DATABASE does not pass a pooler).
	dbURL := config.DatabaseURL(getenv)
	if err := ensureDatabase(ctx, migrateVariable(getenv), config.MigrateDatabaseURL(getenv)); err != nil {
		return fail(1, "dev: %v (start Postgres with: bash scripts/postgres)", err)
	}

	addr := envOr(getenv, "CONTRACTD_HTTP_ADDR", devAddr)
	simAddr := envOr(getenv, "SIM_ADDR", devSimAddr)
	simLn, err := net.Listen("tcp", simAddr)
	if err != nil {
		return fail(1, "dev: simulator listen on %s: %v", simAddr, err)
	}
	// The simulator may listen on all interfaces (SIM_ADDR=0.0.0.0:8090, in
	// a container); the URLs it hands out and the banner name one a browser
	// opens: SIM_PUBLIC_URL, or the loopback form of the listen address.
	simURL := localURL(simLn.Addr().String())
	simPublic := envOr(getenv, "SIM_PUBLIC_URL", simURL)
	simCfg := keys.SimConfig()
	simCfg.TerminateNotifyURL = devPublicURL + config.NotifyPath
	simCfg.NotifyTarget = localURL(addr)
	simCfg.PublicURL = simPublic
	log := newLogger(envOr(getenv, "CONTRACTD_LOG_LEVEL", "info"), stderr)
	simCfg.Logger = log.With("component", "wechatpay-sim")
	sim, err := wechatpaysim.New(simCfg)
	if err != nil {
		return fail(1, "dev: simulator: %v", err)
	}
	defer sim.Close()
	simSrv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = simSrv.Serve(simLn) }()
	defer simSrv.Close()

	env := simulatedWeChatEnv(keys, dir, simURL)
	env["DATABASE_URL"] = dbURL
	for _, k := range []string{"CONTRACTD_MIGRATE_DATABASE_URL", "CONTRACTD_DB_READ_URL"} {
		if v := getenv(k); v != "" {
			env[k] = v
		}
	}
	env["CONTRACTD_HTTP_ADDR"] = addr
	env["CONTRACTD_API_TOKENS"] = "app:" + devAppToken + ",ops:" + devOpsToken
	env["CONTRACTD_LOG_LEVEL"] = envOr(getenv, "CONTRACTD_LOG_LEVEL", "info")
	// Webhooks on, to receivers on this machine (the dev receiver).
	env["CONTRACTD_WEBHOOK_KEY"] = envOr(getenv, "CONTRACTD_WEBHOOK_KEY", devWebhookKey)
	env["CONTRACTD_WEBHOOK_ALLOW_LOOPBACK"] = "true"
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		return configurationError("dev: configuration: ", err)
	}
	listening := make(chan string, 1)
	go func() {
		select {
		case a := <-listening:
			printDevBanner(ctx, stdout, localURL(a), simPublic)
		case <-ctx.Done():
		}
	}()
	return serve(ctx, cfg, true, log, nil, listening)
}

// simulatedWeChatEnv is contractd's WeChat Pay configuration for a
// simulator at simURL using keys written to dir: both key modes (platform
// certificate and public key) at once, and the dev public URL.
func simulatedWeChatEnv(keys *wechatpaysim.KeySet, dir, simURL string) map[string]string {
	return map[string]string{
		"CONTRACTD_PUBLIC_URL":          devPublicURL,
		"WECHATPAY_MCHID":               keys.MchID,
		"WECHATPAY_APPID":               keys.AppID,
		"WECHATPAY_MERCHANT_SERIAL":     keys.MerchantSerial,
		"WECHATPAY_PRIVATE_KEY_FILE":    filepath.Join(dir, wechatpaysim.FileMerchantPrivateKey),
		"WECHATPAY_APIV3_KEY":           keys.APIv3Key,
		"WECHATPAY_PLATFORM_CERT_FILES": filepath.Join(dir, wechatpaysim.FilePlatformCert),
		"WECHATPAY_PUBLIC_KEY_ID":       keys.PublicKeyID,
		"WECHATPAY_PUBLIC_KEY_FILE":     filepath.Join(dir, wechatpaysim.FilePlatformPublicKey),
		"WECHATPAY_BASE_URL":            simURL,
		"WECHATPAY_DOMESTIC_BASE_URL":   simURL,
	}
}

func envOr(getenv func(string) string, k, def string) string {
	if v := getenv(k); v != "" {
		return v
	}
	return def
}

// ensureDatabase creates the database named in url (from the setting
// variable) when the server lacks it.
func ensureDatabase(ctx context.Context, variable, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return errors.New(variable + " is not a valid Postgres connection string")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c, err := pgx.ConnectConfig(cctx, cfg); err == nil {
		return c.Close(cctx)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	c, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres at %s:%d is unreachable", cfg.Host, cfg.Port)
	}
	defer c.Close(cctx)
	_, err = c.Exec(cctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// printDevBanner opens a demo signing session through the API and prints
// where to click.
func printDevBanner(ctx context.Context, w io.Writer, base, simURL string) {
	code := fmt.Sprintf("demo-%d", time.Now().Unix())
	body := fmt.Sprintf(`{"product":"papay","channel":"h5","out_contract_code":%q,"plan_id":123,"user_display_name":"Zhang San"}`, code)
	link := "(the demo pre-sign failed; see the log)"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/contracts/pre-sign", bytes.NewBufferString(body))
	if err == nil {
		req.Header.Set("Authorization", "Bearer "+devAppToken)
		req.Header.Set("Content-Type", "application/json")
		if resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req); err == nil {
			var out struct {
				Launch struct {
					URL string `json:"url"`
				} `json:"launch"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if out.Launch.URL != "" {
				link = out.Launch.URL
			}
		}
	}
	fmt.Fprintf(w, `
contractd dev is running.
  API:        %[1]s   (tokens: app %[4]q, ops %[5]q)
  Simulator:  %[2]s   (WeChat Pay on loopback; control routes: %[2]s/sim/)
  Console:    %[1]s/ops/   (operations console: sign in with the ops token %[5]q)

A demo contract %[3]q has a signing session. Click to sign it as the WeChat user:
  %[6]s

Then look at it:
  curl -s -H 'Authorization: Bearer %[5]s' %[1]s/v1/contracts/%[3]s
  curl -s -H 'Authorization: Bearer %[5]s' %[1]s/v1/contracts/%[3]s/events
Start your own (channel app, mini_program, h5, jsapi or web; README.md walks through each):
  curl -s -H 'Authorization: Bearer %[4]s' -H 'Content-Type: application/json' -d '{"channel":"app","out_contract_code":"mine-1","plan_id":123,"user_display_name":"Li Si"}' %[1]s/v1/contracts/pre-sign
Sign any session as the WeChat user, by the launch object pre-sign answered:
  app ("query":"sessionId=ID"), mini_program ("session_id":"ID"), password_exempt ("pre_entrustweb_id":"ID"):
    curl -s -H 'Content-Type: application/json' -d '{"session_id":"ID"}' %[2]s/sim/sign
  or by the contract code, whatever the channel:
    curl -s -H 'Content-Type: application/json' -d '{"out_contract_code":"mine-1"}' %[2]s/sim/sign
  h5, jsapi, web ("url":"URL"): open URL in a browser and press Agree, or post the page's form:
    curl -s -X POST -d openid= URL
Rotate WeChat's platform certificate (contractd learns it at the next notification):
  curl -s -X POST -d '{}' %[2]s/sim/platform-certificates/rotate
Health: %[1]s/readyz   Metrics: %[1]s/metrics   Sessions: %[2]s/sim/sessions   Deliveries: %[2]s/sim/deliveries
Stop with Ctrl-C (or SIGTERM).
`, base, simURL, code, devAppToken, devOpsToken, strings.TrimSpace(link))
}
