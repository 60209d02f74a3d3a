// Command wechatpay-sim runs the WeChat Pay simulator (package wechatpaysim) on loopback, or
// writes a matching key set for the simulator and contractd.
//
//	wechatpay-sim [serve]    serve the simulator, configured by SIM_* variables
//	wechatpay-sim keys DIR   write keys, certificates and env files into DIR
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

const usage = `wechatpay-sim: a WeChat Pay simulator (auto-debit contract signing).

Usage:
  wechatpay-sim [serve]     serve the merchant API and the /sim/ control routes
  wechatpay-sim keys DIR    write a matching key set into DIR: merchant and platform keys
                            and certificates, platform public key, apiv3_key, sim.env (for
                            this simulator) and contractd.env (for the merchant). SIM_MCHID,
                            SIM_MERCHANT_SERIAL, SIM_PLATFORM_SERIAL (a certificate serial or
                            a PUB_KEY_ID_ id) and SIM_APIV3_KEY, when set, fix those values
  wechatpay-sim healthcheck GET /sim/healthz at SIM_ADDR; exit 0 when it answers 200, else 1
                            (for container health checks: the image has no shell or curl)

Environment (serve):
` + wechatpaysim.EnvHelp + `
Merchant API (Authorization-signed requests, platform-signed answers):
  POST /v3/global/papay/contracts/{app|miniprogram|h5|jsapi|web}-pre-entrust-sign
  GET  /v3/global/papay/contracts/{contract_id}?appid=...
  GET  /v3/global/papay/contracts/out-contract-code/{code}?appid=...&plan_id=...
  POST /v3/global/papay/contracts/{contract_id}/terminate
  POST /v3/password-exempt-contract/contracts/{normal|service-provider|ecommerce}/pre-entrust-sign/mini-program
  GET  /v3/password-exempt-contract/contracts/service-id/{service_id}/out-contract-code/{code}
  POST /v3/password-exempt-contract/contracts/service-id/{service_id}/out-contract-code/{code}/terminate

Control routes (no signature; JSON):
  POST   /sim/sign                          {"session_id"|"out_contract_code","sub_mchid","openid"}: sign as the user
  GET    /sim/sign-page/{session_id}        the user's signing page (HTML, "Agree" posts back)
  POST   /sim/contracts/{contract_id}/terminate   terminate as the user
  GET    /sim/contracts | /sim/sessions | /sim/requests | /sim/deliveries | /sim/faults
  PUT    /sim/faults                        inject faults (error_code, error_status, error_count,
                                            error_rate, path_contains, latency_ms,
                                            duplicate_deliveries, drop_deliveries,
                                            reorder_sign_terminate, probe_signatures,
                                            tamper_responses, override_serial)
  DELETE /sim/faults                        clear faults
  POST   /sim/reset                         clear faults, requests and deliveries
  GET    /sim/healthz                       liveness
  GET    /sim/                              this list, as JSON
`

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wechatpay-sim:", err)
		os.Exit(1)
	}
}

// run executes the command line args; it returns when serving ends.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wechatpay-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stdout, usage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	args = fs.Args()
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if len(args) != 0 {
			return fmt.Errorf("serve takes no arguments, got %q", args)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return serve(ctx, getenv, stderr, nil)
	case "keys":
		if len(args) != 1 {
			return errors.New("usage: wechatpay-sim keys DIR")
		}
		return writeKeys(args[0], getenv, stdout)
	case "healthcheck":
		return healthcheck(getenv)
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q (try --help)", cmd)
}

// healthcheck asks the simulator at SIM_ADDR whether it is alive.
func healthcheck(getenv func(string) string) error {
	addr := getenv("SIM_ADDR")
	if addr == "" {
		addr = wechatpaysim.DefaultAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("SIM_ADDR %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + net.JoinHostPort(host, port) + "/sim/healthz")
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /sim/healthz answered %d", resp.StatusCode)
	}
	return nil
}

func writeKeys(dir string, getenv func(string) string, stdout io.Writer) error {
	keys, err := wechatpaysim.GenerateKeysWith(wechatpaysim.KeyIDs{MchID: getenv("SIM_MCHID"),
		MerchantSerial: getenv("SIM_MERCHANT_SERIAL"), PlatformSerial: getenv("SIM_PLATFORM_SERIAL"), APIv3Key: getenv("SIM_APIV3_KEY")})
	if err != nil {
		return fmt.Errorf("generate keys: %w", err)
	}
	if err := keys.WriteDir(dir); err != nil {
		return fmt.Errorf("write keys: %w", err)
	}
	fmt.Fprintf(stdout, "wrote keys to %s (mchid %s, merchant serial %s, platform serial %s, public key id %s)\n",
		dir, keys.MchID, keys.MerchantSerial, keys.PlatformSerial, keys.PublicKeyID)
	return nil
}

// serve runs the simulator until ctx ends, then shuts down gracefully. When ready is not
// nil it receives the listening address.
func serve(ctx context.Context, getenv func(string) string, logOut io.Writer, ready chan<- string) error {
	cfg, err := wechatpaysim.LoadConfigFromEnv(getenv)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(logOut, nil))
	cfg.Logger = logger
	sim, err := wechatpaysim.New(cfg)
	if err != nil {
		return err
	}
	defer sim.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (SIM_ADDR): %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           sim.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      90 * time.Second, // above the largest injected latency
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("wechatpay-sim listening", "addr", ln.Addr().String(), "mchid", cfg.MchID,
		"platform_serial", cfg.PlatformSerial, "terminate_notify_url", cfg.TerminateNotifyURL,
		"notify_target", cfg.NotifyTarget, "time_scale", cfg.TimeScale)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("wechatpay-sim shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
