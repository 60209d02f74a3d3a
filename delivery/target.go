package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/contractd/contractd/domain"
)

// refusedAddr says why a delivery may not go to addr ("" when it may):
// loopback, link-local and unspecified addresses are refused unless
// allowLoopback; private ranges are allowed, since app servers live there.
func refusedAddr(addr netip.Addr, allowLoopback bool) string {
	addr = addr.Unmap()
	if allowLoopback {
		return ""
	}
	switch {
	case addr.IsLoopback():
		return "resolves to a loopback address"
	case addr.IsLinkLocalUnicast(), addr.IsLinkLocalMulticast(), addr.IsInterfaceLocalMulticast():
		return "resolves to a link-local address"
	case addr.IsUnspecified():
		return "resolves to an unspecified address"
	}
	return ""
}

// errRefusedTarget is in the chain of a dial the target check refused.
var errRefusedTarget = errors.New("refused target address")

// checkTarget checks an endpoint's url: the rules of
// domain.CheckEndpointURL, then where its host resolves. Every address it
// resolves to must be allowed (refusedAddr); a host that does not resolve
// now is accepted (it may resolve where and when deliveries are made),
// since every connection is checked again when it is dialled.
func (s *Service) checkTarget(ctx context.Context, raw string) error {
	u, err := domain.CheckEndpointURL(raw)
	if err != nil {
		return err
	}
	bad := func(reason string) error {
		return &domain.Error{Code: domain.CodeParamError, Message: "bad webhook endpoint",
			Fields: []domain.FieldError{{Field: "url", Reason: reason + " (CONTRACTD_WEBHOOK_ALLOW_LOOPBACK=true allows it)"}}}
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if r := refusedAddr(a, s.opt.AllowLoopback); r != "" {
			return bad(r)
		}
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := s.resolver.LookupNetIP(rctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if r := refusedAddr(a, s.opt.AllowLoopback); r != "" {
			return bad(r)
		}
	}
	return nil
}

// newClient is the HTTP client deliveries are made with: no proxy from the
// environment, no redirects followed (a 3xx fails the attempt), and every
// connection's address checked as it is dialled (Control), after DNS, so
// that a name rebound to a loopback address after the endpoint was
// checked still cannot reach it.
func newClient(allowLoopback bool, transport http.RoundTripper) *http.Client {
	if transport == nil {
		dialer := &net.Dialer{
			Timeout:   domain.AttemptTimeout,
			KeepAlive: 30 * time.Second,
			Control: func(network, address string, _ syscall.RawConn) error {
				ap, err := netip.ParseAddrPort(address)
				if err != nil {
					return fmt.Errorf("%w: %s", errRefusedTarget, address)
				}
				if r := refusedAddr(ap.Addr(), allowLoopback); r != "" {
					return fmt.Errorf("%w: %s %s", errRefusedTarget, address, r)
				}
				return nil
			},
		}
		transport = &http.Transport{
			Proxy:                 nil,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   domain.AttemptTimeout,
			ResponseHeaderTimeout: domain.AttemptTimeout,
		}
	}
	return &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
