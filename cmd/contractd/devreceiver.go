package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/webhook"
	"github.com/jackc/pgx/v5/pgxpool"
)

// devReceiverDescription names the endpoint `contractd dev` registers for
// its receiver, so that a later run finds (and removes) the ones earlier
// runs left behind; devActor is who `contractd dev` registers it as.
const (
	devReceiverDescription = "contractd dev receiver"
	devActor               = "contractd dev"
)

// devReceiver is `contractd dev`'s stand-in for a merchant's app server: an
// HTTP server on a free loopback port that verifies each webhook delivery
// with package webhook, as an app server would, and prints every event it
// gets, one line each, to out. Like the README's handler it dedupes on
// event_id and keeps per contract the highest contract_version; it prints
// repeats and older versions too, marked, so that a developer sees them.
type devReceiver struct {
	ln  net.Listener
	srv *http.Server

	mu       sync.Mutex // guards what follows, and writes to out
	out      io.Writer
	verifier webhook.Verifier
	seen     map[string]bool
	applied  map[webhook.ContractKey]int64
}

// startDevReceiver starts a receiver on a free loopback port, printing to
// out. It refuses every delivery until setSecrets gives it the endpoint's
// secret.
func startDevReceiver(out io.Writer) (*devReceiver, error) {
	ln, err := newLoopbackListener()
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	r := &devReceiver{ln: ln, out: out, seen: map[string]bool{}, applied: map[webhook.ContractKey]int64{}}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// url is where the receiver answers: the endpoint's URL.
func (r *devReceiver) url() string { return localURL(r.ln.Addr().String()) + "/" }

// setSecrets sets the secrets deliveries are verified with.
func (r *devReceiver) setSecrets(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verifier.Secrets = secrets
}

// close stops the receiver.
func (r *devReceiver) close() error {
	if err := r.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ServeHTTP verifies and prints one delivery: 204 when it verifies, 400
// otherwise (contractd then sends it again later).
func (r *devReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "contractd dev's webhook receiver takes POST deliveries", http.StatusMethodNotAllowed)
		return
	}
	r.mu.Lock()
	v := r.verifier
	r.mu.Unlock()
	batch, err := v.Read(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		fmt.Fprintf(r.out, "receiver: refused a delivery (%s %s): %v\n", webhook.DeliveryHeader, oneLine(req.Header.Get(webhook.DeliveryHeader)), err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var b strings.Builder
	if batch.Type != webhook.TypeEvents {
		fmt.Fprintf(&b, "receiver: %s (delivery %s)\n", oneLine(batch.Type), oneLine(batch.DeliveryID))
	}
	for _, e := range batch.Events {
		from := e.From
		if from == "" {
			from = "(new)"
		}
		k := e.Contract()
		var note string
		switch {
		case r.seen[e.EventID]:
			note = " (seen before)"
		case e.ContractVersion <= r.applied[k]:
			note = fmt.Sprintf(" (v%d already applied)", r.applied[k])
		default:
			r.applied[k] = e.ContractVersion
		}
		r.seen[e.EventID] = true
		if e.Ignored {
			note += " (ignored: the state did not change)"
		}
		fmt.Fprintf(&b, "receiver: %s %s %s→%s event_id=%s contract_version=%d%s\n",
			oneLine(e.Event), oneLine(k.String()), oneLine(from), oneLine(e.To), oneLine(e.EventID), e.ContractVersion, note)
	}
	_, _ = io.WriteString(r.out, b.String())
	w.WriteHeader(http.StatusNoContent)
}

// oneLine keeps a value from outside on one printed line.
func oneLine(s string) string {
	if s == "" {
		return `""`
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f || r == ' ' }) {
		return fmt.Sprintf("%q", s)
	}
	return s
}

// devEndpoint is the receiver's registration as a webhook endpoint, made
// with delivery.Service as an operator's request would be, on a small pool
// of its own: serve's workers deliver to it from the database.
type devEndpoint struct {
	id   string
	pool *pgxpool.Pool
	svc  *delivery.Service
}

// registerDevReceiver registers r as a webhook endpoint of the service cfg
// configures (its database migrated) and gives r the endpoint's secret.
// Endpoints earlier dev runs left behind (by their description, on
// loopback) are removed first: their receivers are gone with their
// processes.
func registerDevReceiver(ctx context.Context, cfg config.Config, r *devReceiver, log *slog.Logger) (*devEndpoint, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	pool, err := store.Connect(cctx, cfg.DatabaseURL, 2)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	svc, err := delivery.New(store.New(pool), delivery.Options{Key: cfg.WebhookKey, AllowLoopback: cfg.WebhookAllowLoopback, Logger: log})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: %w", delivery.KeyVariable, err)
	}
	d := &devEndpoint{pool: pool, svc: svc}
	eps, err := svc.List(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	for _, e := range eps {
		if e.Description == devReceiverDescription && strings.HasPrefix(e.URL, "http://127.0.0.1:") {
			if err := svc.Delete(ctx, devActor, e.ID); err != nil && !domain.IsCode(err, domain.CodeResourceNotFound) {
				pool.Close()
				return nil, fmt.Errorf("removing the receiver endpoint %s of an earlier run: %w", e.ID, err)
			}
		}
	}
	created, err := svc.Create(ctx, devActor, domain.EndpointInput{URL: r.url(), Description: devReceiverDescription})
	if err != nil {
		pool.Close()
		return nil, err
	}
	r.setSecrets(created.Secret)
	d.id = created.Endpoint.ID
	return d, nil
}

// remove deletes the endpoint and closes the pool: the receiver stops
// with the process.
func (d *devEndpoint) remove(ctx context.Context) error {
	defer d.pool.Close()
	return d.svc.Delete(ctx, devActor, d.id)
}
